/**
 * The row store's SQL per replicated table: read from the database's columns when the store loads (and
 * again after a migration), with the upserts and one-statement applies built per column set and cached.
 */
import type { Db } from '../db/client';
import { pgCode } from '../db/pg-errors';
import { stateOf, type MergeState } from './merge-rule';
import type { Statement } from './queryable';
import { STALE_GUESS } from './row-guesses';
import type { ReplicatedTable, Row, RowChange } from './tables';

export const HORIZON_SQL = 'SELECT collected_through AS through FROM replication_horizon WHERE id = 1';

export interface TableSql {
  table: ReplicatedTable;
  /** The table's columns in this database, as last loaded. */
  columns: Set<string>;
  /** Upserts by column set (sorted names joined by ','): an event updates only the columns it carries. */
  upserts: Map<string, string>;
  /** One-statement applies by column set (see applyFor). */
  applies: Map<string, string>;
  /** The row as JSON text (the text is what RowGuesses keeps). */
  selectRow: string;
  /** Fails the transaction with STALE_GUESS unless the row is stored exactly as given (every column). */
  expectRow: string;
  selectStates: string;
  /** uuid keys come back from Postgres in lower case. */
  uuidKey: boolean;
  /** The key column's type name (its udt_name). */
  keyType: string;
}

const REQUIRED_COLUMNS = ['version', 'created_version', 'origin_region', 'updated_at', 'deleted_at'];

export const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;

/**
 * Postgres errors that say the schema changed under a cached statement: a column or table gone (a
 * migration dropped it), or a cached plan whose result type changed. The caller reloads and retries once.
 */
export function isSchemaChange(err: unknown): boolean {
  const code = pgCode(err);
  return code === '42703' || code === '42P01' || /cached plan must not change result type/.test(String((err as Error | undefined)?.message));
}

export async function readTableSql(
  db: Db,
  tables: readonly ReplicatedTable[],
): Promise<{ sql: Map<string, TableSql>; schema: string; hasHorizon: boolean; checkFn: boolean }> {
  const sql = new Map<string, TableSql>();
  for (const table of tables) {
    const cols = await db.$queryRawUnsafe<{ column_name: string; udt_name: string }[]>(
      `SELECT column_name, udt_name FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`,
      table.name,
    );
    const names = cols.map((c) => c.column_name);
    // Names are written into SQL as quoted identifiers, and statements get their parameters written in
    // (pg-tx.ts inlineParameters replaces every $n): a name with a '$' or a quote is refused.
    const odd = names.filter((n) => !/^[a-z_][a-z0-9_]*$/.test(n));
    if (odd.length) throw new Error(`replicated table ${table.name} has column name(s) this service does not write: ${odd.join(', ')}`);
    const missing = [...REQUIRED_COLUMNS, table.key].filter((c) => !names.includes(c));
    if (missing.length) {
      // Named, so that an answer says what is wrong (db/pg-errors.ts isSchemaMissing): no table at all reads as no columns.
      throw Object.assign(new Error(`replicated table ${table.name} lacks column(s) ${missing.join(', ')}`), { name: 'SchemaMissing' });
    }
    // ON CONFLICT merges on the key only: any other unique index would turn a race into an error.
    const extra = await db.$queryRawUnsafe<{ name: string }[]>(
      `SELECT i.relname AS name FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
        WHERE t.relname = $1 AND t.relnamespace = current_schema()::regnamespace AND x.indisunique AND NOT x.indisprimary`,
      table.name,
    );
    if (extra.length) throw new Error(`replicated table ${table.name} has unique index(es) besides its key: ${extra.map((e) => e.name).join(', ')}`);
    const keyType = cols.find((c) => c.column_name === table.key)?.udt_name ?? 'text';
    const t = ident(table.name);
    sql.set(table.name, {
      table,
      columns: new Set(names),
      upserts: new Map(),
      applies: new Map(),
      uuidKey: keyType === 'uuid',
      keyType,
      // The advisory lock taken just before serializes local writers of the key; FOR UPDATE adds nothing.
      selectRow: `SELECT to_jsonb(cur)::text AS row FROM ${t} cur WHERE ${ident(table.key)} = $1::${keyType}`,
      expectRow: `SELECT replication_check(EXISTS (SELECT FROM ${t} cur WHERE ${ident(table.key)} = $1::${keyType} AND to_jsonb(cur) = $2::jsonb), '${STALE_GUESS}', $3::text)`,
      selectStates:
        `SELECT ${ident(table.key)}::text AS key, version, created_version, origin_region, deleted_at IS NOT NULL AS deleted ` +
        `FROM ${t} WHERE ${ident(table.key)} = ANY($1::${keyType}[])`,
    });
  }
  // Tests load a store over a bare table set; a database without the migrations table has schema ''.
  const migrations = await db
    .$queryRawUnsafe<{ name: string | null }[]>(
      `SELECT max(migration_name) AS name FROM "_prisma_migrations" WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL`,
    )
    .catch(() => [{ name: null }]);
  const horizon = await db.$queryRawUnsafe<{ t: string | null }[]>(`SELECT to_regclass('replication_horizon')::text AS t`);
  const expect = await db.$queryRawUnsafe<{ found: boolean }[]>(
    `SELECT to_regprocedure('replication_check(boolean,text,text)') IS NOT NULL AS found`,
  );
  return { sql, schema: migrations[0]?.name ?? '', hasHorizon: Boolean(horizon[0]?.t), checkFn: expect[0]?.found === true };
}

/**
 * The upsert of rows carrying exactly `cols` (sorted, all columns of the table, the key among them).
 * A new row gets the defaults of the columns it lacks; an existing one keeps their values: a row from a
 * region whose schema lacks a column does not erase that column here. The merge rule is the same for
 * every column set.
 */
export function upsertFor(s: TableSql, cols: readonly string[], returning = writtenKey(s)): string {
  const id = `${cols.join(',')}\u0000${returning}`;
  const cached = s.upserts.get(id);
  if (cached) return cached;
  const list = cols.map(ident).join(', ');
  const sql = `INSERT INTO ${ident(s.table.name)} AS cur (${list}) SELECT ${list} FROM jsonb_populate_recordset(NULL::${ident(s.table.name)}, $1::jsonb) ${onConflict(s, cols)} RETURNING ${returning}`;
  s.upserts.set(id, sql);
  return sql;
}

/** The upsert's merge rule: replace a row only with a state that outranks it (compareStates). */
function onConflict(s: TableSql, cols: readonly string[]): string {
  const updatable = cols.filter((n) => n !== s.table.key);
  return (
    `ON CONFLICT (${ident(s.table.key)}) DO UPDATE SET (${updatable.map(ident).join(', ')}) = ` +
    `ROW(${updatable.map((c) => `EXCLUDED.${ident(c)}`).join(', ')}) ` +
    `WHERE EXCLUDED.created_version < cur.created_version OR (EXCLUDED.created_version = cur.created_version AND ` +
    `(cur.deleted_at IS NOT NULL, cur.version) < (EXCLUDED.deleted_at IS NOT NULL, EXCLUDED.version))`
  );
}

/**
 * One statement that applies rows carrying exactly `cols` ($1, a JSON array; $2, their keys) and
 * reports what it saw: the rows' stored states before it (`before`), the collection horizon
 * (`through`) and the rows it wrote (`written`). All on one snapshot, taken after the caller's locks:
 * the upsert leaves out a row the horizon rules out by the same rule as collected() (row-horizon.ts), so
 * the caller judges each change on exactly what the statement saw. `hasHorizon`: the database records a
 * collection horizon (replication_horizon).
 */
export function applyFor(s: TableSql, cols: readonly string[], hasHorizon: boolean): string {
  const id = cols.join(',');
  const cached = s.applies.get(id);
  if (cached) return cached;
  const t = ident(s.table.name);
  const k = ident(s.table.key);
  const list = cols.map(ident).join(', ');
  const through = '(SELECT through FROM h)';
  const horizon = hasHorizon ? `SELECT COALESCE((${HORIZON_SQL}), '') AS through` : `SELECT ''::text AS through`;
  const c = (col: string) => `COALESCE(NULLIF(${col}.created_version, ''), ${col}.version) COLLATE "C"`;
  const ruledOut =
    hasHorizon && !s.table.prunedLocally
      ? `NOT (${through} <> '' AND ${c('x')} < ${through} COLLATE "C" AND NOT EXISTS (SELECT 1 FROM b WHERE b.key = x.${k}::text AND ${c('b')} < ${through} COLLATE "C"))`
      : 'true';
  // A row whose stored state already outranks or equals it (a redelivery) is left out too, as the two-step
  // path does: ON CONFLICT would refuse it anyway, but only after locking the row and writing WAL.
  const outranked =
    `NOT EXISTS (SELECT 1 FROM b WHERE b.key = x.${k}::text AND (b.created_version COLLATE "C" < x.created_version COLLATE "C" OR ` +
    `(b.created_version = x.created_version AND (b.deleted, b.version COLLATE "C") >= (x.deleted_at IS NOT NULL, x.version COLLATE "C"))))`;
  const guard = `${ruledOut} AND ${outranked}`;
  const sql =
    `WITH h AS (${horizon}), ` +
    `b AS (SELECT ${k}::text AS key, version, created_version, origin_region, deleted_at IS NOT NULL AS deleted FROM ${t} WHERE ${k} = ANY($2::${s.keyType}[])), ` +
    `up AS (INSERT INTO ${t} AS cur (${list}) SELECT ${cols.map((col) => `x.${ident(col)}`).join(', ')} ` +
    `FROM jsonb_populate_recordset(NULL::${t}, $1::jsonb) AS x WHERE ${guard} ${onConflict(s, cols)} RETURNING ${writtenKey(s)}) ` +
    `SELECT ${through} AS through, (SELECT COALESCE(json_agg(b), '[]'::json) FROM b) AS before, (SELECT COALESCE(json_agg(up), '[]'::json) FROM up) AS written`;
  s.applies.set(id, sql);
  return sql;
}

/** The columns a change's row carries that this table (`s`, the change's) has (sorted), its key among them. */
export function columnSet(s: TableSql, c: Normalized): string[] {
  const cols = Object.keys(c.row).filter((k) => s.columns.has(k));
  // An event's rows come in canonical JSON, their keys sorted: sorted again only when not (a sort and
  // its copy per row were a tenth of what an applying region allocated).
  if (!isSorted(cols)) cols.sort();
  if (!cols.includes(s.table.key)) cols.push(s.table.key);
  return cols;
}

/** The per-key locks of RowStore.lock for every row the changes touch, in one fixed (sorted) order; null for none. */
export function lockAllStatement(changes: readonly Pick<RowChange, 'table' | 'key'>[]): Statement | null {
  const ids = [...new Set(changes.map((c) => `${c.table}:${c.key}`))].sort();
  if (ids.length === 0) return null;
  return { sql: 'SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest($1::text[]) WITH ORDINALITY AS x(k, n) ORDER BY n', values: [ids], exec: true };
}

/** A row's id in the row store's maps (stored states, rows written, rows a write has locked): table and key as the row store normalizes them. */
export function lockedId(table: string, key: string): string {
  return `${table}\u0000${key}`;
}

export interface Normalized {
  /** table and key, for maps */
  id: string;
  table: string;
  rowKey: string;
  row: Row;
  state: MergeState;
  /** The change creates its row (see creationHolds). */
  creates: boolean;
}

/** What an upsert returns of each row it wrote by default: its key (as text) and version. */
function writtenKey(s: TableSql): string {
  return `${ident(s.table.key)}::text AS key, version`;
}

function isSorted(list: readonly string[]): boolean {
  for (let i = 1; i < list.length; i++) if ((list[i - 1] as string) > (list[i] as string)) return false;
  return true;
}

export function normalize(c: RowChange, sql: TableSql, creates = false): Normalized {
  const state = stateOf(c);
  // The row's own key column decides the conflict, so it (not c.key) matches the upsert's RETURNING.
  const key = String(c.row[sql.table.key]);
  const rowKey = sql.uuidKey ? key.toLowerCase() : key;
  return {
    id: lockedId(c.table, rowKey),
    table: c.table,
    rowKey,
    row: { ...c.row, created_version: state.createdVersion },
    state,
    creates: creates || (!state.deleted && state.version === state.createdVersion),
  };
}
