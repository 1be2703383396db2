/**
 * Generic SQL over replicated tables. Rows travel as JSON and are written with jsonb_populate_recordset,
 * so one statement serves every table. The merge rule: the row state that is greatest by
 * (is a tombstone, version) wins. So the latest write wins, except that a deletion is final: no update,
 * however late or concurrent, brings a deleted row back. Taking a maximum is commutative, associative and
 * idempotent, which is what makes apply order-independent and duplicates harmless.
 * The same statement applies local writes and remote changes.
 */
import type { Db, TxClient } from '../db/client';
import type { ReplicatedTable, Row, RowChange } from './tables';

type Queryable = Pick<Db | TxClient, '$queryRawUnsafe' | '$executeRawUnsafe'>;

interface TableSql {
  table: ReplicatedTable;
  upsert: string;
  selectRow: string;
}

const REQUIRED_COLUMNS = ['version', 'origin_region', 'updated_at', 'deleted_at'];

const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;

export class RowStore {
  private constructor(private readonly sql: Map<string, TableSql>) {}

  /** Reads each table's columns from the database once, and checks the replication columns exist. */
  static async load(db: Db, tables: readonly ReplicatedTable[]): Promise<RowStore> {
    const sql = new Map<string, TableSql>();
    for (const table of tables) {
      const cols = await db.$queryRawUnsafe<{ column_name: string; udt_name: string }[]>(
        `SELECT column_name, udt_name FROM information_schema.columns
          WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`,
        table.name,
      );
      const names = cols.map((c) => c.column_name);
      const missing = [...REQUIRED_COLUMNS, table.key].filter((c) => !names.includes(c));
      if (missing.length) throw new Error(`replicated table ${table.name} lacks column(s) ${missing.join(', ')}`);
      // ON CONFLICT merges on the key only: any other unique index would turn a race into an error.
      const extra = await db.$queryRawUnsafe<{ name: string }[]>(
        `SELECT i.relname AS name FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
          WHERE t.relname = $1 AND t.relnamespace = current_schema()::regnamespace AND x.indisunique AND NOT x.indisprimary`,
        table.name,
      );
      if (extra.length) throw new Error(`replicated table ${table.name} has unique index(es) besides its key: ${extra.map((e) => e.name).join(', ')}`);
      const keyType = cols.find((c) => c.column_name === table.key)?.udt_name ?? 'text';
      const t = ident(table.name);
      const updatable = names.filter((n) => n !== table.key);
      sql.set(table.name, {
        table,
        upsert:
          `INSERT INTO ${t} AS cur SELECT * FROM jsonb_populate_recordset(NULL::${t}, $1::jsonb) ` +
          `ON CONFLICT (${ident(table.key)}) DO UPDATE SET (${updatable.map(ident).join(', ')}) = ` +
          `ROW(${updatable.map((c) => `EXCLUDED.${ident(c)}`).join(', ')}) ` +
          `WHERE (cur.deleted_at IS NOT NULL, cur.version) < (EXCLUDED.deleted_at IS NOT NULL, EXCLUDED.version)`,
        // The advisory lock taken just before serializes local writers of the key; FOR UPDATE adds nothing.
        selectRow: `SELECT to_jsonb(cur) AS row FROM ${t} cur WHERE ${ident(table.key)} = $1::${keyType}`,
      });
    }
    return new RowStore(sql);
  }

  has(tableName: string): boolean {
    return this.sql.has(tableName);
  }

  private get(tableName: string): TableSql {
    const s = this.sql.get(tableName);
    if (!s) throw new Error(`table ${tableName} is not replicated`);
    return s;
  }

  /**
   * Locks the row (even one that does not exist yet, through an advisory lock on its key) for the rest
   * of the transaction and returns it, tombstone included.
   */
  async lock(tx: Queryable, table: ReplicatedTable, key: string): Promise<Row | null> {
    await tx.$executeRawUnsafe('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', `${table.name}:${key}`);
    const rows = await tx.$queryRawUnsafe<{ row: Row }[]>(this.get(table.name).selectRow, key);
    return rows[0]?.row ?? null;
  }

  /** Applies row changes; older or equal versions leave the stored row as it is. Returns rows changed. */
  async apply(tx: Queryable, changes: readonly RowChange[]): Promise<number> {
    const newest = new Map<string, RowChange>();
    for (const c of changes) {
      const id = `${c.table}\u0000${c.key}`;
      const seen = newest.get(id);
      if (!seen || rank(seen) < rank(c)) newest.set(id, c);
    }
    const byTable = new Map<string, Row[]>();
    for (const c of newest.values()) {
      const rows = byTable.get(c.table) ?? [];
      rows.push(c.row);
      byTable.set(c.table, rows);
    }
    let changed = 0;
    for (const [tableName, rows] of byTable) {
      changed += await tx.$executeRawUnsafe(this.get(tableName).upsert, JSON.stringify(rows));
    }
    return changed;
  }
}

/** The merge order of row states, as a string that sorts like (is a tombstone, version). */
export function rank(c: Pick<RowChange, 'version' | 'row'>): string {
  return `${c.row.deleted_at ? 1 : 0}${c.version}`;
}
