import { poolOf, type Db } from '../db/client';
import type { Queryable } from '../replication/row-store';
import { defineTable, type Row } from '../replication/tables';
import { dropCachedKeys } from './api-key-cache';

// A key's check reads both tables (a key of a deleted organization is no key): changes of either drop the
// keys this process holds once committed here (api-key-cache.ts).
// A sub-organization belongs to its parent: the delete of an organization with live sub-organizations here
// is refused (deleteOrganization), so the sweep takes only those created where the delete had not arrived.
export const organizationsTable = defineTable('organizations', 'id', {
  orgColumn: 'id',
  onCommitted: dropCachedKeys,
  ownedBy: { table: 'organizations', column: 'parent_id', tombstone: (o, deletedAt) => organizationTombstone(o, deletedAt) },
});
/** One row per key: an organization may hold several live keys (see rotateApiKey). Deleted with it. */
export const apiKeysTable = defineTable('api_keys', 'key_id', {
  onCommitted: dropCachedKeys,
  ownedBy: { table: organizationsTable, column: 'org_id', tombstone: (k, deletedAt) => ({ ...k, deleted_at: deletedAt }) },
});

/** An organization's tombstone: its key, parent, creation and deleted_at; not its name. */
export function organizationTombstone(o: Row, deletedAt: string): Row {
  return { id: o.id, name: '', parent_id: o.parent_id ?? null, created_at: o.created_at, deleted_at: deletedAt };
}

export function findOrganization(db: Db, id: string) {
  return db.organization.findFirst({ where: { id, deletedAt: null } });
}

/** A row of listOrganizations' statement: how many match, and one organization of the page (null past its end). */
type ListedOrganization = { id: string; name: string; parentId: string | null; createdAt: Date };
type OrganizationListRow = { total: number } & (ListedOrganization | { [K in keyof ListedOrganization]: null });

/**
 * A page of the organizations this region holds, oldest first, with how many match in all: one statement, so
 * one snapshot (as the credential list's, provider-credentials/store.ts). As two queries side by side, a
 * create or delete committed between them made total_count disagree with the page, and the two took both
 * connections of the admin pool, which readiness and metrics read through too. The count is the outer side of
 * the join, so a page past the end still carries it. Only the filters given are in the WHERE (fixed text, the
 * values as parameters), each statement planned for its own: a parent's list walks the parent_id index.
 */
export async function listOrganizations(
  db: Db,
  filter: { parentId?: string; name?: string },
  limit: number,
  offset: number,
): Promise<{ rows: ListedOrganization[]; total: number }> {
  const values: unknown[] = [];
  const where = ['deleted_at IS NULL'];
  if (filter.parentId !== undefined) where.push(`parent_id = $${values.push(filter.parentId)}::uuid`);
  if (filter.name !== undefined) where.push(`name = $${values.push(filter.name)}`);
  const matching = `FROM organizations WHERE ${where.join(' AND ')}`;
  const res = await poolOf(db).query<OrganizationListRow>(
    `SELECT n.total, o.id, o.name, o."parentId", o."createdAt"
      FROM (SELECT count(*)::int AS total ${matching}) n
      LEFT JOIN LATERAL (
        SELECT id, name, parent_id AS "parentId", created_at AS "createdAt" ${matching}
        ORDER BY created_at, id LIMIT $${values.push(limit)}::int OFFSET $${values.push(offset)}::int) o ON true
      ORDER BY o."createdAt", o.id`,
    values,
  );
  const rows = res.rows.filter((r): r is OrganizationListRow & ListedOrganization => r.id !== null).map(({ total: _total, ...org }) => org);
  return { rows, total: res.rows[0]?.total ?? 0 };
}

/** Whether the organization is a tombstone here (deleted; not merely absent). */
export async function isDeletedOrganization(db: Db, id: string): Promise<boolean> {
  return (await db.organization.count({ where: { id, deletedAt: { not: null } } })) > 0;
}

/** The key row with that id, if its organization exists (one query: this is on every request's path). */
export async function findLiveApiKey(db: Db, keyId: string): Promise<{ orgId: string; keyHash: string } | null> {
  const rows = await db.$queryRawUnsafe<{ org_id: string; key_hash: string }[]>(
    `SELECT k.org_id::text, k.key_hash FROM api_keys k JOIN organizations o ON o.id = k.org_id AND o.deleted_at IS NULL
      WHERE k.key_id = $1 AND k.deleted_at IS NULL`,
    keyId,
  );
  const row = rows[0];
  return row ? { orgId: row.org_id, keyHash: row.key_hash } : null;
}

/** How many live sub-organizations the organization has in this region. */
export async function liveChildCount(db: Pick<Queryable, '$queryRawUnsafe'>, orgId: string): Promise<number> {
  const rows = await db.$queryRawUnsafe<{ n: number }[]>('SELECT count(*)::int AS n FROM organizations WHERE parent_id = $1::uuid AND deleted_at IS NULL', orgId);
  return rows[0]?.n ?? 0;
}

/** The key ids of the organization's live keys in this region. */
export async function liveKeyIds(db: Pick<Queryable, '$queryRawUnsafe'>, orgId: string): Promise<string[]> {
  const rows = await db.$queryRawUnsafe<{ key_id: string }[]>(
    'SELECT key_id FROM api_keys WHERE org_id = $1::uuid AND deleted_at IS NULL ORDER BY key_id',
    orgId,
  );
  return rows.map((r) => r.key_id);
}

/**
 * How deep organizations nest: one may be at most this many levels below its root. A parent's key reaches
 * this far down (isSelfOrAncestor walks up as far), so creating an organization deeper is refused (a
 * fuzzing review found keys and tokens refused 65 levels down, the organization created all the same).
 */
export const MAX_ORG_DEPTH = 64;

/** The organization's chain of ancestors here, itself first (depth 0), at most MAX_ORG_DEPTH + 1 levels up. */
const CHAIN = `WITH RECURSIVE chain(id, parent_id, depth) AS (
       SELECT id, parent_id, 0 FROM organizations WHERE id = $1::uuid AND deleted_at IS NULL
       UNION ALL
       SELECT o.id, o.parent_id, c.depth + 1 FROM organizations o JOIN chain c ON o.id = c.parent_id
        WHERE o.deleted_at IS NULL AND c.depth <= ${MAX_ORG_DEPTH}
     )`;

/** True when `ancestorId` is `orgId` itself or one of its ancestors (parents are followed up to the root). */
/**
 * Whose changes a caller acting as `orgId` may follow: that organization's and its sub-organizations' (which its
 * key or token may act on), while it is live here. `live`: the caller's authentication showed it is (an API
 * key's does), so its own changes need no query; an access token's does not (its organization may be deleted).
 */
export const followsChangesOf = (db: Db, orgId: string, { live = true } = {}) => async (owner: string): Promise<boolean> =>
  (live && owner === orgId) || isSelfOrAncestor(db, orgId, owner);

export async function isSelfOrAncestor(db: Db, ancestorId: string, orgId: string): Promise<boolean> {
  if (ancestorId === orgId) return (await findOrganization(db, orgId)) !== null;
  const rows = await db.$queryRawUnsafe<{ found: boolean }[]>(`${CHAIN} SELECT EXISTS (SELECT 1 FROM chain WHERE id = $2::uuid) AS found`, orgId, ancestorId);
  return rows[0]?.found === true;
}

/** How many levels below its root the organization is (0: a root; past MAX_ORG_DEPTH, MAX_ORG_DEPTH + 1), or null when it does not exist here. */
export async function depthOf(db: Pick<Queryable, '$queryRawUnsafe'>, orgId: string): Promise<number | null> {
  const rows = await db.$queryRawUnsafe<{ depth: number | null }[]>(`${CHAIN} SELECT max(depth)::int AS depth FROM chain`, orgId);
  return rows[0]?.depth ?? null;
}
