/**
 * Whether the region's own Redis answers, for /healthz, /readyz and the operator port. ioredis' status says
 * only whether its connection is open: a Redis that hangs (stopped, its connection open) stays `ready` to it
 * while every command waits (a helper's review: /readyz said Redis was reachable throughout). So a PING goes
 * out at most once a second while someone asks, and the status is `not answering` once one has waited longer
 * than the status reads' bound (REDIS_STATUS_MS). Synchronous, so the operator snapshot can carry it.
 */
import type { Logger } from '../logger';
import { REDIS_OUTAGE_WARN_MS } from '../redis';
import { REDIS_STATUS_MS } from '../replication/links';

export class RedisLiveness {
  /** When the PING under way went out (null when none is). */
  private pingSince: number | null = null;
  private lastPingAt = -Infinity;

  constructor(
    private readonly redis: { readonly status: string; ping(): Promise<unknown> },
    private readonly boundMs = REDIS_STATUS_MS,
    private readonly everyMs = 1000,
  ) {}

  /** ioredis' status, or `not answering` when it says `ready` and a PING has waited longer than the bound. */
  status(): string {
    const s = this.redis.status;
    if (s !== 'ready') return s;
    const now = Date.now();
    if (this.pingSince === null && now - this.lastPingAt >= this.everyMs) {
      this.pingSince = now;
      this.lastPingAt = now;
      const done = () => {
        this.pingSince = null;
      };
      this.redis.ping().then(done, done);
    }
    return this.pingSince !== null && now - this.pingSince > this.boundMs ? 'not answering' : 'ready';
  }
}

/**
 * Logs the region's own Redis going away and coming back: one warning when it has not answered for
 * `downAfterMs` (down, or hung with its connection open), one line when it answers again. The loops that use
 * that Redis retry quietly (their failures are debug lines), so without this an outage of it, during which
 * no change reaches or leaves the region, left no line at the default level. Asks once every `everyMs`,
 * which keeps RedisLiveness pinging (so the first probe after a hang no longer reads `ready`).
 */
export function watchRedis(liveness: RedisLiveness, log: Logger, opts: { everyMs?: number; downAfterMs?: number; url?: string } = {}): { stop(): void } {
  const everyMs = opts.everyMs ?? 1000;
  const downAfterMs = opts.downAfterMs ?? REDIS_OUTAGE_WARN_MS;
  // Which Redis (its URL without credentials): a region may have one of its own (REGION_REDIS_URL, redisUrl).
  const at = opts.url ? { redis_url: opts.url } : {};
  let failingSince: number | null = null;
  let warned = false;
  const timer = setInterval(() => {
    const status = liveness.status();
    const now = Date.now();
    if (status === 'ready') {
      if (warned) log.info({ ...at, down_ms: now - (failingSince ?? now) }, "this region's Redis answers again");
      failingSince = null;
      warned = false;
      return;
    }
    failingSince ??= now;
    if (!warned && now - failingSince >= downAfterMs) {
      warned = true;
      log.warn(
        { ...at, redis: status, since: new Date(failingSince).toISOString() },
        "this region's Redis does not answer: the other regions' changes wait in their outboxes until it does (reads and local_region writes are served; all_regions writes here time out)",
      );
    }
  }, everyMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
