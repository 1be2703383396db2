import { PrismaPg } from '@prisma/adapter-pg';
import { Pool } from 'pg';
import { PrismaClient } from '../generated/prisma/client';
import { isConnectionLost } from './pg-errors';
import { sessionConfig } from './session';

export type Db = PrismaClient;
/**
 * Raw SQL reads, all the operator's status queries need: a Prisma client, or a plain pg pool in the operator
 * listener's thread (src/operator), where a second Prisma client would cost ~90 MB.
 */
export interface SqlReader {
  $queryRawUnsafe<T = unknown>(query: string, ...values: unknown[]): Promise<T>;
}

/** How long a request waits for a free connection before it is refused as overload (as Prisma's maxWait). */
export const POOL_WAIT_MS = 10_000;

/** The pg pool under each client createDb made (see poolOf). */
const pools = new WeakMap<Db, Pool>();

export function createDb(databaseUrl: string, opts: { poolSize?: number } = {}): Db {
  const pool = retryingReads(new Pool({ ...sessionConfig(databaseUrl), max: opts.poolSize ?? 10, connectionTimeoutMillis: POOL_WAIT_MS }));
  const db = new PrismaClient({ adapter: new PrismaPg(pool, { disposeExternalPool: true }) });
  pools.set(db, pool);
  return db;
}

/**
 * The pg pool the client's queries run on. The hot paths use it directly (a credential read, a write's
 * transaction): through the ORM the same statement costs several times the CPU (measured: a primary-key
 * read took ~100 µs of CPU through findFirst, ~65 µs through $queryRaw and ~27 µs on the pool). Everything
 * else goes through Prisma. The pool is shared, so its size still bounds the region's connections.
 */
export function poolOf(db: Db): Pool {
  const pool = pools.get(db);
  if (!pool) throw new Error('this database client was not made by createDb');
  return pool;
}

/** A statement that only reads: SELECT without a locking clause (nothing of it outlives its statement). */
const READ_ONLY = /^\s*SELECT\b(?![\s\S]*\bFOR\s+(?:NO\s+KEY\s+)?(?:UPDATE|SHARE|KEY\s+SHARE)\b)/i;
/** Connections a read is tried on before its error is the request's: the pool's idle ones may all be dead. */
const READ_ATTEMPTS = 3;

/**
 * Makes the pool's own `query` (one statement, autocommit: the hot-path reads and every Prisma query
 * outside a transaction) run a read again on another connection when the one it ran on was lost under
 * it. After a database restart or an administrator's pg_terminate_backend, every idle connection of the
 * pool is dead, and the pool learns it only as each one's error event is processed: a request checking
 * one out before then failed with a 500 (measured: 25 of 100 reads sent as the sessions were ended). A
 * read has no effect to repeat; a write is left to its caller (isConnectionLost), and so is a
 * transaction (pool.connect).
 */
export function retryingReads(pool: Pool): Pool {
  const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
  const text = (q: unknown) => (typeof q === 'string' ? q : typeof (q as { text?: unknown } | null)?.text === 'string' ? (q as { text: string }).text : '');
  pool.query = (async (...args: unknown[]) => {
    const submittable = typeof (args[0] as { submit?: unknown } | null)?.submit === 'function';
    if (submittable || typeof args[args.length - 1] === 'function' || !READ_ONLY.test(text(args[0]))) return query(...args);
    for (let attempt = 1; ; attempt++) {
      try {
        return await query(...args);
      } catch (err) {
        if (attempt >= READ_ATTEMPTS || !isConnectionLost(err)) throw err;
        // After the I/O of this turn: the other dead connections' errors, read in the same turn, have been
        // heard by then and the pool has dropped them.
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
  }) as Pool['query'];
  return pool;
}
