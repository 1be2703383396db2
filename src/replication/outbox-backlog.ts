/**
 * The outbox backlog figures of GET /admin/replication and the replication_outbox_* gauges. A module of its
 * own, apart from the relay: the operator's worker thread reads them with a plain pg pool, and what the
 * relay imports would load the Prisma client into that thread (~19 MB).
 */
import type { SqlReader } from '../db/client';

/**
 * This region's outbox backlog: rows not yet delivered to every member (unpublished) and rows delivered but
 * not yet applied everywhere (unconfirmed), with `oldest` the creation of the oldest unpublished one. Each
 * figure through its partial index: the table also keeps an hour of confirmed rows, which one count with
 * FILTERs read on every call (the admin route's, polled every 3 s by the console).
 */
export async function outboxBacklog(db: SqlReader, opts: { oldest?: boolean } = {}): Promise<{ unpublished: number; unconfirmed: number; oldestUnpublished: Date | null }> {
  const rows = await db.$queryRawUnsafe<{ unpublished: bigint | string; unconfirmed: bigint | string; oldest: Date | null }[]>(
    `SELECT (SELECT count(*) FROM replication_outbox WHERE published_at IS NULL) AS unpublished,
            (SELECT count(*) FROM replication_outbox WHERE published_at IS NOT NULL AND confirmed_at IS NULL) AS unconfirmed,
            ${opts.oldest ? '(SELECT min(created_at) FROM replication_outbox WHERE published_at IS NULL)' : 'NULL::timestamptz'} AS oldest`,
  );
  const r = rows[0];
  return { unpublished: Number(r?.unpublished ?? 0), unconfirmed: Number(r?.unconfirmed ?? 0), oldestUnpublished: r?.oldest ?? null };
}

/**
 * This region's outbox rows not yet confirmed by every member (unpublished or unconfirmed), counted by the
 * replication key each was signed with when it was written (docs/security.md, Rotating REPLICATION_KEYS).
 * Such a row may still be delivered with that signature (alone, or again after a loss), so a key may be
 * dropped once no region counts a row under it. The key id is the row's own column (sig_kid), so a large
 * backlog is counted without reading its events; a row written without it (before the column, or by an
 * older version) is read from its event. Rows stored without a signature (a version before events were
 * signed) are signed at delivery with the current key and are left out.
 */
export async function outboxBacklogByKey(db: SqlReader): Promise<Record<string, number>> {
  const rows = await db.$queryRawUnsafe<{ kid: string; n: bigint | string }[]>(
    `SELECT kid, count(*) AS n FROM (
       SELECT coalesce(sig_kid, event->'sig'->>'kid') AS kid FROM replication_outbox WHERE published_at IS NULL
       UNION ALL
       SELECT coalesce(sig_kid, event->'sig'->>'kid') FROM replication_outbox WHERE published_at IS NOT NULL AND confirmed_at IS NULL
     ) b WHERE kid IS NOT NULL GROUP BY kid ORDER BY kid`,
  );
  return Object.fromEntries(rows.map((r) => [r.kid, Number(r.n)]));
}
