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
   * The longest the transaction may run, from checkout: past it, no COMMIT is sent and a statement still
   * running is cut off with its connection (the server rolls the transaction back). Default: no bound.
   */
  timeoutMs?: number;
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
  const client = await pool.connect();
  let begun = false;
  let ended = false;
  let broken = false;
  let expired = false;
  // A connection that dies while checked out between two round trips (a database restart) emits an
  // error with no query to reject: caught here, and the next round trip fails instead.
  const onError = () => (broken = true);
  client.on('error', onError);
  // Past the bound the connection is closed under whatever runs: its query fails, and nothing commits.
  const timer = opts.timeoutMs === undefined ? null : setTimeout(() => {
    expired = broken = true;
    (client as PoolClient & { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
  }, opts.timeoutMs);
  const send = async (statements: readonly Statement[], last = false): Promise<QueryResult[]> => {
    if (ended) throw new Error('this transaction has ended');
    if (expired) throw new Error(`the transaction ran past its ${opts.timeoutMs} ms and was rolled back`);
    const texts: string[] = [];
    // READ COMMITTED whatever the database's default: each statement's snapshot is taken after the
    // locks the statements before it waited for.
    if (!begun) texts.push(...preparedStatements.reset(client), 'BEGIN ISOLATION LEVEL READ COMMITTED');
    // Where each statement's own result is (a PREPARE before it has one too).
    const at: number[] = [];
    const preparing: string[] = [];
    for (const st of statements) {
      const text = preparedStatements.text(client, st, texts, preparing);
      at.push(texts.length);
      texts.push(text);
    }
    if (last) texts.push('COMMIT');
    begun = true;
    ended = last;
    try {
      const results = await simpleQuery(client, texts);
      preparedStatements.done(client, preparing);
      return at.map((i) => results[i] as QueryResult);
    } catch (err) {
      // Whether a PREPARE of this batch took effect is not known: the connection starts its next
      // transaction by dropping this registry's statements (see preparedStatements.reset).
      if (preparing.length) preparedStatements.unknown(client);
      throw err;
    }
  };
  const tx: PipelineTx = {
    send,
    run: async (statements, last = false) => (await send(statements, last)).map((r) => r.rows as unknown[]),
  };
  try {
    const out = await fn(tx);
    if (!ended) await tx.run([], true);
    return out;
  } catch (err) {
    if (begun && !broken) await client.query('ROLLBACK').catch(() => (broken = true));
    if (expired) throw new Error(`the transaction ran past its ${opts.timeoutMs} ms and was rolled back`);
    throw err;
  } finally {
    if (timer) clearTimeout(timer);
    client.off('error', onError);
    client.release(broken);
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
   * What a connection sends before its next transaction when its statements are unknown: drop the ones of
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
