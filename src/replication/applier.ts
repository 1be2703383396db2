/**
 * The apply side of replication, run by every region: one consumer group per region on the change stream.
 * A batch is applied in one transaction (last writer wins per row, so duplicates and reordering are
 * harmless), then acked in the tracker, then XACKed. Our own pending entries are re-read at start and
 * entries left pending by a dead consumer are reclaimed with XAUTOCLAIM.
 */
import type { Db } from '../db/client';
import type { Logger } from '../logger';
import type { Redis, ReplicationKeys } from '../redis';
import type { HybridClock } from './hlc';
import type { RowStore } from './row-store';
import { ensureGroups, eventField, type StreamEntry } from './stream';
import type { ChangeEvent } from './tables';
import type { AckOutcome, Tracker } from './tracker';

export interface ApplierDeps {
  db: Db;
  /** A connection of its own: XREADGROUP BLOCK holds it. */
  reader: Redis;
  redis: Redis;
  keys: ReplicationKeys;
  store: RowStore;
  clock: HybridClock;
  tracker: Tracker;
  region: string;
  regions: readonly string[];
  consumer: string;
  log: Logger;
  batchSize?: number;
  /** How long an entry may sit unacked with a consumer before another consumer takes it over. */
  claimIdleMs?: number;
  /** How often to look for such entries (default 5 s). */
  claimEveryMs?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Applier {
  private stopped = false;
  private loop: Promise<void> | null = null;
  private lastClaim = 0;
  private readonly failures = new Map<string, number>();
  /** Per change id applied in this process and not yet acked: superseded outcomes (applied if absent). */
  private readonly outcomes = new Map<string, AckOutcome>();
  appliedEvents = 0;
  /** Observer of each applied batch: its events' origins and how long it took (metrics set it). */
  onApplied?: (origins: readonly string[], seconds: number) => void;

  constructor(private readonly d: ApplierDeps) {}

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  private async run(): Promise<void> {
    const { reader, keys, region, consumer, log } = this.d;
    const count = this.d.batchSize ?? 200;
    let groupsReady = false;
    let ownPending = true;
    while (!this.stopped) {
      try {
        if (!groupsReady) {
          await ensureGroups(this.d.redis, keys, this.d.regions);
          groupsReady = true;
          ownPending = true;
        }
        let entries: StreamEntry[];
        if (ownPending) {
          entries = await this.read(['COUNT', count, 'STREAMS', keys.stream, '0']);
          if (entries.length === 0) ownPending = false;
        } else if (Date.now() - this.lastClaim > (this.d.claimEveryMs ?? 5000)) {
          this.lastClaim = Date.now();
          entries = await this.claim(count);
        } else {
          entries = await this.read(['COUNT', count, 'BLOCK', 1000, 'STREAMS', keys.stream, '>']);
        }
        if (entries.length) await this.applyBatch(entries);
      } catch (err) {
        const message = (err as Error).message;
        if (message.includes('NOGROUP')) {
          log.warn({ region }, 'consumer groups missing (Redis restarted empty?); recreating them');
          groupsReady = false;
        } else {
          log.debug({ err: message, consumer }, 'applier: stream read failed; retrying');
          await sleep(500);
        }
      }
    }
  }

  private async read(args: (string | number)[]): Promise<StreamEntry[]> {
    const { reader, region, consumer } = this.d;
    const res = (await reader.call('XREADGROUP', 'GROUP', region, consumer, ...args)) as [string, StreamEntry[]][] | null;
    // Entries deleted from the stream while pending come back with null fields.
    return (res?.[0]?.[1] ?? []).filter((e) => Array.isArray(e[1]));
  }

  private async claim(count: number): Promise<StreamEntry[]> {
    const { reader, keys, region, consumer } = this.d;
    const res = (await reader.call(
      'XAUTOCLAIM', keys.stream, region, consumer, this.d.claimIdleMs ?? 15_000, '0-0', 'COUNT', count,
    )) as [string, StreamEntry[], string[]?];
    return (res[1] ?? []).filter((e) => Array.isArray(e[1]));
  }

  private async applyBatch(entries: StreamEntry[]): Promise<void> {
    const { log } = this.d;
    const parsed: Parsed[] = [];
    const poison: StreamEntry[] = [];
    for (const entry of entries) {
      const event = parseEvent(eventField(entry[1]));
      if (!event) poison.push(entry);
      else if (event.ops.every((op) => this.d.store.has(op.table))) parsed.push({ id: entry[0], event });
      // A table this version does not know (a rolling upgrade): leave it pending until this region knows it.
      else log.warn({ changeId: event.changeId, tables: event.ops.map((o) => o.table) }, 'change event for an unknown table left pending');
    }
    if (poison.length) {
      log.error({ ids: poison.map((p) => p[0]) }, 'unreadable change events moved to the dead-letter stream');
      await this.deadLetter(poison);
    }
    if (parsed.length === 0) return;
    // Our own changes were committed here before they were published: they only need acking.
    const own = parsed.filter((p) => p.event.origin === this.d.region);
    const remote = parsed.filter((p) => p.event.origin !== this.d.region);
    if (remote.length === 0) return this.acknowledge(own);
    let applied = remote;
    try {
      await this.apply(remote);
    } catch (err) {
      // One bad event must not block the rest: retry one by one.
      log.warn({ err: (err as Error).message }, 'batch apply failed; retrying events one by one');
      applied = [];
      const failed: { p: Parsed; err: Error }[] = [];
      for (const p of remote) {
        try {
          await this.apply([p]);
          applied.push(p);
        } catch (e) {
          failed.push({ p, err: e as Error });
        }
      }
      // Every event failed: the database is likely down, which says nothing about the events. Leave them
      // pending for a later retry, without counting it against them.
      if (applied.length === 0) throw err;
      for (const f of failed) await this.failedAlone(f.p, f.err);
    }
    for (const p of applied) this.failures.delete(p.id);
    await this.acknowledge([...own, ...applied]);
  }

  private async apply(batch: Parsed[]): Promise<void> {
    const { db, store, clock } = this.d;
    const started = performance.now();
    const lost = new Map<string, AckOutcome>();
    await db.$transaction(async (tx) => {
      const { outcomes } = await store.apply(tx, batch.flatMap((b) => b.event.ops));
      // A change holds when every row it wrote holds it; the first row that does not names the winner.
      let i = 0;
      for (const b of batch) {
        for (let k = 0; k < b.event.ops.length; k++) {
          const o = outcomes[i++];
          if (o && !o.applied && !lost.has(b.event.changeId)) {
            const w = o.winner;
            lost.set(b.event.changeId, { outcome: 'superseded', winner: { table: w.table, key: w.key, version: w.version, originRegion: w.originRegion } });
          }
        }
      }
      await tx.$executeRawUnsafe(PROGRESS_SQL, JSON.stringify(progressRows(batch.map((b) => b.event))));
    });
    // Only a committed apply decides what the ack says.
    for (const b of batch) this.outcomes.delete(b.event.changeId);
    for (const [id, o] of lost) this.outcomes.set(id, o);
    for (const b of batch) for (const op of b.event.ops) clock.observe(op.version);
    this.appliedEvents += batch.length;
    this.onApplied?.(batch.map((b) => b.event.origin), (performance.now() - started) / 1000);
  }

  /**
   * Acks in the tracker, then XACK. If Redis fails here the events stay pending: they are re-read
   * (XAUTOCLAIM), applied again as no-ops, and acked then. Not an apply failure.
   */
  private async acknowledge(batch: Parsed[]): Promise<void> {
    const { tracker, region, keys, redis, log } = this.d;
    const outcomes = new Map<string, AckOutcome>();
    for (const b of batch) {
      const o = this.outcomes.get(b.event.changeId);
      if (o) outcomes.set(b.event.changeId, o);
      this.outcomes.delete(b.event.changeId);
    }
    try {
      await tracker.ack(region, batch.map((b) => b.event.changeId), { outcomes });
      await redis.xack(keys.stream, region, ...batch.map((b) => b.id));
    } catch (err) {
      log.warn({ err: (err as Error).message, count: batch.length }, 'applied, but could not ack in Redis; the events stay pending and are acked on redelivery');
    }
  }

  /** An event that fails while the others of its batch apply is retried; after a few failures it is parked. */
  private async failedAlone(p: Parsed, err: Error): Promise<void> {
    const failures = (this.failures.get(p.id) ?? 0) + 1;
    this.failures.set(p.id, failures);
    this.d.log.error({ err: err.message, changeId: p.event.changeId, failures }, 'change event failed to apply');
    if (failures < MAX_FAILURES_ALONE) return;
    this.failures.delete(p.id);
    this.d.log.error({ changeId: p.event.changeId }, 'change event moved to the dead-letter stream after repeated failures');
    await this.deadLetter([[p.id, ['e', JSON.stringify(p.event)]]]);
  }

  private async deadLetter(entries: StreamEntry[]): Promise<void> {
    const { redis, keys, region } = this.d;
    for (const [id, fields] of entries) {
      await redis.xadd(keys.deadLetter, '*', 'region', region, 'id', id, ...fields);
      await redis.xack(keys.stream, region, id);
    }
  }
}

type Parsed = { id: string; event: ChangeEvent };

const MAX_FAILURES_ALONE = 3;

const PROGRESS_SQL = `
INSERT INTO replication_progress (origin_region, applied_count, last_change_id, last_event_at, last_applied_at)
SELECT origin_region, applied_count, last_change_id, last_event_at, now()
  FROM jsonb_to_recordset($1::jsonb) AS x(origin_region text, applied_count bigint, last_change_id uuid, last_event_at timestamptz)
ON CONFLICT (origin_region) DO UPDATE SET
  applied_count = replication_progress.applied_count + EXCLUDED.applied_count,
  last_change_id = EXCLUDED.last_change_id,
  last_event_at = GREATEST(replication_progress.last_event_at, EXCLUDED.last_event_at),
  last_applied_at = EXCLUDED.last_applied_at`;

function progressRows(events: ChangeEvent[]) {
  const byOrigin = new Map<string, { origin_region: string; applied_count: number; last_change_id: string; last_event_at: string }>();
  for (const e of events) {
    const p = byOrigin.get(e.origin);
    if (!p) byOrigin.set(e.origin, { origin_region: e.origin, applied_count: 1, last_change_id: e.changeId, last_event_at: e.createdAt });
    else {
      p.applied_count += 1;
      if (e.createdAt >= p.last_event_at) Object.assign(p, { last_change_id: e.changeId, last_event_at: e.createdAt });
    }
  }
  return [...byOrigin.values()];
}

export function parseEvent(raw: string | null): ChangeEvent | null {
  if (!raw) return null;
  try {
    const e = JSON.parse(raw) as ChangeEvent;
    const ok =
      typeof e.changeId === 'string' && typeof e.origin === 'string' && typeof e.createdAt === 'string' && Array.isArray(e.ops) &&
      e.ops.every((op) => typeof op.table === 'string' && typeof op.version === 'string' && /^\d{15}\.\d{6}\./.test(op.version) && typeof op.row === 'object' && op.row !== null);
    return ok ? e : null;
  } catch {
    return null;
  }
}
