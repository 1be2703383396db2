import { PrismaPg } from '@prisma/adapter-pg';
import { Pool } from 'pg';
import { PrismaClient } from '../generated/prisma/client';
import { retryingReads } from './retrying-reads';
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
