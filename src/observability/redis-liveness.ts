/**
 * Whether the region's own Redis answers, for /healthz, /readyz and the operator port. ioredis' status says
 * only whether its connection is open: a Redis that hangs (stopped, its connection open) stays `ready` to it
 * while every command waits (a helper's review: /readyz said Redis was reachable throughout). So a PING goes
 * out at most once a second while someone asks, and the status is `not answering` once one has waited longer
 * than the status reads' bound (REDIS_STATUS_MS). Synchronous, so the operator snapshot can carry it.
 */
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
