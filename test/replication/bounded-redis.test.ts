/**
 * Bounded Redis (issue G, item 7): once the origin confirms a change (every region acked it), its ack
 * record expires with the outbox retention instead of living for the ack TTL; the clean-up of confirmed
 * outbox rows finds them through an index, not a sequential scan.
 */
import { createRedis, replicationKeys } from '../../src/redis';
import { ACK_TTL_SECONDS } from '../../src/replication/ack-records';
import { REDIS_URL } from '../support/env';
import { createOrg, eventually } from '../support/harness';
import { startInProcess, type InProcessRegion } from '../support/in-process';

let region: InProcessRegion;
afterAll(async () => {
  await region?.stop();
});

test('a confirmed change keeps its ack record for the outbox retention only, and the outbox clean-up uses an index', async () => {
  region = await startInProcess('boundedredis', ['us-iowa']);
  const redis = createRedis(REDIS_URL, 'bounded-redis-test');
  await new Promise((r) => redis.once('ready', r));
  const keys = replicationKeys(region.deployment.file.redisKeyPrefix);
  try {
    await createOrg(region.url, 'acme');
    const db = region.region.db;
    const row = async () => (await db.replicationOutbox.findFirst({ orderBy: { id: 'desc' } }));
    const changeId = (await row())?.changeId ?? '';
    expect(await eventually(async () => (await row())?.confirmedAt != null, 10_000, 100)).toBe(true);
    expect(await eventually(async () => {
      const ttl = await redis.ttl(keys.ack(changeId));
      return ttl > 0 && ttl <= 3600;
    }, 5000, 100)).toBe(true);
    expect(ACK_TTL_SECONDS).toBe(24 * 3600);

    // On a table this small the planner may prefer a scan anyway; with scans priced out, the index must exist.
    const plan = await db.$transaction(async (tx) => {
      await tx.$executeRawUnsafe('SET LOCAL enable_seqscan = off');
      return tx.$queryRawUnsafe<{ 'QUERY PLAN': string }[]>(
        `EXPLAIN DELETE FROM replication_outbox WHERE confirmed_at < now() - make_interval(secs => 3600)`,
      );
    });
    expect(plan.map((p) => p['QUERY PLAN']).join('\n')).toMatch(/replication_outbox_confirmed_at_idx/);
  } finally {
    redis.disconnect();
  }
}, 60_000);
