/**
 * Reads run again on another connection when the one they ran on was lost (see retryingReads). Apart from
 * client.ts so that the operator listener's thread, which has a plain pg pool and no ORM, can use it.
 */
import type { Pool } from 'pg';
import { isConnectionLost } from './pg-errors';

/**
 * One SELECT, nothing after it, or one with a WITH list that names no data-modifying statement: running
 * it again repeats no effect (a row lock it took ended with its statement, outside a transaction).
 * Anything else (several statements, a leading comment) is not run again.
 */
const READ_ONLY = /^\s*(?:SELECT\b|WITH\b(?![^;]*\b(?:INSERT|UPDATE|DELETE|MERGE)\b))[^;]*;?\s*$/i;
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
        await afterLostConnection(attempt);
      }
    }
  }) as Pool['query'];
  return pool;
}

/**
 * The wait before the `attempt`+1-th try after a lost connection: until after the I/O of this turn of the
 * event loop (the errors of the other connections the database ended at the same moment, read in the same
 * turn, have been heard by then and the pool has dropped them), and from the second loss on 10 ms more per
 * loss (the server ends its sessions one by one: a write ended with twelve idle connections met a second
 * dead one in about one run in two without it).
 */
export async function afterLostConnection(attempt: number): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  if (attempt > 1) await new Promise((resolve) => setTimeout(resolve, 10 * (attempt - 1)));
}
