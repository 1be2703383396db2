/**
 * An inbox entry the destination's applier has read but not yet acked (its apply waits on a lock) may be
 * trimmed by the inbox's cap meanwhile: the applier holds the event it read, applies it and acks it later.
 * The origin's relay took such a delivery, long unconfirmed and gone from the inbox, for one the cap trimmed
 * unread (the group's oldest pending entry is older than the oldest entry left, so it looked behind the cap)
 * and marked the healthy region `joining`, out of service until a re-seed. Through real region processes: the
 * target's API key row locked by a session idle in a transaction, so that the key rotation's apply waits
 * while the changes after it apply; then the inbox is trimmed past it by hand, as the cap would (a race of
 * hundreds of writes against the cap did not reach that state in time on a loaded machine).
 */
import { Client } from 'pg';
import { createRedis, replicationKeys } from '../../src/redis';
import { adminHeaders, blocksAnother, call, createOrg, eventually, startCluster, type Cluster } from '../support/harness';
import { REDIS_URL } from '../support/env';
import { compareStreamIds } from '../../src/replication/stream';

const ORIGIN = 'us-iowa';
const TARGET = 'asia-japan';
const CAP = 100;
const MARKED = 'that region needs a re-seed';
let cluster: Cluster;
/** The origin's log lines that say it marked a region for a re-seed (logs() keeps only the last 200). */
const marked: string[] = [];

beforeAll(async () => {
  cluster = await startCluster('pending-trim', [ORIGIN, TARGET], {
    // The origin's trims every second: they record the inbox's birth mark before anything is trimmed.
    extra: { streamMaxLength: CAP, republishAfterMs: 1000, streamTrimIntervalMs: 1000 },
    onLine: (region, line) => void (region === ORIGIN && line.includes(MARKED) && marked.push(line)),
  });
}, 90_000);
afterAll(async () => {
  await cluster?.stop();
});

const status = async (region: string) => (await call(cluster.url(region), 'GET', '/admin/replication', { headers: adminHeaders })).body;

test('a delivery read but not yet acked when the cap trims it is not taken for a missed change: the region stays in service', async () => {
  const org = await createOrg(cluster.url(ORIGIN), 'held');
  const target = new Client({ connectionString: cluster.deployment.configFor(TARGET).region.databaseUrl });
  await target.connect();
  const redis = createRedis(REDIS_URL, 'pending-trim');
  const inbox = replicationKeys(cluster.deployment.file.redisKeyPrefix).inbox(TARGET);
  let locked = false;
  try {
    const keysHere = async () => (await target.query<{ key_id: string }>('SELECT key_id FROM api_keys WHERE org_id = $1', [org.id])).rows;
    expect(await eventually(async () => (await keysHere()).length === 1, 20_000, 200)).toBe(true);
    await target.query('BEGIN');
    await target.query('SELECT 1 FROM api_keys WHERE key_id = $1 FOR UPDATE', [(await keysHere())[0]?.key_id]);
    locked = true;
    // The rotation revokes the locked key: its apply at the target waits, its entry pending there.
    expect((await call(cluster.url(ORIGIN), 'POST', `/admin/organizations/${org.id}/api-keys`, { headers: adminHeaders })).status).toBe(201);
    expect(await eventually(() => blocksAnother(target), 20_000, 100)).toBe(true);
    // The origin's trim has recorded the inbox's birth mark (a deployment that runs for long has one).
    const born = replicationKeys(cluster.deployment.file.redisKeyPrefix).inboxBorn(TARGET);
    expect(await eventually(async () => (await redis.get(born)) !== null, 20_000, 100)).toBe(true);
    // Changes after it apply at the target; all but the rotation are confirmed at the origin.
    for (let i = 0; i < 5; i++) await createOrg(cluster.url(ORIGIN), `after ${i}`);
    const newest = async () => (await redis.xrevrange(inbox, '+', '-', 'COUNT', 1))[0]?.[0];
    const onlyRotationOpen = async () => {
      const o = (await status(ORIGIN)).outbox;
      const [count] = (await redis.xpending(inbox, TARGET)) as [number];
      return o.unpublished === 0 && o.unconfirmed === 1 && count === 1;
    };
    expect(await eventually(onlyRotationOpen, 30_000, 200)).toBe(true);
    // The cap trims the pending entry: by hand, to the newest entry (read and acked), so nothing unread goes.
    const last = await newest();
    expect(last).toBeDefined();
    await redis.xtrim(inbox, 'MINID', last as string);
    const [, oldest] = (await redis.xpending(inbox, TARGET)) as [number, string | null];
    expect(oldest !== null && compareStreamIds(oldest, last as string) < 0).toBe(true);
    // The origin's confirm rounds (every 500 ms, the delivery stale after 1 s) look for it meanwhile.
    expect(await eventually(async () => marked.length > 0, 8_000, 200)).toBe(false);
    await target.query('ROLLBACK');
    locked = false;
    // The rotation applies and is acked; the region was never out of service.
    expect(await eventually(async () => (await keysHere()).length === 2, 30_000, 200)).toBe(true);
    expect(await eventually(async () => (await status(ORIGIN)).outbox.unconfirmed === 0, 30_000, 200)).toBe(true);
    expect(marked).toEqual([]);
    expect((await status(ORIGIN)).needs_reseed).toEqual([]);
  } finally {
    if (locked) await target.query('ROLLBACK').catch(() => undefined);
    await target.end();
    redis.disconnect();
  }
}, 240_000);
