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
import { compareStates, stateOf } from './merge-rule';
import type { Pipeline, Queryable, Statement } from './queryable';
import { RowApply, type ApplyOptions, type ApplyResult } from './row-apply';
import { RowGuesses } from './row-guesses';
import { columnSet, ident, lockAllStatement, lockedId, normalize, readTableSql, upsertFor, type TableSql } from './table-sql';
import type { OwnedBy, PartOf, ReplicatedTable, Row, RowChange } from './tables';

export type { Pipeline, Queryable, Statement } from './queryable';
export type { ApplyOptions, ApplyResult } from './row-apply';
export { compareStates, creatingOps, stateOf, type MergeState, type OpOutcome, type Winner } from './merge-rule';
export { isSchemaChange, lockedId } from './table-sql';

export class RowStore {
  private constructor(
    private sql: Map<string, TableSql>,
    /** The newest migration applied to this database when loaded: the schema version events carry. */
    private schemaVersion: string,
    private readonly db: Db,
    /** The replicated tables it was loaded with. */
    readonly tables: readonly ReplicatedTable[],
    /** Whether this database records a tombstone collection horizon (replication_horizon). */
    private hasHorizon: boolean,
  ) {
    this.applying = new RowApply({ db, guesses: this.guesses, sqlOf: (tableName) => this.get(tableName), hasHorizon: () => this.hasHorizon });
  }

  /**
   * Changes not applied because their row's tombstone was collected here (see apply), since this store
   * was loaded: those of committed applies only (countBelowHorizon).
   */
  get belowHorizon(): number {
    return this.below;
  }

  private below = 0;

  /**
   * Counts the changes an apply ruled out (ApplyResult.belowHorizon), once its transaction has committed:
   * an apply rolled back and tried again (a serialization failure, a batch retried event by event) ruled
   * them out again, and one that never commits ruled nothing out.
   */
  countBelowHorizon(n: number): void {
    this.below += n;
  }

  /** Whether the database has replication_check (a local write's upserts wait for its commit: deferredPut). */
  private checkFn = false;

  /** Rows as this process last saw them committed: a local write's guess (see guess()). */
  private readonly guesses = new RowGuesses();

  /** The apply of row changes (see apply). */
  private readonly applying: RowApply;

  /** Reads each table's columns from the database, and checks the replication columns exist. */
  static async load(db: Db, tables: readonly ReplicatedTable[]): Promise<RowStore> {
    const { sql, schema, hasHorizon, checkFn } = await readTableSql(db, tables);
    const store = new RowStore(sql, schema, db, tables, hasHorizon);
    store.checkFn = checkFn;
    return store;
  }

  /**
   * Reads the column lists again (after a migration: a dropped column would fail every cached statement,
   * an added one would be left out of every write). Concurrent callers share one reload.
   */
  reload(): Promise<void> {
    this.reloading ??= readTableSql(this.db, this.tables)
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

  /** The tables declared part of `tableName`'s rows (ReplicatedTable.partOf), in the order the features list them. */
  partsOf(tableName: string): Array<ReplicatedTable & { partOf: PartOf }> {
    return this.tables.filter((t): t is ReplicatedTable & { partOf: PartOf } => t.partOf?.table === tableName);
  }

  /** The tables whose rows belong to `tableName`'s rows through a column (ReplicatedTable.ownedBy), in the order the features list them. */
  ownedOf(tableName: string): Array<ReplicatedTable & { ownedBy: OwnedBy }> {
    return this.tables.filter((t): t is ReplicatedTable & { ownedBy: OwnedBy } => t.ownedBy?.table === tableName);
  }

  /** The SQL type of the table's key column (uuid, text, ...), to cast parameters compared with it. */
  keyTypeOf(tableName: string): string {
    return this.get(tableName).keyType;
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

  /** A row read (or written) as JSON text: parsed, and kept as the next guess of its key (unless its table is unguessed). */
  private seen(tableName: string, key: string, text: string | null): Row | null {
    if (text === null) return null;
    const row = JSON.parse(text) as Row;
    if (typeof row.version === 'string' && !this.sql.get(tableName)?.table.unguessed) this.guesses.keep(this.lockedIdOf(tableName, key), text, row.version);
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
      // The row as written comes back (as JSON text) to be the next guess of its key (see guess()); not a
      // row of an unguessed table: building and sending that copy of a metadata document cost Postgres and
      // this process more than the round trip a later lock of it saves (docs/performance.md, 39th session).
      sql: `WITH w AS (${upsertFor(s, columnSet(s, c), s.table.unguessed ? 'NULL::text AS row' : 'to_jsonb(cur)::text AS row')}) SELECT replication_check((SELECT count(*) FROM w) = 1, '40001', $2::text), (SELECT row FROM w) AS row`,
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
    return this.applying.apply(tx, changes, locked, opts);
  }
}
