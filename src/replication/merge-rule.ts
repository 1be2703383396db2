/**
 * The merge order of row states (see row-store.ts): what a change and a stored row are compared by, and
 * what the row store reports of the state that outranked a change.
 */
import type { RowChange } from './tables';

/** The stored state that outranked a change: what the loser's client is told won. */
export interface Winner {
  table: string;
  key: string;
  version: string;
  createdVersion: string;
  originRegion: string;
  deleted: boolean;
}

/** Whether the row holds a change after it was applied. A duplicate of the stored version is applied. */
export type OpOutcome = { applied: true } | { applied: false; winner: Winner };

export interface Stored extends MergeState {
  originRegion: string;
}

/** A stored merge state as the state reads return it. */
export interface StoredRow {
  key: string;
  version: string;
  created_version: string;
  origin_region: string;
  deleted: boolean;
}

export function storedOf(r: StoredRow): Stored {
  return { version: r.version, createdVersion: r.created_version, originRegion: r.origin_region, deleted: r.deleted };
}

/** Rows stamped before creation stamps existed carry '': their own version stands in. */
export const created = (s: { createdVersion: string; version: string }) => s.createdVersion || s.version;

/** What the merge order looks at in a row state. */
export interface MergeState {
  createdVersion: string;
  deleted: boolean;
  version: string;
}

/**
 * The merge order: negative when `a` loses to `b`. Earlier creation first (a create never replaces an
 * existing row), then a tombstone over a live row, then the later version. The same order as the upsert's
 * WHERE clause ("C" collation compares like JavaScript strings on these ASCII values).
 */
export function compareStates(a: MergeState, b: MergeState): number {
  if (a.createdVersion !== b.createdVersion) return a.createdVersion < b.createdVersion ? 1 : -1;
  if (a.deleted !== b.deleted) return a.deleted ? 1 : -1;
  return a.version < b.version ? -1 : a.version > b.version ? 1 : 0;
}

export function stateOf(c: Pick<RowChange, 'version' | 'row'>): MergeState {
  return {
    // Events from a region that predates creation stamps carry none: they rank as rows created before
    // stamps existed, like the rows the migration stamped '' (see the migration and docs/replication.md).
    createdVersion: typeof c.row.created_version === 'string' ? c.row.created_version : '',
    deleted: c.row.deleted_at !== null && c.row.deleted_at !== undefined,
    version: c.version,
  };
}

/**
 * The ops of an event that create their row with the stamp of an earlier write of the same transaction (a
 * create of several rows: each row carries the version of the transaction's first write as its creation
 * stamp). A later update of such a row carries the same stamp, but no op of its own event has that version.
 */
export function creatingOps(ops: readonly RowChange[]): RowChange[] {
  if (ops.length < 2) return [];
  const versions = new Set(ops.map((op) => op.version));
  return ops.filter((op) => {
    const stamp = op.row.created_version;
    return typeof stamp === 'string' && stamp !== op.version && versions.has(stamp) && (op.row.deleted_at === null || op.row.deleted_at === undefined);
  });
}
