import type { Db } from '../db/client';
import type { IdempotencyKey } from '../generated/prisma/client';
import { defineTable, type Row } from '../replication/tables';

/**
 * How long after its expiry a key is kept before this region's cleanup deletes it (cleanup.ts). Expired keys
 * are already ignored; they stay a day longer so an operator can still see what a late retry met.
 */
export const KEEP_AFTER_EXPIRY_MS = 24 * 3600_000;

/**
 * Replicated like the resources it describes, and written in the same change as the resource, so a region
 * that has the resource has its key and a region that lacks one lacks both. Expired keys are deleted by
 * each region on its own schedule (cleanup.ts), so a change of a key absent here is applied, unless the
 * key is past the cleanup's cutoff (prunable). An apply also deletes the rows of its batch that cleanup may
 * delete, as if it had run just then: a key reused after one region's pass and before another's would
 * otherwise meet the old row there, lose to its earlier create (a false 409 for the write) and stay
 * different from the other regions.
 */
export const idempotencyKeysTable = defineTable('idempotency_keys', 'id', {
  prunedLocally: true,
  // A key row that old arriving late (a region catching up, a parked event retried) is not stored again
  // either: it would replace a newer key row of a reuse, by its earlier create.
  prunable: { column: 'expires_at', keepMs: KEEP_AFTER_EXPIRY_MS },
  // runOnce writes the key row after the resource's rows, so a change whose key row lost kept the rest.
  recordsWrite: true,
});

/** The parts of a stored key that decide what a new request with it gets. */
export interface StoredKey {
  orgId: string;
  endpoint: string;
  requestHash: string;
  responseStatus: number;
  responseBody: unknown;
  expiresAt: Date;
  deleted: boolean;
  /** The change that stored the key and the resource (null for keys stored before it was recorded). */
  changeId: string | null;
  /** The region that made that change (a key row is written once): where its acks are recorded. */
  originRegion: string | null;
}

export function storedFromModel(m: IdempotencyKey): StoredKey {
  return {
    orgId: m.orgId,
    endpoint: m.endpoint,
    requestHash: m.requestHash,
    responseStatus: m.responseStatus,
    responseBody: m.responseBody,
    expiresAt: m.expiresAt,
    deleted: m.deletedAt !== null,
    changeId: m.changeId,
    originRegion: m.originRegion,
  };
}

/** The same, from a row as the replication layer returns it (to_jsonb of the table). */
export function storedFromRow(r: Row): StoredKey {
  return {
    orgId: String(r.org_id),
    endpoint: String(r.endpoint),
    requestHash: String(r.request_hash),
    responseStatus: Number(r.response_status),
    responseBody: r.response_body,
    expiresAt: new Date(String(r.expires_at)),
    deleted: r.deleted_at !== null && r.deleted_at !== undefined,
    changeId: typeof r.change_id === 'string' ? r.change_id : null,
    originRegion: typeof r.origin_region === 'string' ? r.origin_region : null,
  };
}

export async function findStoredKey(db: Db, id: string): Promise<StoredKey | null> {
  const m = await db.idempotencyKey.findUnique({ where: { id } });
  return m ? storedFromModel(m) : null;
}

/**
 * Deletes up to `limit` keys that expired before `cutoff`, in this region only. The expiry is checked
 * again on the outer statement: a request that reuses an expired key rewrites the row meanwhile, and
 * Postgres re-evaluates that condition on the new row version, so the fresh key survives.
 */
export async function deleteExpiredKeys(db: Db, cutoff: Date, limit: number): Promise<number> {
  return db.$executeRawUnsafe(
    `DELETE FROM idempotency_keys
      WHERE expires_at < $1::timestamptz
        AND id IN (SELECT id FROM idempotency_keys WHERE expires_at < $1::timestamptz ORDER BY expires_at LIMIT $2)`,
    cutoff.toISOString(),
    limit,
  );
}
