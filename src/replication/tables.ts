import type { Db } from '../db/client';
/**
 * Declarations of replicated tables. A feature declares its table here-by-value (name and key column);
 * the replication module owns how rows are written, versioned, published and applied.
 */
export interface ReplicatedTable {
  /** SQL table name. Every replicated table has version, origin_region, updated_at and deleted_at. */
  readonly name: string;
  /** The column that identifies a row across regions (its natural key). */
  readonly key: string;
  /**
   * The column naming the organization a row belongs to (default org_id), so a change can be followed
   * by that organization's own credentials.
   */
  readonly orgColumn?: string;
  /**
   * Rows each region deletes on its own schedule (expired idempotency keys), not through tombstones: a row
   * absent here says nothing about the rest of the deployment, so a change of one is always applied, and
   * the tombstone collector leaves the table alone (see tombstones.ts).
   */
  readonly prunedLocally?: boolean;
  /**
   * Of a table prunedLocally: the rows this region's cleanup may delete at any time, those whose `column`
   * (a timestamp) lies more than `keepMs` in the past. An apply deletes its batch's stored rows that are,
   * and takes a change of a row that is as applied without storing it (see RowStore.apply).
   */
  readonly prunable?: Prunable;
  /**
   * Called in this process once a write or an apply that changed rows of the table has committed, before
   * the write is answered or the apply acked: an in-process copy of the table (the API keys') drops what it
   * holds, so the change is in effect in this process by the time its caller learns of it. `db`: the
   * region's database client (the one its row store was loaded with).
   */
  readonly onCommitted?: (db: Db) => void;
  /**
   * Rows that belong to a row of another table, keyed by that row's key (a credential's SSO settings): a
   * write deleting that row tombstones them in the same transaction and change (WriteContext.deleteParts),
   * so every region applies both or neither. The owning feature need not know the part's feature: the part
   * declares itself here, and the replication module finds it among the tables the features declared.
   */
  readonly partOf?: PartOf;
  /**
   * Rows that belong to a row of another table through a column of theirs (an organization's credentials,
   * keys and sub-organizations, by org_id or parent_id): a write deleting that row tombstones them in batches
   * (WriteContext.deleteOwned), and the part sweep (parts.ts) tombstones those that outlived it (written in a
   * region its delete had not reached yet, or beyond what its change took).
   */
  readonly ownedBy?: OwnedBy;
  /**
   * Rows that record a write rather than hold what it wrote (an Idempotency-Key's stored answer), written as
   * the last row of their change. A region judges a change by its first row that lost, so an ack naming
   * such a row as the loser says every other row of the change held there: the change status reads that as
   * applied, with only the record superseded (change-status.ts), from acks of any version.
   */
  readonly recordsWrite?: boolean;
  /**
   * Rows a local write never guesses (see RowStore.guess): too large for a guess to pay (an IdP metadata
   * document). Their upsert returns no copy of the row, and a write that locks one reads it.
   */
  readonly unguessed?: boolean;
}

export interface PartOf {
  /** The owning table's name. */
  table: string;
  /**
   * The part's tombstone, from the row stored now: its key, deleted_at, and the minimums its NOT NULL
   * columns need, no payload (deleted data is neither stored nor replicated).
   */
  tombstone(stored: Row, deletedAt: string): Row;
}

/**
 * Owned rows one change tombstones at most (WriteContext.deleteOwned). Measured: a credential's tombstone is
 * ~640 bytes of event, ~1.7 KB with its IdP metadata's and SSO settings' (test/organizations/delete.test.ts), so
 * a change stays under ~350 KB and ~600 row locks. A change is one stream entry, one outbox row and one apply
 * transaction in every region: an owner with more (an organization may hold up to maxCredentialsPerOrg,
 * 100,000, credentials: ~170 MB as one change) has the rest taken by the part sweep, in changes as large. 200
 * so that an organization within the default limit (100 credentials) with its keys and config is one change.
 */
export const OWNED_DELETE_BATCH = 200;

export interface OwnedBy {
  /** The owning table's name. */
  table: string;
  /** The column of this table holding the owning row's key. */
  column: string;
  /** The row's tombstone, from the row stored now (as PartOf.tombstone: no payload). */
  tombstone(stored: Row, deletedAt: string): Row;
}

export interface Prunable {
  column: string;
  keepMs: number;
}

/** Whether `row` (as an event carries it) is one its table's cleanup may delete now. */
export function isPrunable(table: ReplicatedTable, row: Row): boolean {
  const p = table.prunable;
  return p !== undefined && Date.parse(String(row[p.column])) < Date.now() - p.keepMs;
}

/** A full row as JSON, keyed by column name. */
export type Row = Record<string, unknown>;

export interface RowChange {
  table: string;
  key: string;
  version: string;
  row: Row;
}

/** One committed local transaction, as it travels between regions. */
export interface ChangeEvent {
  changeId: string;
  origin: string;
  createdAt: string;
  ops: RowChange[];
  /** The organization the change belongs to (absent in events of older versions). */
  orgId?: string | null;
  /**
   * The origin's schema version: the newest migration its database had applied (migration names sort by
   * time). With the row's own columns it tells a column this region lacks because the origin is ahead
   * (the event is held, parked 'schema-ahead') from one this region dropped (ignored). Absent in events
   * of older versions.
   */
  schema?: string;
  /**
   * Set on a parked copy only (replication_failures.event): per table, the columns this region lacked when
   * it held the event, and its schema then; after the upgrade they are filled in (see Applier.retryParked).
   */
  held?: { schema: string; columns: Record<string, string[]> };
}

export function defineTable(
  name: string,
  key: string,
  opts: {
    orgColumn?: string;
    prunedLocally?: boolean;
    prunable?: Prunable;
    onCommitted?: (db: Db) => void;
    partOf?: { table: ReplicatedTable; tombstone: PartOf['tombstone'] };
    /** The owning table, or its name (a table owned by itself: sub-organizations). */
    ownedBy?: { table: ReplicatedTable | string; column: string; tombstone: OwnedBy['tombstone'] };
    recordsWrite?: boolean;
    unguessed?: boolean;
  } = {},
): ReplicatedTable {
  const ok = (s: string) => /^[a-z_][a-z0-9_]*$/.test(s);
  if (!ok(name) || !ok(key) || (opts.orgColumn !== undefined && !ok(opts.orgColumn)) || (opts.prunable !== undefined && !ok(opts.prunable.column)) || (opts.ownedBy !== undefined && !ok(opts.ownedBy.column))) {
    throw new Error(`bad table declaration ${name}.${key}`);
  }
  return {
    name,
    key,
    ...(opts.orgColumn ? { orgColumn: opts.orgColumn } : {}),
    ...(opts.prunedLocally ? { prunedLocally: true } : {}),
    ...(opts.prunedLocally && opts.prunable ? { prunable: opts.prunable } : {}),
    ...(opts.onCommitted ? { onCommitted: opts.onCommitted } : {}),
    ...(opts.partOf ? { partOf: { table: opts.partOf.table.name, tombstone: opts.partOf.tombstone } } : {}),
    ...(opts.ownedBy ? { ownedBy: { table: typeof opts.ownedBy.table === 'string' ? opts.ownedBy.table : opts.ownedBy.table.name, column: opts.ownedBy.column, tombstone: opts.ownedBy.tombstone } } : {}),
    ...(opts.recordsWrite ? { recordsWrite: true } : {}),
    ...(opts.unguessed ? { unguessed: true } : {}),
  };
}
