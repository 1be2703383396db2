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
}

export function defineTable(name: string, key: string, opts: { orgColumn?: string } = {}): ReplicatedTable {
  const ok = (s: string) => /^[a-z_][a-z0-9_]*$/.test(s);
  if (!ok(name) || !ok(key) || (opts.orgColumn !== undefined && !ok(opts.orgColumn))) throw new Error(`bad table declaration ${name}.${key}`);
  return opts.orgColumn ? { name, key, orgColumn: opts.orgColumn } : { name, key };
}
