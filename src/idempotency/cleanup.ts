/**
 * Removes idempotency keys a day after they expired, in this region's database only. That is safe without
 * replication: an expired key is never consulted again, and if a late duplicate of its change re-inserts
 * it somewhere, it is still expired and the next pass removes it.
 */
import type { Db } from '../db/client';
import type { Logger } from '../logger';
import { deleteExpiredKeys, KEEP_AFTER_EXPIRY_MS } from './store';

const BATCH = 1000;

export interface CleanupOptions {
  intervalMs?: number;
}

export class IdempotencyKeyCleanup {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<unknown> | null = null;
  private stopped = false;

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    private readonly opts: CleanupOptions = {},
  ) {}

  start(): void {
    const intervalMs = this.opts.intervalMs ?? 3600_000;
    const tick = async () => {
      this.running = this.runOnce().catch((err: Error) => this.log.warn({ err: err.message }, 'idempotency key cleanup failed'));
      await this.running;
      if (!this.stopped) this.timer = setTimeout(tick, intervalMs);
    };
    // The first pass soon after start, but not during it, when the region has more urgent work.
    this.timer = setTimeout(tick, Math.min(intervalMs, 60_000));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  /** Deletes every key that expired more than a day before `now`, in short batches; returns how many. */
  async runOnce(now = new Date()): Promise<number> {
    const cutoff = new Date(now.getTime() - KEEP_AFTER_EXPIRY_MS);
    let total = 0;
    for (;;) {
      const n = await deleteExpiredKeys(this.db, cutoff, BATCH);
      total += n;
      if (n < BATCH || this.stopped) break;
    }
    if (total > 0) this.log.info({ deleted: total }, 'deleted expired idempotency keys');
    return total;
  }
}
