/**
 * Shortens a region process's wait for its applier to take its pending inbox entries again, for tests whose
 * subject is what the applier does on each retry, not when: every `everyMs`, each entry pending in `region`'s
 * consumer group for more than `afterMs` is marked idle for an hour (XCLAIM to the consumer that holds it,
 * IDLE, JUSTID: the delivery count stays), so that the applier's next XAUTOCLAIM (every 5 s) takes it instead
 * of one past its 15 s idle bound. The applier's own filters (entries of batches in flight) still apply.
 */
import type { Cluster } from './harness';
import { createRedis, replicationKeys } from '../../src/redis';
import { REDIS_URL } from './env';

/** `redisUrl`: the Redis that holds `region`'s inbox, when the region has one of its own (default the shared one). */
export function hurryClaims(cluster: Cluster, region: string, opts: { everyMs?: number; afterMs?: number; redisUrl?: string } = {}): { stop(): Promise<void> } {
  const redis = createRedis(opts.redisUrl ?? REDIS_URL, 'hurry-claims');
  const inbox = replicationKeys(cluster.deployment.file.redisKeyPrefix).inbox(region);
  const afterMs = opts.afterMs ?? 1500;
  let running: Promise<void> = Promise.resolve();
  const tick = async () => {
    const pending = (await redis.call('XPENDING', inbox, region, 'IDLE', afterMs, '-', '+', 100)) as [string, string, number, number][];
    for (const [id, consumer] of pending) await redis.call('XCLAIM', inbox, region, consumer, 0, id, 'IDLE', 3_600_000, 'JUSTID');
  };
  const timer = setInterval(() => {
    running = running.then(tick).catch(() => undefined);
  }, opts.everyMs ?? 500);
  return {
    async stop() {
      clearInterval(timer);
      await running;
      redis.disconnect();
    },
  };
}
