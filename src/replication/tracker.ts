/**
 * Replication tracker: which regions have applied which change.
 * Acks live in Redis as a hash per change (region -> ISO time) with a TTL, and every ack batch is announced
 * on one pub/sub channel. A process holds ONE subscriber connection and an in-memory map of waiters; a waiter
 * checks the stored acks right after it registers, so an ack that landed first is not missed, and its timer
 * is cleared as soon as it is answered. Pub/sub is at-most-once (a reconnect or a full output buffer drops
 * messages), so while anyone waits, one sweep timer per process also re-reads the stored acks.
 */
import type { Redis, ReplicationKeys } from '../redis';
import type { Logger } from '../logger';

export const ACK_TTL_SECONDS = 7 * 24 * 3600;

export interface WaitResult {
  complete: boolean;
  /** Regions known to have applied the change (the local region included). */
  applied: string[];
  /** Regions still missing. */
  pending: string[];
}

interface Waiter {
  need: Set<string>;
  applied: Set<string>;
  finish: (complete: boolean) => void;
}

export class Tracker {
  private readonly waiters = new Map<string, Set<Waiter>>();
  private sweeper: NodeJS.Timeout | null = null;

  constructor(
    private readonly redis: Redis,
    private readonly subscriber: Redis,
    private readonly keys: ReplicationKeys,
    private readonly log: Logger,
    private readonly sweepIntervalMs = 1000,
  ) {}

  /**
   * Subscribes once the subscriber connection is ready, and again after every reconnect. (Sending SUBSCRIBE
   * while ioredis is still running its ready check makes it drop the connection and lose the subscription.)
   */
  async start(): Promise<void> {
    this.subscriber.on('message', (_channel: string, message: string) => this.onMessage(message));
    this.subscriber.on('ready', () => void this.subscribe());
    if (this.subscriber.status === 'ready') await this.subscribe();
  }

  private async subscribe(): Promise<void> {
    try {
      await this.subscriber.subscribe(this.keys.ackChannel);
      // Acks announced while we were not subscribed are only in the stored hashes.
      await this.recheckAll();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'tracker could not subscribe; will retry on reconnect');
    }
  }

  /** Records that `region` has applied these changes and announces it. */
  async ack(region: string, changeIds: readonly string[]): Promise<void> {
    if (changeIds.length === 0) return;
    const at = new Date().toISOString();
    const pipe = this.redis.pipeline();
    for (const id of changeIds) {
      pipe.hset(this.keys.ack(id), region, at);
      pipe.expire(this.keys.ack(id), ACK_TTL_SECONDS);
    }
    pipe.publish(this.keys.ackChannel, JSON.stringify({ region, ids: changeIds }));
    const results = await pipe.exec();
    const failed = results?.find(([err]) => err);
    if (failed?.[0]) throw failed[0];
  }

  async status(changeId: string): Promise<Record<string, string>> {
    return this.redis.hgetall(this.keys.ack(changeId));
  }

  /**
   * Resolves when every region in `regions` has acked `changeId`, or at `deadline` (epoch ms) with what is
   * known then. Never rejects: with Redis down it simply times out.
   */
  wait(changeId: string, regions: readonly string[], alreadyApplied: readonly string[], deadline: number): Promise<WaitResult> {
    return new Promise<WaitResult>((resolve) => {
      const need = new Set(regions);
      const applied = new Set(alreadyApplied.filter((r) => need.has(r)));
      let timer: NodeJS.Timeout | undefined;
      const waiter: Waiter = {
        need,
        applied,
        finish: (complete) => {
          if (timer) clearTimeout(timer);
          const set = this.waiters.get(changeId);
          set?.delete(waiter);
          if (set && set.size === 0) this.waiters.delete(changeId);
          resolve({ complete, applied: [...applied], pending: [...need].filter((r) => !applied.has(r)) });
        },
      };
      if (applied.size === need.size) return waiter.finish(true);
      timer = setTimeout(() => waiter.finish(false), Math.max(0, deadline - Date.now()));
      let set = this.waiters.get(changeId);
      if (!set) this.waiters.set(changeId, (set = new Set()));
      set.add(waiter);
      this.scheduleSweep();
      void this.recheck(changeId);
    });
  }

  get waiting(): number {
    let n = 0;
    for (const set of this.waiters.values()) n += set.size;
    return n;
  }

  private onMessage(message: string): void {
    let parsed: { region?: unknown; ids?: unknown };
    try {
      parsed = JSON.parse(message) as typeof parsed;
    } catch {
      return;
    }
    if (typeof parsed.region !== 'string' || !Array.isArray(parsed.ids)) return;
    for (const id of parsed.ids) {
      if (typeof id === 'string') this.markApplied(id, [parsed.region]);
    }
  }

  private markApplied(changeId: string, regions: readonly string[]): void {
    const set = this.waiters.get(changeId);
    if (!set) return;
    for (const w of [...set]) {
      for (const r of regions) if (w.need.has(r)) w.applied.add(r);
      if (w.applied.size === w.need.size) w.finish(true);
    }
  }

  private async recheck(changeId: string): Promise<void> {
    try {
      const acks = await this.redis.hgetall(this.keys.ack(changeId));
      this.markApplied(changeId, Object.keys(acks));
    } catch (err) {
      this.log.debug({ err: (err as Error).message, changeId }, 'tracker recheck failed; waiting for announcements');
    }
  }

  private scheduleSweep(): void {
    if (this.sweeper) return;
    this.sweeper = setTimeout(() => {
      void this.recheckAll().finally(() => {
        this.sweeper = null;
        if (this.waiters.size > 0) this.scheduleSweep();
      });
    }, this.sweepIntervalMs);
    this.sweeper.unref();
  }

  private async recheckAll(): Promise<void> {
    const ids = [...this.waiters.keys()];
    for (let i = 0; i < ids.length; i += 500) {
      const batch = ids.slice(i, i + 500);
      const pipe = this.redis.pipeline();
      for (const id of batch) pipe.hkeys(this.keys.ack(id));
      try {
        const res = (await pipe.exec()) ?? [];
        batch.forEach((id, j) => {
          const [err, regions] = res[j] ?? [null, []];
          if (!err && Array.isArray(regions)) this.markApplied(id, regions as string[]);
        });
      } catch (err) {
        this.log.debug({ err: (err as Error).message }, 'tracker sweep failed; will retry');
      }
    }
  }
}
