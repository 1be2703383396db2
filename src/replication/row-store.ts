/**
 * Generic SQL over replicated tables. Rows travel as JSON and are written with jsonb_populate_recordset,
 * one statement per table and column set: a row updates only the columns it carries, so a region whose
 * schema lacks a column (a rolling upgrade) does not erase that column's value in the regions that have it;
 * a new row gets the defaults of the columns it lacks. The merge rule: the row state that is greatest by
 * (earliest creation, is a tombstone, version) wins.
 * - Earliest creation: every row carries `created_version`, the version of the write that created it.
 *   Of two rows created concurrently under one key (a natural key: one config per org), the earlier create
 *   wins, together with every later update of it; the later create and its updates are discarded. An
 *   existing row is therefore never replaced by a create.
 * - Then a deletion is final: no update of the same row, however late or concurrent, brings it back.
 * - Then the latest write wins.
 * This is a maximum over a total order, so it is commutative, associative and idempotent: apply is
 * order-independent and duplicates are harmless. The same statement applies local writes and remote changes,
 * and reports per change whether the row now holds it (applied) or a greater state (superseded).
 */
import type { Db } from '../db/client';
import { pgCode } from '../db/pg-errors';
import { isPrunable, type ReplicatedTable, type Row, type RowChange } from './tables';
import { RowGuesses, STALE_GUESS } from './row-guesses';

/** What the row store needs of a connection or transaction: raw queries (Prisma's clients, or pg-tx.ts). */
export interface Queryable {
  $queryRawUnsafe<T = unknown>(query: string, ...values: unknown[]): Promise<T>;
  $executeRawUnsafe(query: string, ...values: unknown[]): Promise<number>;
  /**
   * Several statements in one round trip, each run after the one before it on a snapshot of its own (a
   * pipelined transaction, pg-tx.ts): the rows of each. Absent on a transaction that sends one at a time.
   */
  batch?(statements: readonly Statement[]): Promise<unknown[][]>;
}

/** One statement and its parameters ($1, $2, …); `exec`: it returns no rows worth reading (a lock). */
export interface Statement {
  sql: string;
  values: unknown[];
  exec?: boolean;
  /**
   * Sent through a pipelined transaction (pg-tx.ts), run as a prepared statement: PREPAREd once per
   * connection, then EXECUTEd, so Postgres parses and plans it once instead of every time. For statements
   * whose text repeats (the upserts and applies of a table's column set, the outbox row); every parameter's
   * type must follow from the SQL (a cast, a function's argument).
   */
  prepare?: boolean;
}

/**
 * A transaction that sends several statements in one round trip (pg-tx.ts): each statement runs after
 * the one before it, with a snapshot of its own, and `last` commits the transaction after them. Each
 * statement's rows come back in order.
 */
export interface Pipeline {
  run(statements: readonly Statement[], last?: boolean): Promise<unknown[][]>;
}

/** Runs statements one round trip each, for a transaction that cannot send several at once. */
function oneByOne(tx: Queryable): Pipeline {
  return {
    run: async (statements) => {
      const out: unknown[][] = [];
      for (const st of statements) {
        if (st.exec) {
          await tx.$executeRawUnsafe(st.sql, ...st.values);
          out.push([]);
        } else out.push(await tx.$queryRawUnsafe<unknown[]>(st.sql, ...st.values));
      }
      return out;
    },
  };
}

export interface ApplyOptions {
  /** Take the rows' per-key locks first (lockAll), in the same round trip as the reads. */
  lock?: boolean;
  /** Nothing follows in this transaction: a Pipeline commits with the writes' round trip. */
  last?: boolean;
  /**
   * Changes that create their row though their version is not its creation stamp: the second and later rows
   * of a transaction that created several (each carries the stamp of the transaction's first write). See
   * creatingOps.
   */
  creates?: ReadonlySet<RowChange>;
}

const HORIZON_SQL = 'SELECT collected_through AS through FROM replication_horizon WHERE id = 1';

interface TableSql {
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

export interface ApplyResult {
  /** Rows inserted or replaced. */
  changed: number;
  /** One per change given, in the same order. */
  outcomes: OpOutcome[];
}

const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;

/**
 * Postgres errors that say the schema changed under a cached statement: a column or table gone (a
 * migration dropped it), or a cached plan whose result type changed. The caller reloads and retries once.
 */
export function isSchemaChange(err: unknown): boolean {
  const code = pgCode(err);
  return code === '42703' || code === '42P01' || /cached plan must not change result type/.test(String((err as Error | undefined)?.message));
}

export class RowStore {
  private constructor(
    private sql: Map<string, TableSql>,
    /** The newest migration applied to this database when loaded: the schema version events carry. */
    private schemaVersion: string,
    private readonly db: Db,
    private readonly tables: readonly ReplicatedTable[],
    /** Whether this database records a tombstone collection horizon (replication_horizon). */
    private hasHorizon: boolean,
  ) {}

  /**
   * Changes not applied because their row's tombstone was collected here (see apply), since this store
   * was loaded.
   */
  belowHorizon = 0;

  /** Whether the database has replication_check (a local write's upserts wait for its commit: deferredPut). */
  private checkFn = false;

  /** Rows as this process last saw them committed: a local write's guess (see guess()). */
  private readonly guesses = new RowGuesses();

  /** Reads each table's columns from the database, and checks the replication columns exist. */
  static async load(db: Db, tables: readonly ReplicatedTable[]): Promise<RowStore> {
    const { sql, schema, hasHorizon, checkFn } = await RowStore.read(db, tables);
    const store = new RowStore(sql, schema, db, tables, hasHorizon);
    store.checkFn = checkFn;
    return store;
  }

  /**
   * Reads the column lists again (after a migration: a dropped column would fail every cached statement,
   * an added one would be left out of every write). Concurrent callers share one reload.
   */
  reload(): Promise<void> {
    this.reloading ??= RowStore.read(this.db, this.tables)
      .then(({ sql, schema, hasHorizon, checkFn }) => {
        this.sql = sql;
        this.checkFn = checkFn;
        // Rows kept under the old column lists would leave an added column out of a guess.
        this.guesses.clear();
        this.schemaVersion = schema;
        this.hasHorizon = hasHorizon;
        this.reloadedAt = Date.now();
      })
      .finally(() => {
        this.reloading = null;
      });
    return this.reloading;
  }

  /** Reloads unless that was done in the last `minAgeMs`; true when it reloaded. */
  async reloadIfStale(minAgeMs = 5000): Promise<boolean> {
    if (Date.now() - this.reloadedAt < minAgeMs) return false;
    await this.reload();
    return true;
  }

  private reloading: Promise<void> | null = null;
  private reloadedAt = Date.now();

  /** The newest migration this database had when the columns were loaded ('' when none is recorded). */
  get schema(): string {
    return this.schemaVersion;
  }

  /** The table's columns in this database, as last loaded. */
  columnsOf(tableName: string): string[] {
    return [...this.get(tableName).columns];
  }

  /** Columns a row carries that this database's table lacks (a newer schema's, or ones dropped here). */
  extraColumns(tableName: string, row: Row): string[] {
    const cols = this.get(tableName).columns;
    return Object.keys(row).filter((c) => !cols.has(c));
  }

  private static async read(
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
  private upsertFor(s: TableSql, cols: readonly string[], returning = writtenKey(s)): string {
    const id = `${cols.join(',')}\u0000${returning}`;
    const cached = s.upserts.get(id);
    if (cached) return cached;
    const list = cols.map(ident).join(', ');
    const sql = `INSERT INTO ${ident(s.table.name)} AS cur (${list}) SELECT ${list} FROM jsonb_populate_recordset(NULL::${ident(s.table.name)}, $1::jsonb) ${this.onConflict(s, cols)} RETURNING ${returning}`;
    s.upserts.set(id, sql);
    return sql;
  }

  /** The upsert's merge rule: replace a row only with a state that outranks it (compareStates). */
  private onConflict(s: TableSql, cols: readonly string[]): string {
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
   * the upsert leaves out a row the horizon rules out by the same rule as collected(), so the caller
   * judges each change on exactly what the statement saw.
   */
  private applyFor(s: TableSql, cols: readonly string[]): string {
    const id = cols.join(',');
    const cached = s.applies.get(id);
    if (cached) return cached;
    const t = ident(s.table.name);
    const k = ident(s.table.key);
    const list = cols.map(ident).join(', ');
    const through = '(SELECT through FROM h)';
    const horizon = this.hasHorizon ? `SELECT COALESCE((${HORIZON_SQL}), '') AS through` : `SELECT ''::text AS through`;
    const c = (col: string) => `COALESCE(NULLIF(${col}.created_version, ''), ${col}.version) COLLATE "C"`;
    const ruledOut =
      this.hasHorizon && !s.table.prunedLocally
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
      `FROM jsonb_populate_recordset(NULL::${t}, $1::jsonb) AS x WHERE ${guard} ${this.onConflict(s, cols)} RETURNING ${writtenKey(s)}) ` +
      `SELECT ${through} AS through, (SELECT COALESCE(json_agg(b), '[]'::json) FROM b) AS before, (SELECT COALESCE(json_agg(up), '[]'::json) FROM up) AS written`;
    s.applies.set(id, sql);
    return sql;
  }

  /** The columns a change's row carries that this table has (sorted), its key among them. */
  private columnSet(c: Normalized): string[] {
    const s = this.get(c.table);
    const cols = Object.keys(c.row).filter((k) => s.columns.has(k));
    // An event's rows come in canonical JSON, their keys sorted: sorted again only when not (a sort and
    // its copy per row were a tenth of what an applying region allocated).
    if (!isSorted(cols)) cols.sort();
    if (!cols.includes(s.table.key)) cols.push(s.table.key);
    return cols;
  }

  /**
   * After an upgrade, for a parked event whose row lost by version to a write this region made before it
   * had `columns` (so that write could not set them): sets those columns from the event. Only rows of the
   * same create whose stored version lies between the event's and `before` (the time this region's schema
   * gained the columns) are touched: a later write may have set the columns itself. Null when there is
   * nothing to set.
   */
  fillColumns(change: RowChange, columns: readonly string[], before: string): Statement | null {
    const s = this.get(change.table);
    const cols = columns.filter((c) => s.columns.has(c) && c !== s.table.key);
    if (cols.length === 0) return null;
    const t = ident(s.table.name);
    const k = ident(s.table.key);
    const state = stateOf(change);
    return {
      sql:
        `UPDATE ${t} AS cur SET (${cols.map(ident).join(', ')}) = ROW(${cols.map((c) => `x.${ident(c)}`).join(', ')}) ` +
        `FROM jsonb_populate_record(NULL::${t}, $1::jsonb) AS x WHERE cur.${k} = x.${k} AND cur.created_version = $2 ` +
        `AND cur.version > $3 AND cur.version < $4`,
      values: [JSON.stringify(change.row), state.createdVersion, change.version, before],
      exec: true,
    };
  }

  /** The key under which apply() looks up a row a write locked (see lockedId). */
  lockedIdOf(tableName: string, key: string): string {
    return lockedId(tableName, this.get(tableName).uuidKey ? key.toLowerCase() : key);
  }

  /** Runs the onCommitted hook of each table the changes touched (see ReplicatedTable.onCommitted). */
  committed(changes: readonly Pick<RowChange, 'table'>[]): void {
    for (const name of new Set(changes.map((c) => c.table))) this.sql.get(name)?.table.onCommitted?.(this.db);
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
    const s = this.get(table.name);
    if (tx.batch) {
      // One round trip of two prepared statements: the read runs after the lock was granted, on a snapshot
      // taken then, so it sees whatever the lock's previous holder committed. (Measured: 155 µs of the
      // backend's CPU through replication_lock_row, whose dynamic SQL is planned on every call.)
      const [, rows] = await tx.batch([this.lockStatement(table, key), { sql: s.selectRow, values: [key], prepare: true }]);
      return this.seen(table.name, key, (rows?.[0] as { row: string | null } | undefined)?.row ?? null);
    }
    // A transaction that sends one statement at a time: two round trips.
    const lock = this.lockStatement(table, key);
    await tx.$executeRawUnsafe(lock.sql, ...lock.values);
    const rows = await tx.$queryRawUnsafe<{ row: string | null }[]>(s.selectRow, key);
    return this.seen(table.name, key, rows[0]?.row ?? null);
  }

  /** A row read (or written) as JSON text: parsed, and kept as the next guess of its key. */
  private seen(tableName: string, key: string, text: string | null): Row | null {
    if (text === null) return null;
    const row = JSON.parse(text) as Row;
    if (typeof row.version === 'string') this.guesses.keep(this.lockedIdOf(tableName, key), text, row.version);
    return row;
  }

  /**
   * The row as this process last saw it committed, instead of lock(): null when none is kept (or the
   * database cannot check a guess). Otherwise the row, and two statements to hold back for the
   * transaction's next round trip (as WriteContext.later does): the key's lock, then the check that the row
   * is still stored exactly as guessed (every column, not only its version: a hand-made fix or a writer
   * outside the replicator changes a row without a new version), which fails the transaction with
   * STALE_GUESS if not (see row-guesses.ts). A write that put the key already in this transaction must not
   * guess it: the check would see its own write.
   */
  guess(table: ReplicatedTable, key: string): { row: Row; statements: Statement[] } | null {
    if (!this.checkFn) return null;
    const s = this.get(table.name);
    const kept = this.guesses.get(this.lockedIdOf(table.name, key));
    if (!kept) return null;
    const check = { sql: s.expectRow, values: [key, kept.text, `${table.name} ${key} is no longer as guessed (version ${kept.version})`], exec: true, prepare: true };
    return { row: kept.row, statements: [this.lockStatement(table, key), check] };
  }

  /** What a committed deferredPut returned (its `row`): kept as the next guess of its key. */
  keepWritten(tableName: string, key: string, result: unknown): void {
    const text = (result as { row?: unknown } | undefined)?.row;
    if (typeof text === 'string') this.seen(tableName, key, text);
    else this.guesses.forget(this.lockedIdOf(tableName, key));
  }

  /** Drops the guess of a key (a stale one, or one this process is about to change). */
  forgetGuess(tableName: string, key: string): void {
    this.guesses.forget(this.lockedIdOf(tableName, key));
  }

  /** Whether deferredPut can hold upserts back (the database has replication_check). */
  get canDefer(): boolean {
    return this.checkFn;
  }

  /** The per-key lock lock() takes, alone: a statement to send with others (see WriteContext.later). */
  lockStatement(table: ReplicatedTable, key: string): Statement {
    this.get(table.name);
    return { sql: 'SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', values: [`${table.name}:${key}`], exec: true, prepare: true };
  }

  /**
   * The upsert of one row that a local write has locked and read (`current`; null when absent), to be sent
   * with the transaction's last round trip (its outbox row and COMMIT) instead of a round trip of its own.
   * Under the lock the outcome is known: the change outranks `current`, and nothing else writes the row
   * before the commit. The statement still checks it wrote the row and otherwise fails the transaction
   * (replication_check: a serialization failure, so the write runs again). Null when the change
   * does not outrank `current`, or the database lacks the function: then apply() it at once, as before.
   * No horizon check: a local create's creation stamp is the transaction's own fresh version, above any
   * horizon, and a local update keeps the stamp of the row it holds.
   */
  deferredPut(change: RowChange, current: Row | null): Statement | null {
    if (!this.checkFn) return null;
    const s = this.get(change.table);
    const c = normalize(change, s);
    if (current && compareStates(c.state, stateOf({ version: String(current.version), row: current })) <= 0) return null;
    return {
      // The row as written comes back (as JSON text) to be the next guess of its key (see guess()).
      sql: `WITH w AS (${this.upsertFor(s, this.columnSet(c), 'to_jsonb(cur)::text AS row')}) SELECT replication_check((SELECT count(*) FROM w) = 1, '40001', $2::text), (SELECT row FROM w) AS row`,
      values: [JSON.stringify([c.row]), `write to ${change.table} ${c.rowKey} was refused by the merge rule`],
      exec: true,
      prepare: true,
    };
  }

  /**
   * Takes the same per-key locks as lock(), for every row the changes touch, in one fixed (sorted) order:
   * the applier calls it before applying, so an apply waits for a local write of the same key (and the
   * other way round) instead of racing it; the fixed order keeps two appliers from deadlocking each other.
   */
  async lockAll(tx: Queryable, changes: readonly Pick<RowChange, 'table' | 'key'>[]): Promise<void> {
    const st = lockAllStatement(changes);
    if (st) await tx.$executeRawUnsafe(st.sql, ...st.values);
  }

  /**
   * Applies row changes by the merge rule; a change that does not outrank the stored row leaves it as it
   * is. Reports, per change, whether the row held it: judged in the order given (as if applied one by
   * one), a change is applied when it outranks or equals what the row held before it, or when it is a
   * deletion and the row is already deleted (a delete's intent holds whichever tombstone is kept);
   * otherwise it is superseded, and the winner is the row's final state. A row a concurrent transaction
   * wrote past all of this call's changes supersedes them all.
   * An "applied" ack must stay true: the applier holds the rows' per-key locks (lockAll) while it applies,
   * so a local create of the same key that is still running either commits first (and this change is
   * superseded) or sees this row and refuses. Without them a region could ack a create and then commit an
   * earlier one of its own, discarding a write that answered 2xx under all_regions.
   * `locked`: rows the caller's transaction holds the locks of and has read since, by lockedId (a local
   * write's put()); when every change's row is among them, their stored states are not read again.
   */
  async apply(tx: Queryable | Pipeline, changes: readonly RowChange[], locked?: ReadonlyMap<string, Row | null>, opts: ApplyOptions = {}): Promise<ApplyResult> {
    // A Pipeline sends each step's statements in one round trip: the locks, the stored states and the
    // horizon in the first; the writes and the commit in the second.
    const pipelined = 'run' in tx;
    const run = pipelined ? tx : oneByOne(tx);
    // A row its table's cleanup would delete at once is not stored (taken as applied and pruned).
    const pruned = changes.map((c) => isPrunable(this.get(c.table).table, c.row));
    if (pruned.some(Boolean)) {
      const kept = changes.filter((_, i) => !pruned[i]);
      const r: ApplyResult = kept.length || opts.last ? await this.apply(tx, kept, locked, opts) : { changed: 0, outcomes: [] };
      let k = 0;
      return { changed: r.changed, outcomes: pruned.map((p) => (p ? { applied: true } : (r.outcomes[k++] as OpOutcome))) };
    }
    const norm = changes.map((c) => normalize(c, this.get(c.table), opts.creates?.has(c) === true));
    const known = locked && norm.every((c) => locked.has(lockedId(c.table, c.rowKey))) ? knownStates(norm, locked) : null;
    // The same lock keys as lock() and lockAll(): the keys as the changes name them.
    const lock = opts.lock ? lockAllStatement(changes) : null;
    const single = pipelined && opts.last && !known ? this.singleTripGroups(norm) : null;
    const r = single ? await this.applyInOneTrip(run, norm, single, lock) : await this.applyInSteps(run, norm, known, lock, opts, pipelined);
    // What this changed is not what a guess of these keys holds (a guess would fail its check; see guess()).
    for (const c of norm) this.guesses.forget(c.id);
    return this.judge(norm, r, opts.last && pipelined ? oneByOne(this.db) : run);
  }

  /**
   * The one-round-trip apply (a Pipeline that commits): possible when every row appears once in the batch
   * and each table's rows carry one column set, so what to write does not depend on what is stored. Then
   * one statement per table reads the stored states and the horizon and upserts the rows the horizon does
   * not rule out, all on one snapshot taken after the locks (row-store's applyFor); null when not possible.
   */
  private singleTripGroups(norm: readonly Normalized[]): Map<string, { cols: string[]; changes: Normalized[] }> | null {
    const ids = new Set<string>();
    const groups = new Map<string, { cols: string[]; changes: Normalized[] }>();
    for (const c of norm) {
      if (ids.has(c.id)) return null;
      ids.add(c.id);
      const cols = this.columnSet(c);
      const g = groups.get(c.table);
      if (g && !sameList(g.cols, cols)) return null;
      if (g) g.changes.push(c);
      else groups.set(c.table, { cols, changes: [c] });
    }
    return groups;
  }

  private async applyInOneTrip(
    run: Pipeline,
    norm: readonly Normalized[],
    groups: Map<string, { cols: string[]; changes: Normalized[] }>,
    lock: Statement | null,
  ): Promise<Gathered> {
    const tables = [...groups];
    const statements: Statement[] = tables.map(([table, g]) => ({
      sql: this.applyFor(this.get(table), g.cols),
      prepare: true,
      values: [JSON.stringify(g.changes.map((c) => c.row)), g.changes.map((c) => c.rowKey)],
    }));
    const ahead = [...(lock ? [lock] : []), ...this.prunes(norm)];
    const res = await run.run([...ahead, ...statements], true);
    const before = new Map<string, Stored>();
    const through = new Map<string, string>();
    const written = new Set<string>();
    let changed = 0;
    tables.forEach(([table], i) => {
      const row = res[ahead.length + i]?.[0] as { through: string; before: StoredRow[]; written: { key: string }[] } | undefined;
      through.set(table, row?.through ?? '');
      for (const r of row?.before ?? []) before.set(lockedId(table, r.key), storedOf(r));
      for (const w of row?.written ?? []) written.add(lockedId(table, w.key));
      changed += row?.written.length ?? 0;
    });
    const below = this.ruledOut(norm, before, (t) => through.get(t) ?? '');
    const newest = new Map(norm.filter((c) => !below.changes.has(c)).map((c) => [c.id, c]));
    const toWrite = new Set([...newest.values()].filter((c) => !before.has(c.id) || compareStates(c.state, before.get(c.id) as Stored) > 0).map((c) => c.row));
    return { before, below, newest, toWrite, written, changed };
  }

  private async applyInSteps(
    run: Pipeline,
    norm: readonly Normalized[],
    known: Map<string, Stored> | null,
    lock: Statement | null,
    opts: ApplyOptions,
    pipelined: boolean,
  ): Promise<Gathered> {
    const first: Statement[] = [];
    if (lock) first.push(lock);
    // What this region's cleanup may delete goes first (not when the states are known: a local write's).
    if (!known) first.push(...this.prunes(norm));
    const ahead = first.length;
    const reads = known ? [] : this.stateReads(norm);
    first.push(...reads);
    // The horizon is read ahead only where it costs no round trip of its own; otherwise when needed.
    const horizonAhead = pipelined && this.hasHorizon;
    if (horizonAhead) first.push({ sql: HORIZON_SQL, values: [] });
    const got = first.length ? await run.run(first) : [];
    const before = known ?? this.statesFrom(reads.length ? got.slice(ahead, ahead + reads.length) : [], reads);
    const prefetched = horizonAhead ? String((got[got.length - 1]?.[0] as { through?: string } | undefined)?.through ?? '') : undefined;
    const below = await this.collected(run, norm, before, prefetched);
    const newest = new Map<string, Normalized>();
    for (const c of norm) {
      if (below.changes.has(c)) continue;
      const seen = newest.get(c.id);
      if (!seen || compareStates(seen.state, c.state) < 0) newest.set(c.id, c);
    }
    // Grouped by table and column set: each row updates only the columns it carries (and this table has;
    // a column dropped here is left out).
    const groups = new Map<string, { table: string; cols: string[]; rows: Row[] }>();
    const toWrite = new Set<Row>();
    for (const c of newest.values()) {
      const b = before.get(c.id);
      if (b && compareStates(c.state, b) <= 0) continue; // nothing to write
      const cols = this.columnSet(c);
      const gid = `${c.table}\u0000${cols.join(',')}`;
      const g = groups.get(gid) ?? { table: c.table, cols, rows: [] };
      g.rows.push(c.row);
      groups.set(gid, g);
      toWrite.add(c.row);
    }
    const writes: Statement[] = [...groups.values()].map((g) => ({ sql: this.upsertFor(this.get(g.table), g.cols), values: [JSON.stringify(g.rows)], prepare: true }));
    const results = writes.length || opts.last ? await run.run(writes, opts.last) : [];
    let changed = 0;
    const written = new Set<string>();
    [...groups.values()].forEach((g, i) => {
      const rows = (results[i] ?? []) as { key: string }[];
      changed += rows.length;
      for (const w of rows) written.add(lockedId(g.table, w.key));
    });
    return { before, below, newest, toWrite, written, changed };
  }

  /**
   * Per table of the batch that declares rows its own cleanup may delete (ReplicatedTable.prunable): a
   * statement deleting the batch's rows that meet it, as if the cleanup had just run.
   */
  private prunes(norm: readonly Normalized[]): Statement[] {
    const keys = new Map<string, string[]>();
    for (const c of norm) {
      if (!this.get(c.table).table.prunable) continue;
      const list = keys.get(c.table) ?? [];
      list.push(c.rowKey);
      keys.set(c.table, list);
    }
    return [...keys].map(([table, list]) => {
      const s = this.get(table);
      const p = s.table.prunable as NonNullable<ReplicatedTable['prunable']>;
      return {
        sql: `DELETE FROM ${ident(table)} WHERE ${ident(s.table.key)} = ANY($1::${s.keyType}[]) AND ${ident(p.column)} < now() - make_interval(secs => $2::float8 / 1000)`,
        values: [list, p.keepMs],
        exec: true,
        prepare: true,
      };
    });
  }

  /** Per change, whether the row holds it, from what was stored before and what was written. */
  private async judge(norm: readonly Normalized[], r: Gathered, readAfter: Pipeline): Promise<ApplyResult> {
    const { before, below, newest, toWrite, written, changed } = r;
    // A row that should have been written but was not: a writer that does not take the per-key locks got
    // there first (a safety net: every writer takes them). Read it back, to name what won: in the same
    // transaction, or just after it when it has committed already.
    const lostRace = new Set([...newest.values()].filter((c) => toWrite.has(c.row) && !written.has(c.id)).map((c) => c.id));
    let after = new Map<string, Stored>();
    if (lostRace.size) {
      const again = this.stateReads([...newest.values()].filter((c) => lostRace.has(c.id)));
      try {
        after = this.statesFrom(await readAfter.run(again), again);
      } catch {
        // Read after the commit, and failed: the apply holds; what won is not known, but the change did not.
        for (const id of lostRace) after.set(id, { version: '', createdVersion: '', originRegion: '', deleted: false });
      }
    }
    const running = new Map<string, Stored | undefined>();
    const outcomes = norm.map((c): OpOutcome => {
      const raced = lostRace.has(c.id) ? after.get(c.id) : undefined;
      const final = raced ?? finalState(before.get(c.id), newest.get(c.id));
      if (below.changes.has(c)) {
        // The row's tombstone was collected here: a deletion holds; anything else lost to it.
        if (c.state.deleted) return { applied: true };
        const w = final ?? { version: below.throughOf(c.table), createdVersion: c.state.createdVersion, originRegion: '', deleted: true };
        return { applied: false, winner: { table: c.table, key: c.rowKey, ...w } };
      }
      const held = running.has(c.id) ? running.get(c.id) : before.get(c.id);
      const cmp = held ? compareStates(c.state, held) : 1;
      if (cmp > 0) running.set(c.id, { ...c.state, originRegion: String(c.row.origin_region ?? '') });
      // Judged against what the row held before it, or, when a concurrent writer won the race, against that.
      const against = raced ?? held;
      const holds = (raced ? compareStates(c.state, raced) >= 0 : cmp >= 0) || deletionHolds(c.state, against) || creationHolds(c, against);
      if (holds || !final) return { applied: true };
      return { applied: false, winner: { table: c.table, key: c.rowKey, version: final.version, createdVersion: final.createdVersion, originRegion: final.originRegion, deleted: final.deleted } };
    });
    return { changed, outcomes };
  }

  /**
   * Changes of a row created before this region's collection horizon (replication_horizon.collected_through)
   * when the row is absent here, or held as a later create of its key: that create was applied everywhere
   * before the horizon, so the row's absence (or a newer incarnation) means its tombstone was collected,
   * and the change is older than that deletion (a late update, a redelivery, a replayed event). Applying
   * it would bring the row back (or, by "earliest create wins", replace the newer incarnation). Read under
   * the per-key locks the caller holds, which the collector takes too, so a tombstone cannot vanish in
   * between. Tables pruned locally are left out: their rows go without tombstones (tables.ts).
   */
  private async collected(run: Pipeline, changes: readonly Normalized[], before: ReadonlyMap<string, Stored>, prefetched?: string): Promise<Below> {
    if (!this.hasHorizon || !changes.some((c) => this.mayBeBelow(c, before))) return { changes: new Set(), throughOf: () => '' };
    const through = prefetched ?? String(((await run.run([{ sql: HORIZON_SQL, values: [] }]))[0]?.[0] as { through?: string } | undefined)?.through ?? '');
    return this.ruledOut(changes, before, () => through);
  }

  /** A change of a row absent here, or held as a later create: its row's tombstone may have been collected. */
  private mayBeBelow(c: Normalized, before: ReadonlyMap<string, Stored>): boolean {
    if (this.get(c.table).table.prunedLocally) return false;
    const b = before.get(c.id);
    return !b || created(c.state) < created(b);
  }

  /** The changes the horizon rules out (see collected), given each table's collection horizon. */
  private ruledOut(changes: readonly Normalized[], before: ReadonlyMap<string, Stored>, throughOf: (table: string) => string): Below {
    if (!this.hasHorizon) return { changes: new Set(), throughOf };
    const old = changes.filter((c) => {
      const through = throughOf(c.table);
      const b = before.get(c.id);
      return through !== '' && this.mayBeBelow(c, before) && created(c.state) < through && (!b || created(b) >= through);
    });
    this.belowHorizon += old.length;
    return { changes: new Set(old), throughOf };
  }

  /** Reads of the stored merge states of the rows these changes touch: one statement per table. */
  private stateReads(changes: readonly Normalized[]): (Statement & { table: string })[] {
    return [...new Set(changes.map((c) => c.table))].map((tableName) => ({
      table: tableName,
      sql: this.get(tableName).selectStates,
      values: [[...new Set(changes.filter((c) => c.table === tableName).map((c) => c.rowKey))]],
    }));
  }

  /** The states those reads returned (`rows[i]` answering `reads[i]`), by table and key. */
  private statesFrom(rows: readonly unknown[][], reads: readonly { table: string }[]): Map<string, Stored> {
    const out = new Map<string, Stored>();
    reads.forEach(({ table }, i) => {
      for (const r of (rows[i] ?? []) as StoredRow[]) out.set(lockedId(table, r.key), storedOf(r));
    });
    return out;
  }
}

/** The per-key locks of lock() for every row the changes touch, in one fixed (sorted) order; null for none. */
function lockAllStatement(changes: readonly Pick<RowChange, 'table' | 'key'>[]): Statement | null {
  const ids = [...new Set(changes.map((c) => `${c.table}:${c.key}`))].sort();
  if (ids.length === 0) return null;
  return { sql: 'SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest($1::text[]) WITH ORDINALITY AS x(k, n) ORDER BY n', values: [ids], exec: true };
}

interface Stored extends MergeState {
  originRegion: string;
}

/** A stored merge state as the state reads return it. */
interface StoredRow {
  key: string;
  version: string;
  created_version: string;
  origin_region: string;
  deleted: boolean;
}

function storedOf(r: StoredRow): Stored {
  return { version: r.version, createdVersion: r.created_version, originRegion: r.origin_region, deleted: r.deleted };
}

/** Rows stamped before creation stamps existed carry '': their own version stands in. */
const created = (s: { createdVersion: string; version: string }) => s.createdVersion || s.version;

/** Changes the collection horizon rules out, and the horizon of each table. */
interface Below {
  changes: Set<Normalized>;
  throughOf: (table: string) => string;
}

/** What an apply read and wrote, for judging each change (RowStore.judge). */
interface Gathered {
  before: Map<string, Stored>;
  below: Below;
  /** Per row, the change the batch writes (the greatest not ruled out). */
  newest: Map<string, Normalized>;
  /** The rows that outrank what was stored: written unless a concurrent writer got there first. */
  toWrite: Set<Row>;
  /** Rows written, by table and key. */
  written: Set<string>;
  changed: number;
}

/** A row's id in the row store's maps (stored states, rows written, rows a write has locked): table and key as the row store normalizes them. */
export function lockedId(table: string, key: string): string {
  return `${table}\u0000${key}`;
}

/** The stored states of rows this transaction holds the locks of and has read since (no need to read them again). */
function knownStates(changes: readonly Normalized[], locked: ReadonlyMap<string, Row | null>): Map<string, Stored> {
  const out = new Map<string, Stored>();
  for (const c of changes) {
    const row = locked.get(lockedId(c.table, c.rowKey));
    if (!row) continue;
    out.set(c.id, { ...stateOf({ version: String(row.version), row }), originRegion: String(row.origin_region ?? '') });
  }
  return out;
}

/** A deletion holds when the row (of the same create) is deleted, whichever tombstone is kept. */
function deletionHolds(change: MergeState, held: MergeState | undefined): boolean {
  return change.deleted && held?.deleted === true && held.createdVersion === change.createdVersion;
}

/**
 * A create whose row is here, as a later state of the very row it created (same creation stamp): an update
 * or a deletion written where the create had been applied got here first. The create is not lost: the row
 * exists because of it. (Judged superseded, an all_regions create answered 409, "not kept", while every
 * region held the credential, and a client that retried made a second one.) Every row of a create of
 * several counts (ApplyOptions.creates): its second row, judged superseded by a deletion of the credential
 * that got here first, made the create's status "superseded" and its idempotent replay a 409.
 */
function creationHolds(change: Normalized, held: MergeState | undefined): boolean {
  return change.creates && held?.createdVersion === change.state.createdVersion;
}

function finalState(before: Stored | undefined, newest: Normalized | undefined): Stored | undefined {
  if (!newest) return before;
  if (before && compareStates(newest.state, before) <= 0) return before;
  return { ...newest.state, originRegion: String(newest.row.origin_region ?? '') };
}

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
    // stamps existed, like the rows the migration stamped '' (see the migration and the README).
    createdVersion: typeof c.row.created_version === 'string' ? c.row.created_version : '',
    deleted: c.row.deleted_at !== null && c.row.deleted_at !== undefined,
    version: c.version,
  };
}

interface Normalized {
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

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function normalize(c: RowChange, sql: TableSql, creates = false): Normalized {
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
