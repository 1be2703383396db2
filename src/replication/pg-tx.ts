/**
 * Transactions on a plain pg connection, for the apply path and local writes (replicator.ts). A change
 * waited on with all_regions is on the critical path from its apply in each region to its ack; the same
 * statements through the ORM's interactive transaction cost several times the round trips themselves
 * (measured: 6.8 ms against 1.6 ms for six statements). Here the statements go several to a round trip
 * (inPipeline): an apply is one round trip (BEGIN, the locks, one read-and-upsert statement per table,
 * COMMIT) or, for a batch that needs to see what is stored before it knows what to write, two (see
 * RowStore.apply); a local write two (see Replicator.write), a create one.
 */
import { createHash } from 'node:crypto';
import { Pool, type PoolClient, type QueryResult } from 'pg';
import { sessionConfig } from '../db/session';
import { isConnectionLost } from '../db/pg-errors';
import type { Pipeline, Queryable, Statement } from './row-store';

/** A small pool of the applier's own (two batches at a time; a parked retry waits for one of them). */
export function createApplyPool(databaseUrl: string, max = 2): Pool {
  const pool = new Pool({ ...sessionConfig(databaseUrl), max });
  // A connection that dies while idle (a database restart) is dropped; the next checkout opens a new one.
  pool.on('error', () => undefined);
  return pool;
}

export interface PipelineOptions {
  /**
   * The longest the transaction may run, from checkout. Past it, no COMMIT is sent, and a round trip still
   * running is cut off with its connection. Cutting the connection alone does not stop the server: a
   * batch that waits on a lock, or runs, goes on to its COMMIT once it can (Postgres notices a closed
   * client only when it next writes to it). So the batch that carries COMMIT also carries, just before it,
   * a check of the server's own clock (deadlineCheck): a transaction past its bound fails there and is
   * rolled back, whether or not its client is still listening. Default: no bound.
   */
  timeoutMs?: number;
}

/** Time the server keeps for COMMIT and the reply after its deadline check (see deadlineCheck). */
const COMMIT_MARGIN_MS = 2000;

/** Marks the error of a failed deadline check (a cast of text that is not a number: SQLSTATE 22P02). */
const DEADLINE_MARKER = 'transaction past its time bound';

/**
 * A statement that fails unless the server's clock is within `ms` of the transaction's start (BEGIN),
 * with no function of the schema (the applier's and the tests' pools use it too). The failing branch casts
 * a text built from clock_timestamp() to int: a constant would be folded, and fail, when planned. Prepared
 * (planned once per connection): planned every time it cost Postgres ~40–60 µs per transaction, prepared
 * ~15 (a loop of one-row updates, alternating).
 */
function deadlineCheck(ms: number): Statement {
  return {
    sql: `SELECT CASE WHEN clock_timestamp() <= transaction_timestamp() + make_interval(secs => $1::float8) THEN 0 ELSE ('${DEADLINE_MARKER} at ' || clock_timestamp()::text)::int END`,
    values: [Math.max(0, Math.floor(ms)) / 1000],
    prepare: true,
  };
}

function isDeadlineError(err: unknown): boolean {
  return (err as { code?: string } | null)?.code === '22P02' && String((err as Error).message).includes(DEADLINE_MARKER);
}

/**
 * A transaction of inPipeline that outran its bound (timeoutMs). `commitSent`: its COMMIT had gone to the
 * server, which may have committed it (the client stopped listening: the process stalled past the bound,
 * say); otherwise it was rolled back. `changeId`: the replicated write's change, set by the replicator when
 * the commit was sent (the caller can follow it up).
 */
export class TransactionPastBound extends Error {
  changeId: string | null = null;
  /** `checkedOutAt`: when the transaction's connection was checked out (Date.now()); its backend had started by then. */
  constructor(readonly boundMs: number, readonly commitSent: boolean, readonly backendPid: number | null = null, readonly checkedOutAt = 0) {
    super(`the transaction ran past its ${boundMs} ms and ${commitSent ? 'its commit was not confirmed' : 'was rolled back'}`);
    this.name = 'TransactionPastBound';
  }
}

/**
 * A transaction of inPipeline whose connection was lost under it (the database restarted, or ended the
 * session): rolled back if its COMMIT had not been sent (`commitSent` false); otherwise it may have
 * committed, and what the database did is found out as for TransactionPastBound (endBackend, then a look).
 */
export class ConnectionLost extends Error {
  /** The replicated write's change, when its outcome could not be found out (set by the replicator). */
  changeId: string | null = null;
  constructor(readonly commitSent: boolean, readonly backendPid: number | null, readonly checkedOutAt: number, cause: unknown) {
    super(`the transaction's database connection was lost (${String((cause as Error | null)?.message ?? cause).slice(0, 200)}); ${commitSent ? 'its commit was not confirmed' : 'it was rolled back'}`, { cause });
    this.name = 'ConnectionLost';
  }
}

/**
 * Ends the server side of a transaction whose client gave up on it (TransactionPastBound: the connection
 * was closed under it, which its backend only notices once its statements end, and one waiting on a lock
 * waits on): terminates its backend and waits, up to `waitMs`, until it is gone. True once it is: whatever
 * it committed is visible then, and nothing more will be. False when that could not be made sure.
 */
export async function endBackend(pool: Pool, pid: number, checkedOutAt: number, waitMs = 5000): Promise<boolean> {
  // Only the backend of that connection: one that started before it was checked out (by the server's clock:
  // that many seconds ago, less one), so a later backend that reused the pid once it exited is left alone.
  // It lived at least until the bound, which is longer.
  const ours = 'pid = $1 AND backend_start <= now() - make_interval(secs => greatest(0, $2::float8 - 1))';
  const since = () => (Date.now() - checkedOutAt) / 1000;
  try {
    await pool.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE ${ours}`, [pid, since()]);
    for (const until = Date.now() + waitMs; Date.now() < until; await new Promise((r) => setTimeout(r, 50))) {
      if ((await pool.query(`SELECT 1 FROM pg_stat_activity WHERE ${ours}`, [pid, since()])).rowCount === 0) return true;
    }
  } catch {
    // the database cannot be asked: not known
  }
  return false;
}

/** A transaction of inPipeline: a Pipeline, and raw queries one round trip each (see queryable). */
export interface PipelineTx extends Pipeline {
  /** Like run, with each statement's full result (its row count too). */
  send(statements: readonly Statement[], last?: boolean): Promise<QueryResult[]>;
}

/**
 * Runs `fn` in one transaction whose statements go several to a round trip (a Pipeline): BEGIN goes with
 * the first batch and COMMIT with the batch sent as `last` (or on its own once `fn` resolves). A batch is
 * one simple-protocol query of several statements, so its parameters are written into it as literals
 * (inlineParameters); each statement still runs on its own snapshot, after the one before it, and an
 * error stops the batch and rolls the transaction back.
 */
export async function inPipeline<T>(pool: Pool, fn: (tx: PipelineTx) => Promise<T>, opts: PipelineOptions = {}): Promise<T> {
  // A connection closed while it was being opened (a database going away, a pooler): nothing was sent.
  const client = await pool.connect().catch((err: unknown) => {
    throw isConnectionLost(err) ? new ConnectionLost(false, null, Date.now(), err) : err;
  });
  const txn = new PipelinedTransaction(client, opts.timeoutMs);
  try {
    const out = await fn(txn.tx);
    if (!txn.ended) await txn.tx.run([], true);
    return out;
  } catch (err) {
    if (txn.begun && !txn.broken) await client.query('ROLLBACK').catch(() => (txn.broken = true));
    if (txn.expired) throw txn.pastBound();
    throw err;
  } finally {
    txn.release();
  }
}

/** One transaction of inPipeline: its checked-out connection, how far it got, and its round trips (send). */
class PipelinedTransaction {
  readonly checkedOutAt = Date.now();
  begun = false;
  ended = false;
  broken = false;
  expired = false;
  // Whether COMMIT went to the server, and whether the server refused it (its deadline check): then the
  // transaction is known to be rolled back.
  private commitSent = false;
  private refusedByServer = false;
  // How long the transaction may run on the server's clock from its BEGIN (set when BEGIN is sent).
  private serverBoundMs: number | null = null;
  // A connection that dies while checked out between two round trips (a database restart) emits an
  // error with no query to reject: caught here, and the next round trip fails instead.
  private readonly onError = () => (this.broken = true);
  private readonly timer: ReturnType<typeof setTimeout> | null;
  /** What `fn` is given. */
  readonly tx: PipelineTx = {
    send: (statements, last) => this.send(statements, last),
    run: async (statements, last = false) => (await this.send(statements, last)).map((r) => r.rows as unknown[]),
  };

  constructor(private readonly client: PoolClient, private readonly timeoutMs: number | undefined) {
    client.on('error', this.onError);
    // Past the bound the connection is closed under whatever runs: its query fails, and nothing commits.
    this.timer = timeoutMs === undefined ? null : setTimeout(() => {
      this.expired = this.broken = true;
      (client as PoolClient & { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
    }, timeoutMs);
  }

  pastBound(): TransactionPastBound {
    return new TransactionPastBound(this.timeoutMs ?? 0, this.commitSent && !this.refusedByServer, this.backendPid(), this.checkedOutAt);
  }

  /** Gives the connection back to the pool; a broken one is dropped. */
  release(): void {
    if (this.timer) clearTimeout(this.timer);
    this.client.off('error', this.onError);
    this.client.release(this.broken);
  }

  private backendPid(): number | null {
    return (this.client as PoolClient & { processID?: number | null }).processID ?? null;
  }

  /** One round trip: `statements` (after BEGIN if it is the first; before COMMIT if `last`), each one's result. */
  private async send(statements: readonly Statement[], last = false): Promise<QueryResult[]> {
    this.checkOpen();
    const client = this.client;
    const texts: string[] = [];
    // Statements of this registry the connection may hold under names it no longer knows are dropped first,
    // inside the transaction: before BEGIN they would run in an implicit transaction of the database's
    // default isolation, after which BEGIN ISOLATION LEVEL fails (25001) on every transaction of this
    // connection. DEALLOCATE is not transactional, so a rollback does not bring them back.
    const reset = this.begun ? [] : preparedStatements.reset(client);
    // Where each statement's own result is (a PREPARE before it has one too).
    const at: number[] = [];
    const preparing: string[] = [];
    try {
      if (!this.begun) this.begin(texts, reset);
      for (const st of statements) {
        const text = preparedStatements.text(client, st, texts, preparing);
        at.push(texts.length);
        texts.push(text);
      }
    } catch (err) {
      if (reset.length) preparedStatements.unknown(client); // the DEALLOCATE was never sent
      throw err;
    }
    if (last) {
      if (this.serverBoundMs !== null) texts.push(preparedStatements.text(client, deadlineCheck(this.serverBoundMs), texts, preparing));
      texts.push('COMMIT');
    }
    this.begun = true;
    this.ended = last;
    if (last) this.commitSent = true;
    try {
      const results = await simpleQuery(client, texts);
      preparedStatements.done(client, preparing);
      return at.map((i) => results[i] as QueryResult);
    } catch (err) {
      // Whether a PREPARE or the DEALLOCATE of this batch took effect is not known: the connection starts
      // its next transaction by dropping this registry's statements (see preparedStatements.reset).
      if (preparing.length || reset.length) preparedStatements.unknown(client);
      throw this.failure(err);
    }
  }

  /** Refuses a round trip that cannot be sent. */
  private checkOpen(): void {
    if (this.ended) throw new Error('this transaction has ended');
    if (this.expired) throw this.pastBound();
    // The connection died between two round trips (its error event): nothing of this batch can be sent.
    if (this.broken) throw new ConnectionLost(false, this.backendPid(), this.checkedOutAt, new Error('the connection failed between two round trips'));
  }

  /** The start of the first batch; sets the bound the server checks before COMMIT (deadlineCheck). */
  private begin(texts: string[], reset: readonly string[]): void {
    // READ COMMITTED whatever the database's default: each statement's snapshot is taken after the
    // locks the statements before it waited for.
    texts.push('BEGIN ISOLATION LEVEL READ COMMITTED', ...reset);
    if (this.timeoutMs !== undefined) {
      // What is left of the bound when BEGIN leaves, less the time COMMIT and its reply may take: the
      // server refuses to commit later than the client would still be listening.
      const left = this.timeoutMs - (Date.now() - this.checkedOutAt);
      this.serverBoundMs = left - Math.min(COMMIT_MARGIN_MS, left / 10);
    }
  }

  /** What a failed round trip throws: a deadline the server refused, a lost connection, or the error itself. */
  private failure(err: unknown): unknown {
    if (isDeadlineError(err)) {
      this.expired = true;
      this.refusedByServer = true;
      return this.pastBound();
    }
    // Any socket error (EHOSTUNREACH, ETIMEDOUT…) is one of a connection that was open: lost, not refused.
    if (!this.expired && (isConnectionLost(err) || typeof (err as { syscall?: unknown } | null)?.syscall === 'string')) {
      this.broken = true;
      return new ConnectionLost(this.commitSent, this.backendPid(), this.checkedOutAt, err);
    }
    return err;
  }
}

/**
 * Raw queries on a pipelined transaction, one round trip each (the first carries BEGIN): what the row
 * store and the features' writes run (Queryable), without an ORM's interactive transaction around them.
 * `pending`: statements held back to go with the next round trip (each query sends them first, in order).
 */
export function queryable(tx: PipelineTx, pending: Statement[] = []): Queryable {
  const send = async (st: Statement) => {
    const held = pending.splice(0);
    return (await tx.send([...held, st]))[held.length];
  };
  return {
    batch: async (statements) => {
      const held = pending.splice(0);
      return (await tx.send([...held, ...statements])).slice(held.length).map((r) => r.rows as unknown[]);
    },
    $queryRawUnsafe: async <R = unknown>(sql: string, ...values: unknown[]) => ((await send({ sql, values }))?.rows ?? []) as R,
    $executeRawUnsafe: async (sql: string, ...values: unknown[]) => (await send({ sql, values, exec: true }))?.rowCount ?? 0,
  };
}

/**
 * Server-side prepared statements of the pooled connections (Statement.prepare): each connection PREPAREs
 * a statement text the first time a batch of its carries it (in that batch, just before its first
 * EXECUTE) under a name derived from the text, and EXECUTEs it from then on. Measured on the upsert of a
 * local write: 135 µs of the Postgres backend's CPU instead of 250 µs when planned every time.
 */
const DEALLOCATE_OWN =
  "DO $$DECLARE n text; BEGIN FOR n IN SELECT name FROM pg_prepared_statements WHERE name LIKE 'r\\_%' LOOP EXECUTE format('DEALLOCATE %I', n); END LOOP; END$$";

const preparedStatements = {
  byClient: new WeakMap<PoolClient, Set<string>>(),
  /** Connections whose prepared statements are not known (a batch with a PREPARE failed). */
  dirty: new WeakSet<PoolClient>(),

  /**
   * What a connection sends at the start of its next transaction (after BEGIN) when its statements are unknown: drop the ones of
   * this registry (named r_…) that exist. Not DEALLOCATE ALL: the pool's connections also carry statements
   * the pg driver prepared by name for others (findCredential's), which the driver believes still there.
   */
  reset(client: PoolClient): string[] {
    if (!this.dirty.has(client)) return [];
    this.dirty.delete(client);
    this.byClient.get(client)?.clear();
    return [DEALLOCATE_OWN];
  },

  /** The text that runs `st` on `client`: as sent, or an EXECUTE (its PREPARE pushed onto `texts` first). */
  text(client: PoolClient, st: Statement, texts: string[], preparing: string[]): string {
    if (!st.prepare) return inlineParameters(st);
    const name = this.nameOf(st.sql);
    const known = this.byClient.get(client) ?? new Set<string>();
    this.byClient.set(client, known);
    if (!known.has(name) && !preparing.includes(name)) {
      texts.push(`PREPARE ${name} AS ${st.sql}`);
      preparing.push(name);
    }
    return st.values.length ? `EXECUTE ${name}(${st.values.map(literal).join(', ')})` : `EXECUTE ${name}`;
  },

  /** Statement names by text: a few dozen texts, each hashed once instead of on every transaction. */
  names: new Map<string, string>(),

  nameOf(sql: string): string {
    let name = this.names.get(sql);
    if (name === undefined) {
      name = `r_${createHash('sha1').update(sql).digest('hex').slice(0, 20)}`;
      // The texts are built from table and column lists: bounded, unless a caller prepares ad-hoc SQL.
      if (this.names.size >= 1000) this.names.clear();
      this.names.set(sql, name);
    }
    return name;
  },

  done(client: PoolClient, names: readonly string[]): void {
    const known = this.byClient.get(client);
    for (const n of names) known?.add(n);
  },

  unknown(client: PoolClient): void {
    this.dirty.add(client);
  },
};

/** The result of each statement of a multi-statement simple query, in order. */
async function simpleQuery(client: PoolClient, texts: string[]): Promise<QueryResult[]> {
  const res = (await client.query(texts.join(';\n'))) as QueryResult | QueryResult[];
  return Array.isArray(res) ? res : [res];
}

/** A statement with its $n parameters written in as literals (their casts stay in the SQL). */
export function inlineParameters(st: Statement): string {
  return st.sql.replace(/\$(\d+)/g, (_m, n: string) => {
    if (Number(n) < 1 || Number(n) > st.values.length) throw new Error(`statement has no parameter $${n}`);
    return literal(st.values[Number(n) - 1]);
  });
}

/**
 * A string literal. An E'' literal, so that it means the same whatever standard_conforming_strings says:
 * backslashes doubled, quotes doubled. (pg's escapeLiteral does the same a character at a time, which
 * costs milliseconds on a batch's megabyte of JSON; these are two native replaces.)
 */
function stringLiteral(s: string): string {
  if (s.includes('\0')) throw new Error('a NUL character cannot be written into SQL'); // nor stored in text or jsonb
  return `E'${s.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

function literal(v: unknown): string {
  if (v === null || v === undefined) return 'NULL';
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error(`cannot write ${v} into SQL`);
    return `(${v})`; // parenthesized: "1-$1" with -5 must not become the comment "1--5"
  }
  if (typeof v === 'bigint') return `(${v})`;
  if (typeof v === 'boolean') return v ? 'TRUE' : 'FALSE';
  if (v instanceof Date) return stringLiteral(v.toISOString());
  // A one-dimensional array literal: every element quoted, backslash and quote escaped inside it.
  if (Array.isArray(v)) return stringLiteral(`{${v.map((e) => (e === null || e === undefined ? 'NULL' : `"${String(e).replace(/[\\"]/g, (c) => `\\${c}`)}"`)).join(',')}}`);
  if (typeof v === 'string') return stringLiteral(v);
  throw new Error(`cannot write a ${typeof v} into SQL`);
}
