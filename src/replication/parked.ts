/**
 * Change events this region cannot apply, kept in Postgres (replication_failures). Failures are counted per
 * change id durably, so a restart does not reset the count. An event is parked when it has failed
 * MAX_FAILURES times on a healthy database, names a table this version does not know (a rolling upgrade),
 * or carries a version too far ahead of this region's clock. A parked event is acknowledged to its origin
 * as parked (so the origin confirms it instead of republishing it, and it no longer pins the stream), and
 * is re-applied after an upgrade: at start, on POST /admin/replication/parked/retry, and periodically
 * (clock-skew every minute, apply-failed every 10 minutes: ParkedRetry.retryDue, parked-retry.ts).
 */
import type { Db, SqlReader } from '../db/client';
import type { Statement } from './row-store';
import type { ChangeEvent } from './tables';
import type { AckOutcome } from './ack-records';

/** Why an event is parked (the admin answers' `reason`; schema.ts builds its schema from this list). */
export const PARK_REASONS = ['apply-failed', 'unknown-table', 'clock-skew', 'schema-ahead'] as const;
export type ParkReason = (typeof PARK_REASONS)[number];

export const MAX_FAILURES = 3;

const ERROR_MAX_CHARS = 2000;

export class FailureLog {
  /** Change ids with a failure row not parked yet; a successful apply deletes their row. */
  private readonly failing = new Set<string>();
  /**
   * Change ids this process parked: read again (a pack is read again whole while one of its events is
   * unsettled; an entry whose ack did not reach its origin is read again), such an event is acked as
   * parked again, not parked or applied again (the retry of parked events applies it). Not a change an
   * operator discarded here: it is not kept, so no retry would apply it, and a copy that now applies is applied.
   */
  private readonly parkedIds = new Set<string>();

  constructor(private readonly db: Db) {}

  /**
   * Loads the ids failing (not parked) in this region, so their rows are cleared once they apply here: at
   * start (failures of before a restart) and before each round of claims (those of the region's other
   * processes, whose entries the claims take).
   */
  async load(): Promise<void> {
    // A row of a change an operator discarded, made by a park or a failure counted at the moment of the
    // discard (neither saw it yet), goes here: it would hold the horizon and a removed region's adoption.
    await this.db.$executeRawUnsafe('DELETE FROM replication_failures f USING replication_discarded d WHERE d.change_id = f.change_id');
    const rows = await this.db.$queryRawUnsafe<{ change_id: string }[]>(
      'SELECT change_id::text FROM replication_failures WHERE parked_at IS NULL',
    );
    for (const r of rows) this.failing.add(r.change_id);
  }

  /**
   * Counts one failure of an event; returns how many times it has failed so far. A change an operator
   * discarded here (delivered again) is not counted: MAX_FAILURES at once, so it is acked as parked.
   */
  async record(event: ChangeEvent, streamId: string, err: Error): Promise<number> {
    const rows = await this.db.$queryRawUnsafe<{ failures: number }[]>(
      `INSERT INTO replication_failures (change_id, origin_region, stream_id, event, failures, reason, last_error)
       SELECT $1::uuid, $2, $3, $4::jsonb, 1, 'apply-failed', $5
        WHERE NOT EXISTS (SELECT 1 FROM replication_discarded WHERE change_id = $1::uuid)
       ON CONFLICT (change_id) DO UPDATE SET failures = replication_failures.failures + 1, stream_id = EXCLUDED.stream_id,
         last_error = EXCLUDED.last_error, last_failed_at = now()
       RETURNING failures`,
      event.changeId, event.origin, streamId, JSON.stringify(event), err.message.slice(0, ERROR_MAX_CHARS),
    );
    const counted = rows[0];
    if (!counted) return MAX_FAILURES;
    this.failing.add(event.changeId);
    return counted.failures;
  }

  /**
   * Parks events (keeping their failure count); answers those it parked now, once per change: what the parked
   * figures count. A change an operator discarded here, delivered again (its origin's Redis lost the ack), is
   * acked as parked like any other but not kept: the discard stands, and its failing row, if any, goes. One
   * already parked (by another process of the region: a rolling restart's other one, or this one before a
   * restart), delivered again, stays parked, but was counted when it was parked. Which is which is decided on
   * the row itself, under its lock: of two processes parking the same change at once, the second waits for
   * the first's row and finds it parked.
   */
  async park<T extends { event: ChangeEvent; streamId: string | null; reason: ParkReason; error: string }>(items: T[]): Promise<T[]> {
    if (items.length === 0) return [];
    // One parameter for both statements: each reads the fields it names (jsonb_to_recordset ignores the rest).
    const rows = JSON.stringify(items.map((i) => ({
      change_id: i.event.changeId, origin_region: i.event.origin, stream_id: i.streamId, event: i.event, reason: i.reason,
      last_error: i.error.slice(0, ERROR_MAX_CHARS),
    })));
    // Two statements, the one that only touches rows parked before first: a statement that fails (the database
    // went away between them) leaves nothing parked now that no one counted. The other order parked the new ones,
    // then failed on the update of the others: the retry found them all parked before, and counted none.
    // Parked before (by another process of the region, or this one before a restart): they stay parked, with this
    // park's reason and error. Not one discarded here (a park racing the discard left its row): the next statement
    // deletes that row.
    const again = await this.db.$queryRawUnsafe<{ change_id: string }[]>(
      `WITH x AS (SELECT DISTINCT ON (change_id) * FROM jsonb_to_recordset($1::jsonb) AS x(change_id uuid, stream_id text, reason text, last_error text))
       UPDATE replication_failures f SET reason = x.reason, last_error = x.last_error, stream_id = COALESCE(x.stream_id, f.stream_id),
              last_failed_at = now(), parked_at = now()
         FROM x WHERE f.change_id = x.change_id AND f.parked_at IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM replication_discarded d WHERE d.change_id = f.change_id)
       RETURNING f.change_id::text`,
      rows,
    );
    const stored = new Set(again.map((r) => r.change_id));
    // Parked now: a new row, or a failing one (parked_at null, as read under the row's lock: the condition of
    // DO UPDATE sees the latest version of a row another statement wrote, once that one committed). One parked
    // by another process since the statement above is left as it is, counted by that process; one parked before
    // is left too (its update was the statement above).
    const first = await this.db.$queryRawUnsafe<{ change_id: string }[]>(
      `WITH x AS (SELECT DISTINCT ON (change_id) * FROM jsonb_to_recordset($1::jsonb) AS x(change_id uuid, origin_region text, stream_id text, event jsonb, reason text, last_error text)),
            discarded AS (DELETE FROM replication_failures f USING replication_discarded d, x
                           WHERE d.change_id = f.change_id AND x.change_id = f.change_id RETURNING f.change_id)
       INSERT INTO replication_failures (change_id, origin_region, stream_id, event, failures, reason, last_error, parked_at)
       SELECT x.change_id, x.origin_region, x.stream_id, x.event, 1, x.reason, x.last_error, now()
         FROM x WHERE NOT EXISTS (SELECT 1 FROM replication_discarded d WHERE d.change_id = x.change_id)
       ON CONFLICT (change_id) DO UPDATE SET reason = EXCLUDED.reason, last_error = EXCLUDED.last_error,
         stream_id = COALESCE(EXCLUDED.stream_id, replication_failures.stream_id), last_failed_at = now(), parked_at = now()
         WHERE replication_failures.parked_at IS NULL
       RETURNING change_id::text`,
      rows,
    );
    const now = new Set(first.map((r) => r.change_id).filter((id) => !stored.has(id)));
    const kept = new Map<string, T>();
    for (const i of items) {
      this.failing.delete(i.event.changeId);
      const id = i.event.changeId.toLowerCase();
      if (!now.has(id) && !stored.has(id)) continue;
      this.parkedIds.add(i.event.changeId);
      if (now.has(id) && !kept.has(id)) kept.set(id, i);
    }
    return [...kept.values()];
  }

  /** Forgets the failures of events that have now applied (only those known to have failed: no query otherwise). */
  async cleared(changeIds: readonly string[]): Promise<void> {
    const known = changeIds.filter((id) => this.failing.has(id));
    if (known.length === 0) return;
    await this.db.$executeRawUnsafe('DELETE FROM replication_failures WHERE change_id = ANY($1::uuid[]) AND parked_at IS NULL', known);
    for (const id of known) this.failing.delete(id);
  }

  /** Whether this process parked the change (and it has not been retried since). */
  parkedHere(changeId: string): boolean {
    return this.parkedIds.has(changeId);
  }

  /** Parked events (of one reason, when given), oldest first, after `afterChangeId` (keyset paging). */
  async parked(limit: number, after: { parkedAt: Date; changeId: string } | null = null, reason: ParkReason | null = null) {
    return this.db.$queryRawUnsafe<{ change_id: string; stream_id: string | null; event: ChangeEvent; reason: ParkReason; parked_at: Date }[]>(
      `SELECT change_id::text, stream_id, event, reason, parked_at FROM replication_failures
        WHERE parked_at IS NOT NULL AND ($2::timestamptz IS NULL OR (parked_at, change_id) > ($2::timestamptz, $3::uuid))
          AND ($4::text IS NULL OR reason = $4)
        ORDER BY parked_at, change_id LIMIT $1`,
      limit, after?.parkedAt ?? null, after?.changeId ?? null, reason,
    );
  }

  /** Removes a parked event that has now applied. */
  async unpark(changeIds: readonly string[]): Promise<void> {
    if (changeIds.length) await this.db.$executeRawUnsafe('DELETE FROM replication_failures WHERE change_id = ANY($1::uuid[])', changeIds);
    for (const id of changeIds) this.parkedIds.delete(id);
  }

  /** Notes why a retried parked event still does not apply. */
  async stillParked(changeId: string, reason: ParkReason, error: string): Promise<void> {
    await this.db.$executeRawUnsafe(
      'UPDATE replication_failures SET reason = $2, last_error = $3, last_failed_at = now() WHERE change_id = $1::uuid',
      changeId, reason, error.slice(0, ERROR_MAX_CHARS),
    );
  }
}

/**
 * An ack a parked event applied here on a retry owes its origin (replication_retried_acks): such a change
 * has no inbox entry left, and its origin confirmed it on the parked ack, so nothing else would tell the
 * origin. Recorded in the transaction that applies it, deleted once the origin's Redis took the ack; the
 * applier sends what is left again (at start, and every few seconds while any is left).
 */
export interface OwedAck {
  changeId: string;
  origin: string;
  /** The superseded outcome; null when the change applied and holds. */
  outcome: AckOutcome | null;
  /** When it was applied here (the row's applied_at, the apply's transaction time): the ack says so, however late it is sent. */
  appliedAt: Date;
}

/** The statement recording owed acks, for the apply's own transaction. */
export function owedAckStatement(acks: readonly Omit<OwedAck, 'appliedAt'>[]): Statement {
  return {
    sql: `INSERT INTO replication_retried_acks (change_id, origin_region, outcome)
          SELECT change_id, origin_region, outcome FROM jsonb_to_recordset($1::jsonb) AS x(change_id uuid, origin_region text, outcome jsonb)
          ON CONFLICT (change_id) DO UPDATE SET origin_region = EXCLUDED.origin_region, outcome = EXCLUDED.outcome, applied_at = now()`,
    values: [JSON.stringify(acks.map((a) => ({ change_id: a.changeId, origin_region: a.origin, outcome: a.outcome })))],
    exec: true,
  };
}

/** Owed acks recorded at least `olderThanMs` ago (oldest first, at most `limit`). */
export async function owedAcks(db: SqlReader, limit: number, olderThanMs = 0): Promise<OwedAck[]> {
  const rows = await db.$queryRawUnsafe<{ change_id: string; origin_region: string; outcome: AckOutcome | null; applied_at: Date }[]>(
    `SELECT change_id::text, origin_region, outcome, applied_at FROM replication_retried_acks
      WHERE applied_at <= now() - make_interval(secs => $2::float8 / 1000) ORDER BY applied_at, change_id LIMIT $1`,
    limit, olderThanMs,
  );
  return rows.map((r) => ({ changeId: r.change_id, origin: r.origin_region, outcome: r.outcome, appliedAt: r.applied_at }));
}

/** Forgets owed acks: their origin's Redis took them (or the origin left the deployment). */
export async function ackPaid(db: Db, changeIds: readonly string[]): Promise<void> {
  if (changeIds.length) await db.$executeRawUnsafe('DELETE FROM replication_retried_acks WHERE change_id = ANY($1::uuid[])', changeIds);
}

/** For the admin status: how many events are failing and parked (in all, and per origin), and the oldest parked ones. */
export async function failureStatus(db: SqlReader, limit = 20) {
  const [counts, byOrigin, oldest] = await Promise.all([
    db.$queryRawUnsafe<{ failing: bigint; parked: bigint; discarded: bigint; by_reason: Record<string, number> | null }[]>(
      `SELECT count(*) FILTER (WHERE parked_at IS NULL) AS failing, count(*) FILTER (WHERE parked_at IS NOT NULL) AS parked,
              (SELECT count(*) FROM replication_discarded) AS discarded,
              (SELECT jsonb_object_agg(reason, n) FROM (SELECT reason, count(*) AS n FROM replication_failures
                 WHERE parked_at IS NOT NULL GROUP BY reason) r) AS by_reason
         FROM replication_failures`,
    ),
    db.$queryRawUnsafe<{ origin_region: string; parked: bigint }[]>(
      'SELECT origin_region, count(*) AS parked FROM replication_failures WHERE parked_at IS NOT NULL GROUP BY origin_region ORDER BY origin_region',
    ),
    db.$queryRawUnsafe<{ change_id: string; origin_region: string; stream_id: string | null; reason: string; failures: number; last_error: string; parked_at: Date; tables: string[] }[]>(
      `SELECT change_id::text, origin_region, stream_id, reason, failures, last_error, parked_at,
              ${TABLES_OF_EVENT} AS tables
         FROM replication_failures WHERE parked_at IS NOT NULL ORDER BY parked_at, change_id LIMIT $1`,
      limit,
    ),
  ]);
  return {
    failing: Number(counts[0]?.failing ?? 0),
    parked: Number(counts[0]?.parked ?? 0),
    parked_by_reason: Object.fromEntries(Object.entries(counts[0]?.by_reason ?? {}).map(([reason, n]) => [reason, Number(n)])),
    discarded: Number(counts[0]?.discarded ?? 0),
    parked_by_origin: Object.fromEntries(byOrigin.map((r) => [r.origin_region, Number(r.parked)])) as Record<string, number>,
    oldest_parked: oldest.map((p) => ({
      change_id: p.change_id, origin_region: p.origin_region, stream_id: p.stream_id, tables: p.tables, reason: p.reason,
      failures: p.failures, error: p.last_error, parked_at: new Date(p.parked_at).toISOString(),
    })),
  };
}

/** The tables a stored event's ops write (none for an event without a list of ops: a status read never fails on one). */
const TABLES_OF_EVENT = `ARRAY(SELECT DISTINCT op->>'table' FROM jsonb_array_elements(CASE jsonb_typeof(event->'ops') WHEN 'array' THEN event->'ops' ELSE '[]'::jsonb END) op
  WHERE jsonb_typeof(op) = 'object' ORDER BY 1)`;

/** One parked event an operator gave up on (POST /admin/replication/parked/discard), as the answers show it. */
export interface DiscardedEvent {
  change_id: string;
  origin_region: string;
  stream_id: string | null;
  tables: string[];
  reason: ParkReason;
  failures: number;
  error: string;
  first_failed_at: string;
  parked_at: string;
  discarded_at: string;
}

type DiscardedRow = {
  change_id: string; origin_region: string; stream_id: string | null; tables: string[]; reason: ParkReason; failures: number;
  last_error: string; first_failed_at: Date; parked_at: Date; discarded_at: Date; event?: ChangeEvent;
};

const DISCARDED_COLUMNS = `change_id::text, origin_region, stream_id, reason, failures, last_error, first_failed_at, parked_at, discarded_at,
  ${TABLES_OF_EVENT} AS tables`;

const discardedView = (r: DiscardedRow): DiscardedEvent => ({
  change_id: r.change_id, origin_region: r.origin_region, stream_id: r.stream_id, tables: r.tables, reason: r.reason,
  failures: r.failures, error: r.last_error, first_failed_at: new Date(r.first_failed_at).toISOString(),
  parked_at: new Date(r.parked_at).toISOString(), discarded_at: new Date(r.discarded_at).toISOString(),
});

/**
 * Moves parked events (never failing ones: those are still being retried) into replication_discarded, in one
 * statement. The change then is not applied in this region; its rows keep what they hold here. Ids not
 * parked here come back in `notParked`.
 */
export async function discardParked(db: Db, changeIds: readonly string[]): Promise<{ discarded: DiscardedEvent[]; notParked: string[] }> {
  const rows = await db.$queryRawUnsafe<DiscardedRow[]>(
    `WITH gone AS (DELETE FROM replication_failures WHERE change_id = ANY($1::uuid[]) AND parked_at IS NOT NULL RETURNING *),
          kept AS (INSERT INTO replication_discarded (change_id, origin_region, stream_id, event, failures, reason, last_error, first_failed_at, parked_at)
                   SELECT change_id, origin_region, stream_id, event, failures, reason, last_error, first_failed_at, parked_at FROM gone
                   ON CONFLICT (change_id) DO UPDATE SET origin_region = EXCLUDED.origin_region, stream_id = EXCLUDED.stream_id,
                     event = EXCLUDED.event, failures = EXCLUDED.failures, reason = EXCLUDED.reason, last_error = EXCLUDED.last_error,
                     first_failed_at = EXCLUDED.first_failed_at, parked_at = EXCLUDED.parked_at, discarded_at = now()
                   RETURNING *)
     SELECT ${DISCARDED_COLUMNS} FROM kept ORDER BY parked_at, change_id`,
    changeIds,
  );
  const discarded = rows.map(discardedView);
  const gone = new Set(discarded.map((r) => r.change_id));
  return { discarded, notParked: changeIds.filter((id) => !gone.has(id)) };
}

/** One discarded event, with the event itself; null when this region discarded no such change. */
export async function discardedEvent(db: SqlReader, changeId: string): Promise<(DiscardedEvent & { event: ChangeEvent }) | null> {
  const rows = await db.$queryRawUnsafe<DiscardedRow[]>(`SELECT ${DISCARDED_COLUMNS}, event FROM replication_discarded WHERE change_id = $1::uuid`, changeId);
  const r = rows[0];
  return r ? { ...discardedView(r), event: r.event as ChangeEvent } : null;
}
