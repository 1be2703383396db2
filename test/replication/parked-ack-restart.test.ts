/**
 * A change a region parked and later applied on a retry owes its origin an "applied" ack (parked-applied-
 * ack.test.ts). When the origin's Redis does not answer at that moment, the ack was kept in the applying
 * process's memory only: a restart of that process before the origin's Redis came back lost it, and the
 * origin's status showed the region as parked, and pending, for good, though it held the change. Now it is
 * kept in the region's Postgres (replication_retried_acks, written with the apply) until the origin's Redis
 * takes it, and a restarted process sends it again.
 * Two regions as processes, each with a Redis of its own; the origin's clock runs ahead of the other's past
 * maxClockSkewMs, so its change is parked there (clock-skew) until the clocks agree.
 */
import path from 'node:path';
import { Client } from 'pg';
import { adminHeaders, call, eventually, type Cluster } from '../support/harness';
import { clusterWithOwnRedis, type OwnRedis } from '../support/redis-server';

const ORIGIN = 'us-iowa';
const REGION = 'europe-belgium';
const SKEW_MS = 2000;
/** How far the origin's clock runs ahead: its change applies in REGION once AHEAD_MS - SKEW_MS have passed. */
const AHEAD_MS = 6000;
let cluster: Cluster;
let servers: Map<string, OwnRedis>;
let stop: () => Promise<void>;

beforeAll(async () => {
  ({ cluster, redis: servers, stop } = await clusterWithOwnRedis('parked-ack-restart', [ORIGIN, REGION], { maxClockSkewMs: SKEW_MS }, {
    regionEnv: { [ORIGIN]: { NODE_OPTIONS: `--require ${path.join(__dirname, '..', 'support', 'clock-ahead.cjs')}`, CLOCK_AHEAD_MS: String(AHEAD_MS) } },
  }));
}, 120_000);
afterAll(async () => {
  await stop?.();
});

/** One query in `region`'s database. */
async function query<R extends object>(region: string, sql: string, values: unknown[] = []): Promise<R[]> {
  const pg = new Client({ connectionString: cluster.deployment.file.regions.find((r) => r.id === region)?.databaseUrl });
  await pg.connect();
  try {
    return (await pg.query<R>(sql, values)).rows;
  } finally {
    await pg.end();
  }
}

/** How many acks of retried parked changes REGION's database still records as owed. */
const owed = async () => (await query<{ n: number }>(REGION, 'SELECT count(*)::int AS n FROM replication_retried_acks'))[0]?.n ?? -1;

const originRedis = () => servers.get(ORIGIN) as OwnRedis;
const status = async (changeId: string) => (await call(cluster.url(ORIGIN), 'GET', `/admin/replication/changes/${changeId}`, { headers: adminHeaders })).body;

/** An organization written in ORIGIN, parked in REGION (its version is ahead of REGION's clock) and confirmed so. */
async function parkedChange(name: string) {
  const created = await call(cluster.url(ORIGIN), 'POST', '/admin/organizations', { body: { name }, headers: adminHeaders });
  expect(created.status).toBe(201);
  const writtenAt = Date.now();
  const changeId = created.headers.get('x-change-id') as string;
  expect(await eventually(async () => {
    const s = await status(changeId);
    return s.origin?.confirmed_at != null && s.parked_regions?.includes(REGION);
  }, 30_000, 200)).toBe(true);
  // Once REGION's clock is within the bound of the change's version, a retry applies it.
  const retryable = () => new Promise((r) => setTimeout(r, Math.max(0, writtenAt + AHEAD_MS - SKEW_MS + 500 - Date.now())));
  return { id: created.body.id as string, changeId, retryable };
}

test('the applied ack of a retried parked change survives a kill -9 of the region while its origin\'s Redis does not answer', async () => {
  const { id, changeId, retryable } = await parkedChange('parked, applied, then killed');
  const notSent = () => cluster.logs(REGION).filter((l) => l.includes('applied (parked before), but could not ack')).length;

  // Down, not paused: a paused server still takes the bytes of a command on its open connection, and runs
  // it once it goes on, whatever became of the client meanwhile. It keeps nothing on disk: back, it has no
  // record of the change, and the origin's status reads REGION's parked ack from its delivery.
  await originRedis().kill();
  try {
    await retryable();
    const retried = await call(cluster.url(REGION), 'POST', '/admin/replication/parked/retry', { headers: adminHeaders });
    expect(retried.body).toMatchObject({ applied: 1 });
    expect((await call(cluster.url(REGION), 'GET', `/admin/organizations/${id}`, { headers: adminHeaders })).body).toMatchObject({ name: 'parked, applied, then killed' });
    expect(await eventually(async () => notSent() > 0, 30_000, 100)).toBe(true);
    // No shutdown code runs: what the process held in memory is gone.
    await cluster.proc(REGION).kill();
    cluster.proc(REGION).start();
    await cluster.proc(REGION).waitReady(60_000);
    // Read while the origin's Redis is still down: the status reads REGION's parked ack from its delivery.
    // (Read once it is back, it raced the restarted process, which sends the owed ack every 2 s as soon as
    // its connection is back: a read a moment late found it applied already.)
    expect(await status(changeId)).toMatchObject({ parked_regions: [REGION] });
  } finally {
    await originRedis().start();
  }
  expect(await eventually(async () => {
    const s = await status(changeId);
    return s.parked_regions?.length === 0 && typeof s.applied_at?.[REGION] === 'string';
  }, 30_000, 200)).toBe(true);
  expect(await status(changeId)).toMatchObject({ state: 'complete', pending_regions: [], parked_regions: [] });
  // Taken: no longer owed (not sent again at the next start).
  expect(await eventually(async () => (await owed()) === 0, 15_000, 200)).toBe(true);
}, 180_000);

test('the origin\'s delivery of a parked change takes the applied ack once the region applies it, so a status read after its Redis lost its data does not show the region parked again', async () => {
  const { changeId, retryable } = await parkedChange('parked, applied, then the origin\'s Redis lost');
  const deliveryAck = async () => (await query<{ ack: string | null }>(ORIGIN, 'SELECT ack FROM replication_deliveries WHERE change_id = $1 AND region = $2', [changeId, REGION]))[0]?.ack ?? '';
  expect(await deliveryAck()).toMatch(/^parked /);
  await retryable();
  expect((await call(cluster.url(REGION), 'POST', '/admin/replication/parked/retry', { headers: adminHeaders })).body).toMatchObject({ applied: 1 });
  expect(await eventually(async () => (await status(changeId)).parked_regions?.length === 0, 15_000, 200)).toBe(true);
  // The origin's relay copies the applied ack into the delivery it had confirmed on the parked one.
  expect(await eventually(async () => (await deliveryAck()).startsWith('applied@'), 15_000, 200)).toBe(true);

  // The origin's Redis loses its data (it keeps nothing on disk): the status reads the deliveries' acks.
  await originRedis().kill();
  await originRedis().start();
  const after = await status(changeId);
  expect(after).toMatchObject({ state: 'complete', pending_regions: [], parked_regions: [] });
  expect(after.applied_at[REGION]).toEqual(expect.any(String));
}, 120_000);
