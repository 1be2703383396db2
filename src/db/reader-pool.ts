/**
 * A plain pg pool behind SqlReader's one method, for reads that need no ORM: the operator listener's thread
 * (which must not load the Prisma client) and /readyz's connection of its own on either port.
 */
import { Pool } from 'pg';
import type { SqlReader } from './client';
import { retryingReads } from './retrying-reads';
import { sessionConfig } from './session';

/**
 * /readyz's pool on each port: one connection that no other route uses. Shared with the admin routes' pool of
 * two, two status reads waiting on a lock (or a slow count) held both connections, and /readyz answered 503
 * "unreachable" after its 2 s bound while the database answered.
 */
export const READINESS_POOL_SIZE = 1;

export interface ReaderPool extends SqlReader {
  end(): Promise<void>;
}

/** `onError`: an idle connection the server closed (the pool replaces it; unheard, the error would end the process). */
export function readerPool(databaseUrl: string, max: number, onError: (err: Error) => void): ReaderPool {
  // Reads run again on another connection when a database restart ended the one they ran on (as the API's).
  const pool = retryingReads(new Pool({ ...sessionConfig(databaseUrl), max, connectionTimeoutMillis: 5000 }));
  pool.on('error', onError);
  return {
    $queryRawUnsafe: async <T>(sql: string, ...values: unknown[]) => (await pool.query(sql, values)).rows as T,
    end: () => pool.end(),
  };
}
