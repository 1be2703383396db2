/**
 * Each region with a Redis of its own (issue I): three regions, three Redis servers. With region 1's
 * Redis stopped, regions 2 and 3 keep replicating between themselves (their Redis are up), and region 1
 * still takes local_region writes and delivers them into the others' inboxes; all_regions writes answer
 * 408 naming region 1. Once its Redis is back (empty: it keeps nothing), all three converge, every
 * acknowledged write everywhere, and every outbox confirms.
 */
import { Client } from 'pg';
import { adminHeaders, call, adminChangeStatus, createOrg, eventually, pendingOnlyIn, runScript, slashidHeaders, type Cluster } from '../support/harness';
import { hurryClaims } from '../support/hurry-claims';
import { clusterWithOwnRedis, type OwnRedis } from '../support/redis-server';
import { scrape } from '../observability/support';

const REGIONS = ['us-iowa', 'europe-belgium', 'asia-japan'];
const [ONE = '', TWO = '', THREE = ''] = REGIONS;
let cluster: Cluster;
let redis: Map<string, OwnRedis>;
let stop: () => Promise<void>;

beforeAll(async () => {
  // Origins look for their unconfirmed deliveries in the destinations' inboxes after 2 s instead of 10 s:
  // the losses below are found sooner, by the same search.
  ({ cluster, redis, stop } = await clusterWithOwnRedis('perregionredis', REGIONS, { republishAfterMs: 2_000 }));
}, 120_000);
afterAll(async () => {
  await stop?.();
});

const status = async (region: string) => (await call(cluster.url(region), 'GET', '/admin/replication', { headers: adminHeaders })).body;
const digest = async (region: string) => JSON.stringify((await call(cluster.url(region), 'GET', '/admin/replication/digest', { headers: adminHeaders })).body.tables);
const has = async (region: string, id: string) => (await call(cluster.url(region), 'GET', `/admin/organizations/${id}`, { headers: adminHeaders })).status === 200;

async function write(region: string, name: string, headers: Record<string, string> = {}) {
  return call(cluster.url(region), 'POST', '/admin/organizations', { body: { name }, headers: { ...adminHeaders, ...headers } });
}

async function keysOf(region: string): Promise<string[]> {
  const c = await import('ioredis').then((m) => new m.default(redis.get(region)?.url ?? ''));
  try {
    return await c.keys('*');
  } finally {
    c.disconnect();
  }
}

test('a change is followed from any region: its acks are read in its origin\'s Redis', async () => {
  const res = await write(TWO, 'followed', { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '20' });
  expect(res.status).toBe(201);
  const changeId = res.headers.get('x-change-id');
  const other = await createOrg(cluster.url(TWO), 'someone else', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });
  for (const r of [ONE, THREE]) {
    // The operator's view, in a region that did not originate the change (its own Redis has no record of it).
    const admin = await call(cluster.url(r), 'GET', `/admin/replication/changes/${changeId}`, { headers: adminHeaders });
    expect({ region: r, status: admin.status, state: admin.body.state, origin: admin.body.origin }).toEqual({ region: r, status: 200, state: 'complete', origin: null });
    // The organization's own view (SlashID dialect), still scoped to it.
    const own = await call(cluster.url(r), 'GET', `/organizations/replication/changes/${changeId}`, { headers: slashidHeaders({ id: res.body.id, api_key: res.body.api_key }) });
    expect({ region: r, status: own.status, complete: own.body.result?.complete }).toEqual({ region: r, status: 200, complete: true });
    const foreign = await call(cluster.url(r), 'GET', `/organizations/replication/changes/${changeId}`, { headers: slashidHeaders(other) });
    expect({ region: r, status: foreign.status }).toEqual({ region: r, status: 404 });
  }
  expect((await call(cluster.url(ONE), 'GET', '/admin/replication/changes/00000000-0000-4000-8000-000000000000', { headers: adminHeaders })).status).toBe(404);
}, 60_000);

test('with region 1\'s Redis down, regions 2 and 3 replicate between themselves; after it returns, all three converge with nothing lost', async () => {
  const acked: string[] = [];
  // Every region's changes travel through the destinations' Redis, and acks through the origin's.
  const first = await write(TWO, 'before', { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '20' });
  expect(first.status).toBe(201);
  acked.push(first.body.id);
  // Each Redis holds its own region's inbox and the acks of its own region's changes, and no other inbox.
  for (const r of REGIONS) {
    const keys = await keysOf(r);
    expect(keys.filter((k) => k.includes('{repl}:changes:') && !k.includes('-born:')).map((k) => k.split(':').pop())).toEqual([r]);
  }
  expect((await keysOf(TWO)).some((k) => k.includes(`{repl}:ack:${first.headers.get('x-change-id')}`))).toBe(true);
  expect((await keysOf(ONE)).some((k) => k.includes(`{repl}:ack:${first.headers.get('x-change-id')}`))).toBe(false);

  await redis.get(ONE)?.kill();

  // Writes in regions 2 and 3 reach each other.
  for (let i = 0; i < 5; i++) {
    for (const [from, to] of [[TWO, THREE], [THREE, TWO]] as const) {
      const res = await write(from, `${from} ${i}`);
      expect(res.status).toBe(201);
      acked.push(res.body.id);
      expect(await eventually(() => has(to, res.body.id), 10_000, 100)).toBe(true);
    }
  }
  // Region 1 still takes local_region writes, and delivers them into the others' inboxes.
  const fromOne = await write(ONE, 'from region 1 without its Redis');
  expect(fromOne.status).toBe(201);
  acked.push(fromOne.body.id);
  for (const r of [TWO, THREE]) expect(await eventually(() => has(r, fromOne.body.id), 10_000, 100)).toBe(true);
  // all_regions cannot complete without region 1: 408, naming it as pending; the write is kept.
  const strict = await write(THREE, 'strict', { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '2' });
  expect(strict.status).toBe(408);
  expect(JSON.stringify(strict.body)).toContain(ONE);
  acked.push(strict.body.result?.id ?? strict.body.details?.id ?? strict.body.id);
  const changeId = strict.headers.get('x-change-id') ?? '';
  // Region 2's ack may come after the 2 s the write waited (pendingOnlyIn).
  expect(await pendingOnlyIn(cluster.url(THREE), changeId, [ONE])).toBe(true);
  expect((await adminChangeStatus(cluster.url(THREE), changeId)).pending_regions).toEqual([ONE]);
  expect((await status(ONE)).stream.connected).toBe(false);
  expect((await status(TWO)).stream.connected).toBe(true);
  // Region 1's metrics say its Redis is down, and still show the groups in the other regions' Redis.
  const m = await scrape(cluster.url(ONE));
  expect(m.value('replication_redis_up')).toBe(0);
  for (const r of [TWO, THREE]) expect(m.value('replication_stream_pending', { destination_region: r })).toEqual(expect.any(Number));

  // Region 1's Redis returns, empty. Regions 2 and 3 may apply its next change before their connections to
  // it are back: their acks then fail, and they ack on the applier's retry of the entries left pending,
  // which is hurried (the retry's wait is not what this test is about).
  const hurried = [TWO, THREE].map((r) => hurryClaims(cluster, r, { redisUrl: redis.get(r)?.url }));
  await redis.get(ONE)?.start();
  const after = await write(ONE, 'after', { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '30' });
  await Promise.all(hurried.map((h) => h.stop()));
  expect(after.status).toBe(201);
  acked.push(after.body.id);

  const converged = await eventually(async () => {
    const d = await Promise.all(REGIONS.map(digest));
    return d.every((x) => x === d[0]);
  }, 60_000, 500);
  expect(converged).toBe(true);
  for (const r of cluster.deployment.file.regions) {
    const pg = new Client({ connectionString: r.databaseUrl });
    await pg.connect();
    try {
      const found = await pg.query('SELECT count(*)::int AS n FROM organizations WHERE id = ANY($1::uuid[])', [acked]);
      expect({ region: r.id, n: found.rows[0].n }).toEqual({ region: r.id, n: acked.length });
    } finally {
      await pg.end();
    }
  }
  // Every origin's outbox confirms: each destination acked each change (region 1's acks arrived again).
  for (const r of REGIONS) expect(await eventually(async () => (await status(r)).outbox.unconfirmed === 0 && (await status(r)).outbox.unpublished === 0, 60_000, 500)).toBe(true);
  // Every Redis knows every member again: region 1 registered itself in its empty Redis, and the others
  // copied their entries into it (`npm run members -- list` reads each region's Redis).
  const members = async () =>
    JSON.parse((await runScript(cluster, 'members', ['list'])).stdout) as { members: { region: string; known_in: Record<string, string> }[]; unreachable: string[] };
  expect(await eventually(async () => {
    const m = await members();
    return m.unreachable.length === 0 && m.members.length === 3 && m.members.every((x) => Object.keys(x.known_in).length === 3);
  }, 30_000, 1000)).toBe(true);
  const change2 = (await call(cluster.url(THREE), 'GET', `/admin/replication/changes/${strict.headers.get('x-change-id')}`, { headers: adminHeaders })).body;
  expect(change2.complete).toBe(true);
}, 300_000);

test('changes delivered into an inbox that its Redis then loses are delivered again by their origin', async () => {
  // Region 3's applier is stopped: changes land in its inbox, unread. Then its Redis restarts empty.
  cluster.proc(THREE).pause();
  const ids: string[] = [];
  try {
    for (let i = 0; i < 5; i++) {
      const res = await write(ONE, `lost inbox ${i}`);
      expect(res.status).toBe(201);
      ids.push(res.body.id);
    }
    // Delivered (region 2 has them; region 3's inbox holds them), then lost with region 3's Redis.
    for (const id of ids) expect(await eventually(() => has(TWO, id), 10_000, 100)).toBe(true);
    await redis.get(THREE)?.kill();
    await redis.get(THREE)?.start();
  } finally {
    cluster.proc(THREE).resume();
  }
  // Region 1's relay finds its unconfirmed deliveries missing from region 3's inbox and delivers them again.
  const arrived = await eventually(async () => (await Promise.all(ids.map((id) => has(THREE, id)))).every(Boolean), 60_000, 250);
  expect({ arrived, logs: arrived ? [] : [...cluster.logs(ONE).slice(-10), ...cluster.logs(THREE).slice(-10)] }).toEqual({ arrived: true, logs: [] });
  const before = (await status(ONE)).outbox;
  expect(before.republished_after_loss).toBeGreaterThan(0);
  // The metrics count the same (each read between two readings of the status: the relay may go on meanwhile).
  const m = await scrape(cluster.url(ONE));
  const after = (await status(ONE)).outbox;
  const within = (v: number | undefined, lo: number, hi: number) => v !== undefined && v >= lo && v <= hi;
  expect(within(m.value('replication_relay_republished_total'), before.republished_after_loss, after.republished_after_loss)).toBe(true);
  expect(within(m.value('replication_relay_published_total'), before.published_by_relay, after.published_by_relay)).toBe(true);
  expect(await eventually(async () => (await status(ONE)).outbox.unconfirmed === 0, 30_000, 500)).toBe(true);
}, 120_000);

test('a delivery lost with its inbox is sent again while another destination is down (the change is not published until that one returns)', async () => {
  const inboxLength = async (region: string) => {
    const c = await import('ioredis').then((m) => new m.default(redis.get(region)?.url ?? ''));
    try {
      const key = (await c.keys('*{repl}:changes:*')).find((k) => k.endsWith(`:${region}`) && !k.includes('-born:'));
      return key ? await c.xlen(key) : 0;
    } finally {
      c.disconnect();
    }
  };
  const before = (await status(ONE)).outbox.republished_after_loss as number;
  // Region 2 takes no deliveries (its Redis is down); region 3's applier is stopped, its inbox holds them.
  await redis.get(TWO)?.kill();
  cluster.proc(THREE).pause();
  const ids: string[] = [];
  try {
    const base = await inboxLength(THREE);
    for (let i = 0; i < 3; i++) {
      const res = await write(ONE, `lost while another is down ${i}`);
      expect(res.status).toBe(201);
      ids.push(res.body.id);
    }
    expect(await eventually(async () => (await inboxLength(THREE)) >= base + 3, 10_000, 100)).toBe(true);
    await redis.get(THREE)?.kill();
    await redis.get(THREE)?.start();
  } finally {
    cluster.proc(THREE).resume();
  }
  try {
    // Not published (region 2 lacks a delivery), yet region 1 finds its deliveries to region 3 gone and
    // sends them again, without waiting for region 2.
    const arrived = await eventually(async () => (await Promise.all(ids.map((id) => has(THREE, id)))).every(Boolean), 60_000, 250);
    const s = (await status(ONE)).outbox;
    expect({ arrived, unpublished: s.unpublished >= 3, republished: s.republished_after_loss > before }).toEqual({ arrived: true, unpublished: true, republished: true });
  } finally {
    await redis.get(TWO)?.start();
  }
  for (const id of ids) expect(await eventually(() => has(TWO, id), 60_000, 250)).toBe(true);
  expect(await eventually(async () => (await status(ONE)).outbox.unconfirmed === 0 && (await status(ONE)).outbox.unpublished === 0, 60_000, 500)).toBe(true);
}, 240_000);
