/**
 * The applier applies two batches at once; XAUTOCLAIM must not hand it the entries of a batch it is still
 * applying (an apply that outlasts claimIdleMs: here, one waiting for a row lock held from outside), nor
 * those of a batch applied whose XACK waits for its ack to the origin's Redis (sent in the background),
 * nor those of a batch that ended (acked, XACKed) while the claim's reply was on its way. A batch that fails
 * in the background is the loop's own failure.
 */
import { Client } from 'pg';
import pino from 'pino';
import { DelayProxy, type DelayTable } from '../../scripts/harness/delay-proxy';
import { RedisLinks } from '../../src/replication/links';
import { REDIS_URL } from '../support/env';
import { eventually } from '../support/harness';
import { logLines } from '../support/log-lines';
import { ORIGIN, orgEvent, REGION, startApplierRig, type ApplierRig } from '../support/applier-rig';

let rig: ApplierRig;
let holder: Client;
beforeAll(async () => {
  rig = await startApplierRig('inflight');
  holder = new Client({ connectionString: rig.databaseUrl });
  await holder.connect();
});
afterAll(async () => {
  await holder?.end();
  await rig?.cleanup();
});

// Waiters on this test's database only (pg_locks lists the whole server: other suites' applies wait too).
const lockWaiters = async () =>
  Number((await holder.query(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)).rows[0].n);

const counted = async () =>
  Number((await rig.db.$queryRawUnsafe<{ applied_count: bigint }[]>(`SELECT applied_count FROM replication_progress WHERE origin_region = 'us-iowa'`))[0]?.applied_count ?? 0);

/**
 * That the count reaches `n` and stays there past another flush: each change was applied once. The count is
 * written by a timer a second after an apply (applied-progress.ts), then a statement: a single read a fixed
 * 1.5 s after the entries left the pending list reads it short whenever that flush runs late (a loaded host:
 * the applier runs in this process, beside the test's polling). A second apply would be counted by the same
 * flush or by the next one, which the wait after covers.
 */
async function countedOnce(n: number): Promise<void> {
  expect(await eventually(async () => (await counted()) >= n, 10_000, 50)).toBe(true);
  await new Promise((r) => setTimeout(r, 1500));
  expect(await counted()).toBe(n);
}

test('an entry whose apply waits on a lock past claimIdleMs is applied once, not claimed and applied again beside it', async () => {
  const applier = await rig.applier({ claimIdleMs: 50, claimEveryMs: 50 });
  applier.start();
  const e = orgEvent('held');
  // The row's per-key lock, as a local write of it would hold it.
  await holder.query('BEGIN');
  await holder.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`organizations:${e.orgId}`]);
  await rig.publish(e);
  expect(await eventually(async () => (await lockWaiters()) >= 1, 10_000, 20)).toBe(true);
  // Many claim rounds pass meanwhile; none takes the entry a second time.
  await new Promise((r) => setTimeout(r, 2500));
  expect(await lockWaiters()).toBe(1);
  await holder.query('COMMIT');
  expect(await eventually(async () => (await rig.db.organization.findUnique({ where: { id: e.orgId } }))?.name === 'held', 10_000, 50)).toBe(true);
  expect(await eventually(async () => (await rig.pendingCount()) === 0, 10_000, 50)).toBe(true);
  // Counted once (the count is written a moment after the apply).
  expect(await eventually(async () => (await counted()) > 0, 10_000, 50)).toBe(true);
  await new Promise((r) => setTimeout(r, 500));
  expect(await counted()).toBe(1);
  expect((await rig.tracker.status(e.changeId))[REGION]).toMatch(/^applied@/);
});

/** The origin's Redis reached through a proxy that can hold every byte (a cut), as a slow WAN link would. */
async function originBehindProxy(name: string) {
  const table: DelayTable = { self: 0, peers: {}, jitter: 0, cut: [] };
  const target = new URL(REDIS_URL);
  const proxy = new DelayProxy({ listenHost: '127.0.0.1', listenPort: 0, targetHost: target.hostname, targetPort: Number(target.port || 6379), delays: () => table });
  await proxy.listen();
  const links = new RedisLinks({ region: REGION, own: rig.redis, name, defaultUrl: REDIS_URL, configured: new Map([[ORIGIN, `redis://127.0.0.1:${proxy.port}`]]) });
  return { table, links, close: async () => { links.disconnect(); await proxy.close(); } };
}

test('an entry applied whose ack to its origin is still on its way is not claimed and applied again meanwhile', async () => {
  await rig.reset();
  const before = await counted(); // the test before counted its change
  const { table, links, close } = await originBehindProxy('inflight-acks');
  try {
    const applier = await rig.applier({ links, claimIdleMs: 50, claimEveryMs: 50 });
    applier.start();
    const named = async (id: string, name: string) => (await rig.db.organization.findUnique({ where: { id } }))?.name === name;
    // One change applied and acked through the link first, so that it is connected before the cut.
    const first = orgEvent('first');
    await rig.publish(first);
    expect(await eventually(async () => (await named(first.orgId, 'first')) && (await rig.pendingCount()) === 0, 10_000, 20)).toBe(true);
    expect(await eventually(async () => (await counted()) === before + 1, 10_000, 50)).toBe(true);

    table.cut = ['127.0.0.1'];
    const e = orgEvent('acked late');
    await rig.publish(e);
    expect(await eventually(() => named(e.orgId, 'acked late'), 10_000, 20)).toBe(true);
    // About 20 claim rounds while its ack is held (within the link's 2 s command timeout): its entry is
    // pending and idle all along, and none of them takes it.
    await new Promise((r) => setTimeout(r, 1000));
    table.cut = [];
    expect(await eventually(async () => (await rig.pendingCount()) === 0, 10_000, 50)).toBe(true);
    await countedOnce(before + 2);
    expect((await rig.tracker.status(e.changeId))[REGION]).toMatch(/^applied@/);
  } finally {
    await close();
  }
});

test('an entry whose batch ends (acked and XACKed) while a claim that took it is on its way is not applied again', async () => {
  await rig.reset();
  const before = await counted();
  const { table, links, close } = await originBehindProxy('inflight-claim');
  // The claim's reply that names the held entry is kept from the applier until the entry has left its
  // batch (XACKed, out of flight): Redis answered the claim before the XACK reached it.
  const reader = rig.redis.duplicate();
  let held: string | null = null;
  let heldReplies = 0;
  let applier: Awaited<ReturnType<ApplierRig['applier']>> | null = null;
  const call = reader.call.bind(reader) as (...args: unknown[]) => Promise<unknown>;
  (reader as unknown as { call: (...args: unknown[]) => Promise<unknown> }).call = async (...args: unknown[]) => {
    const res = await call(...args);
    const id = held;
    if (args[0] !== 'XAUTOCLAIM' || id === null || !(res as [string, [string, unknown][]])[1].some((e) => e[0] === id)) return res;
    heldReplies++;
    // Only now does the ack get through; then the batch ends.
    table.cut = [];
    const inFlight = (applier as unknown as { inbox: { inFlight: Set<string> } }).inbox.inFlight;
    await eventually(async () => !inFlight.has(id) && (await rig.pendingCount()) === 0, 10_000, 10);
    return res;
  };
  try {
    applier = await rig.applier({ links, reader, claimIdleMs: 50, claimEveryMs: 50 });
    applier.start();
    const named = async (id: string, name: string) => (await rig.db.organization.findUnique({ where: { id } }))?.name === name;
    const first = orgEvent('first of the claim case');
    await rig.publish(first);
    expect(await eventually(async () => (await named(first.orgId, 'first of the claim case')) && (await rig.pendingCount()) === 0, 10_000, 20)).toBe(true);

    table.cut = ['127.0.0.1'];
    const e = orgEvent('ended during a claim');
    held = await rig.publish(e);
    expect(await eventually(() => named(e.orgId, 'ended during a claim'), 10_000, 20)).toBe(true);
    expect(await eventually(async () => heldReplies === 1, 10_000, 20)).toBe(true);
    expect(await eventually(async () => (await rig.pendingCount()) === 0, 10_000, 50)).toBe(true);
    await countedOnce(before + 2);
  } finally {
    held = null;
    table.cut = [];
    await applier?.stop();
    reader.disconnect();
    await close();
  }
});

test('a batch that fails in the background on the database\'s trouble is the loop\'s own failure: reported there, and its event applies once the database lets it', async () => {
  await rig.reset();
  await rig.db.$executeRawUnsafe(`CREATE FUNCTION trouble_org() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'the test says the database is in trouble' USING ERRCODE = 'too_many_connections'; END $$`);
  await rig.db.$executeRawUnsafe(`CREATE TRIGGER trouble_org BEFORE INSERT ON organizations FOR EACH ROW WHEN (NEW.name = 'in trouble') EXECUTE FUNCTION trouble_org()`);
  const { lines, sink } = logLines();
  const applier = await rig.applier({ consumer: 'trouble', log: pino({ level: 'debug' }, sink) });
  applier.start();
  const e = orgEvent('in trouble');
  try {
    await rig.publish(e);
    // The batch's apply rethrows the database's trouble (the event stays pending): the loop handles it as a failed read.
    const reported = () => lines.some((l) => l.msg === 'applier: stream read failed; retrying' && String(l.err).includes('the test says the database is in trouble'));
    expect(await eventually(async () => reported(), 10_000, 50)).toBe(true);
  } finally {
    await rig.db.$executeRawUnsafe('DROP TRIGGER IF EXISTS trouble_org ON organizations');
    await rig.db.$executeRawUnsafe('DROP FUNCTION IF EXISTS trouble_org()');
  }
  expect(await eventually(async () => (await rig.db.organization.findUnique({ where: { id: e.orgId } }))?.name === 'in trouble', 15_000, 50)).toBe(true);
  await applier.stop();
}, 60_000);
