/**
 * The count of applied events per origin in replication_progress (the status's `applied` and lag), and the
 * applied mark it raises in this region's Redis (restore-check.ts).
 */
import type { Db } from '../db/client';
import type { Logger } from '../logger';
import type { ReplicationKeys } from '../redis';
import type { RedisLinks } from './links';
import { raiseAppliedMark } from './restore-check';
import type { ChangeEvent } from './tables';

const PROGRESS_SQL = `
INSERT INTO replication_progress (origin_region, applied_count, last_change_id, last_event_at, last_applied_at)
SELECT origin_region, applied_count, last_change_id, last_event_at, last_applied_at
  FROM jsonb_to_recordset($1::jsonb) AS x(origin_region text, applied_count bigint, last_change_id uuid, last_event_at timestamptz, last_applied_at timestamptz)
 ORDER BY origin_region
ON CONFLICT (origin_region) DO UPDATE SET
  applied_count = replication_progress.applied_count + EXCLUDED.applied_count,
  last_change_id = CASE WHEN EXCLUDED.last_event_at >= replication_progress.last_event_at
    THEN EXCLUDED.last_change_id ELSE replication_progress.last_change_id END,
  last_event_at = GREATEST(replication_progress.last_event_at, EXCLUDED.last_event_at),
  last_applied_at = GREATEST(replication_progress.last_applied_at, EXCLUDED.last_applied_at)
RETURNING origin_region, applied_count`;

interface ProgressRow {
  origin_region: string;
  applied_count: number;
  last_change_id: string;
  last_event_at: string;
  /** When this region last applied a change from there (the batch that brought last_event_at, as a rule). */
  last_applied_at: string;
}

/** How often applied events are counted in replication_progress. */
const PROGRESS_FLUSH_MS = 1000;

function progressRows(events: readonly ChangeEvent[], appliedAt: string): ProgressRow[] {
  const byOrigin = new Map<string, ProgressRow>();
  for (const e of events) {
    const p = byOrigin.get(e.origin);
    if (!p) byOrigin.set(e.origin, { origin_region: e.origin, applied_count: 1, last_change_id: e.changeId, last_event_at: e.createdAt, last_applied_at: appliedAt });
    else {
      p.applied_count += 1;
      if (e.createdAt >= p.last_event_at) Object.assign(p, { last_change_id: e.changeId, last_event_at: e.createdAt });
    }
  }
  return [...byOrigin.values()];
}

export class AppliedProgress {
  /** Applied events not yet counted in replication_progress, per origin (see count). */
  private progress = new Map<string, ProgressRow>();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly d: { db: Db; links: RedisLinks; keys: ReplicationKeys; region: string; log: Logger }) {}

  /**
   * Counts applied events per origin (replication_progress: the status's `applied` and lag), written every
   * PROGRESS_FLUSH_MS in one statement by one writer: off the path from apply to ack, and one statement
   * for many batches. A crash loses at most that long of counts (the count runs short; nothing else
   * depends on it).
   */
  count(events: readonly ChangeEvent[]): void {
    // When they were applied (committed just now), not when the count is written: the lag is the newest
    // change's commit at its origin to the last apply here (the same change's, unless an older one came later).
    for (const row of progressRows(events, new Date().toISOString())) {
      const p = this.progress.get(row.origin_region);
      if (!p) this.progress.set(row.origin_region, row);
      else {
        p.applied_count += row.applied_count;
        p.last_applied_at = row.last_applied_at;
        if (row.last_event_at >= p.last_event_at) Object.assign(p, { last_change_id: row.last_change_id, last_event_at: row.last_event_at });
      }
    }
    this.timer ??= setTimeout(() => void this.flush(), PROGRESS_FLUSH_MS);
  }

  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const rows = [...this.progress.values()].sort((a, b) => (a.origin_region < b.origin_region ? -1 : 1));
    this.progress = new Map();
    if (rows.length === 0) return;
    let counts: { origin_region: string; applied_count: bigint | string }[];
    try {
      counts = await this.d.db.$queryRawUnsafe(PROGRESS_SQL, JSON.stringify(rows));
    } catch (err) {
      this.d.log.warn({ err: (err as Error).message, origins: rows.length }, 'could not count applied events in replication_progress');
      return;
    }
    // After the count committed (see restore-check.ts); a mark not raised now is raised by a later count.
    const mark = counts.map((c) => ({ origin_region: c.origin_region, applied_count: Number(c.applied_count) }));
    await raiseAppliedMark(this.d.links.own, this.d.keys, this.d.region, mark).catch((err: Error) => {
      this.d.log.debug({ err: err.message }, 'could not record the applied counts in this region\'s Redis; the next count does');
    });
  }
}

type PeerQuery = { query<R extends object>(sql: string, values?: unknown[]): Promise<{ rows: R[] }> };

/**
 * What a re-seed's peer had applied of each origin, and its own newest change (its newest outbox row, while it
 * keeps one), read before the copy: the copy then holds all of it. Origins other than the target.
 */
export async function peerProgress(peerDb: PeerQuery, from: string, to: string): Promise<ProgressRow[]> {
  const { rows } = await peerDb.query<{ origin_region: string; last_change_id: string; last_event_at: Date; last_applied_at: Date }>(
    'SELECT origin_region, last_change_id::text, last_event_at, last_applied_at FROM replication_progress WHERE origin_region <> $1',
    [to],
  );
  const own = await peerDb.query<{ change_id: string; created_at: string }>(
    "SELECT change_id::text, event->>'createdAt' AS created_at FROM replication_outbox ORDER BY id DESC LIMIT 1",
  );
  const progress = rows.map((r) => ({
    origin_region: r.origin_region, applied_count: 0, last_change_id: r.last_change_id,
    last_event_at: r.last_event_at.toISOString(), last_applied_at: r.last_applied_at.toISOString(),
  }));
  const newest = own.rows[0];
  if (newest?.created_at) progress.push({ origin_region: from, applied_count: 0, last_change_id: newest.change_id, last_event_at: newest.created_at, last_applied_at: newest.created_at });
  return progress;
}

/**
 * After a re-seed copied them: the target holds each origin's changes as far as the peer had applied them, so
 * the lag figures (the status's `applied`, the console's matrix) take the peer's, where newer than its own.
 * With no count: nothing was applied here (the counts, and the applied mark with them, stay the applier's).
 * Without this the console read a re-seeded region as behind every origin until that origin wrote again.
 */
export async function takePeerProgress(db: Db, progress: readonly ProgressRow[]): Promise<void> {
  if (progress.length > 0) await db.$queryRawUnsafe(PROGRESS_SQL, JSON.stringify(progress));
}
