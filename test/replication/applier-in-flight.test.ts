/**
 * The applier applies two batches at once; XAUTOCLAIM must not hand it the entries of a batch it is still
 * applying (an apply that outlasts claimIdleMs: here, one waiting for a row lock held from outside), nor
 * those of a batch applied whose XACK waits for its ack to the origin's Redis (sent in the background).
 */
import { Client } from 'pg';
import { DelayProxy, type DelayTable } from '../../scripts/harness/delay-proxy';
import { RedisLinks } from '../../src/replication/links';
import { REDIS_URL } from '../support/env';
import { eventually } from '../support/harness';
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

test('an entry applied whose ack to its origin is still on its way is not claimed and applied again meanwhile', async () => {
  await rig.reset();
  const before = await counted(); // the test before counted its change
  // The origin's Redis is reached through a proxy that can hold every byte (a cut), as a slow WAN link would.
  const table: DelayTable = { self: 0, peers: {}, jitter: 0, cut: [] };
  const target = new URL(REDIS_URL);
  const proxy = new DelayProxy({ listenHost: '127.0.0.1', listenPort: 0, targetHost: target.hostname, targetPort: Number(target.port || 6379), delays: () => table });
  await proxy.listen();
  const links = new RedisLinks({ region: REGION, own: rig.redis, name: 'inflight-acks', defaultUrl: REDIS_URL, configured: new Map([[ORIGIN, `redis://127.0.0.1:${proxy.port}`]]) });
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
    await new Promise((r) => setTimeout(r, 1500)); // the count is written about a second after an apply
    expect(await counted()).toBe(before + 2);
    expect((await rig.tracker.status(e.changeId))[REGION]).toMatch(/^applied@/);
  } finally {
    links.disconnect();
    await proxy.close();
  }
});
