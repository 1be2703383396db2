/**
 * The write side of replication. A feature's write runs in one local transaction through `write()`:
 * it locks and puts full rows, and the same transaction stores the change event in the outbox.
 * After commit the event is published to the stream right away (fast path); if that fails, the relay
 * publishes it later. `waitFor()` turns a consistency level into a wait on the tracker.
 */
import { v7 as uuidv7 } from 'uuid';
import type { Db, TxClient } from '../db/client';
import type { Logger } from '../logger';
import type { Redis, ReplicationKeys } from '../redis';
import type { HybridClock } from './hlc';
import type { RowStore } from './row-store';
import type { ChangeEvent, ReplicatedTable, Row, RowChange } from './tables';
import type { Tracker, WaitResult } from './tracker';

export interface WriteContext {
  tx: TxClient;
  /** Locks the row for the rest of the transaction (also when absent) and returns it, tombstones included. */
  lock(table: ReplicatedTable, key: string): Promise<Row | null>;
  /** Stores a full row as a new version (newer than whatever is stored) and returns what was stored. */
  put(table: ReplicatedTable, row: Row): Promise<Row>;
}

export interface ReplicatorDeps {
  db: Db;
  redis: Redis;
  keys: ReplicationKeys;
  store: RowStore;
  clock: HybridClock;
  tracker: Tracker;
  region: string;
  regions: readonly string[];
  log: Logger;
}

export class Replicator {
  constructor(private readonly d: ReplicatorDeps) {}

  get region(): string {
    return this.d.region;
  }

  get regions(): readonly string[] {
    return this.d.regions;
  }

  async write<T>(fn: (ctx: WriteContext) => Promise<T>): Promise<{ value: T; event: ChangeEvent | null }> {
    const { store, clock, region } = this.d;
    const result = await this.d.db.$transaction(
      async (tx) => {
        const ops: RowChange[] = [];
        const ctx: WriteContext = {
          tx,
          lock: (table, key) => store.lock(tx, table, key),
          put: async (table, row) => {
            const key = String(row[table.key]);
            const current = await store.lock(tx, table, key);
            const version = clock.next(typeof current?.version === 'string' ? current.version : null);
            const full: Row = {
              ...row,
              version,
              origin_region: region,
              // A new row was last updated when it was created; an existing one, now.
              updated_at: current ? new Date().toISOString() : (row.created_at ?? new Date().toISOString()),
              deleted_at: row.deleted_at ?? null,
            };
            const stored = await store.apply(tx, [{ table: table.name, key, version, row: full }]);
            // Only a live row over a tombstone can be refused; features check first, so this is a bug guard.
            if (stored !== 1) throw new Error(`write to ${table.name} ${key} was refused by the merge rule`);
            ops.push({ table: table.name, key, version, row: full });
            return full;
          },
        };
        const value = await fn(ctx);
        if (ops.length === 0) return { value, event: null };
        const event: ChangeEvent = { changeId: uuidv7(), origin: region, createdAt: new Date().toISOString(), ops };
        await tx.$executeRawUnsafe(
          'INSERT INTO replication_outbox (change_id, event) VALUES ($1::uuid, $2::jsonb)',
          event.changeId,
          JSON.stringify(event),
        );
        return { value, event };
      },
      { maxWait: 10_000, timeout: 20_000 },
    );
    if (result.event) void this.publish(result.event);
    return result;
  }

  /** Fast path after commit. Failures are fine: the relay publishes whatever is left unpublished. */
  async publish(event: ChangeEvent): Promise<boolean> {
    try {
      const streamId = await this.d.redis.xadd(this.d.keys.stream, '*', 'e', JSON.stringify(event));
      if (!streamId) throw new Error('XADD returned no id');
      this.markPublished(event.changeId, streamId);
      await this.d.tracker.ack(this.d.region, [event.changeId]);
      return true;
    } catch (err) {
      this.d.log.debug({ err: (err as Error).message, changeId: event.changeId }, 'publish deferred to the relay');
      return false;
    }
  }

  private pendingMarks: { changeId: string; streamId: string }[] = [];
  private markTimer: NodeJS.Timeout | null = null;

  /**
   * Outbox rows are marked published in small batches, one UPDATE per ~20 ms instead of one per write.
   * A mark that is lost (crash, database error) only means the relay publishes that event again.
   */
  private markPublished(changeId: string, streamId: string): void {
    this.pendingMarks.push({ changeId, streamId });
    this.markTimer ??= setTimeout(() => void this.flushPublished(), 20);
  }

  async flushPublished(): Promise<void> {
    if (this.markTimer) clearTimeout(this.markTimer);
    this.markTimer = null;
    const marks = this.pendingMarks;
    this.pendingMarks = [];
    if (marks.length === 0) return;
    try {
      await this.d.db.$executeRawUnsafe(
        `UPDATE replication_outbox o SET published_at = now(), stream_id = x.sid
           FROM unnest($1::uuid[], $2::text[]) AS x(cid, sid) WHERE o.change_id = x.cid AND o.published_at IS NULL`,
        marks.map((m) => m.changeId),
        marks.map((m) => m.streamId),
      );
    } catch (err) {
      this.d.log.debug({ err: (err as Error).message, count: marks.length }, 'could not mark events published; the relay will publish them again');
    }
  }

  /** Waits until every configured region has applied the change, or the deadline passes. */
  waitForAllRegions(changeId: string, deadline: number): Promise<WaitResult> {
    return this.d.tracker.wait(changeId, this.d.regions, [this.d.region], deadline);
  }
}
