/**
 * Transactions on a plain pg connection, for the apply path. A change waited on with all_regions is on
 * the critical path from its apply in each region to its ack; the same statements through the ORM's
 * interactive transaction cost several times the round trips themselves (measured: 6.8 ms against 1.6 ms
 * for six statements). The row store only needs raw queries (`Queryable`), which this gives it.
 */
import { Pool } from 'pg';
import type { Queryable } from './row-store';

/** A small pool of the applier's own (its batches run one at a time; parked retries may run beside them). */
export function createApplyPool(databaseUrl: string): Pool {
  const pool = new Pool({ connectionString: databaseUrl, max: 2 });
  // A connection that dies while idle (a database restart) is dropped; the next checkout opens a new one.
  pool.on('error', () => undefined);
  return pool;
}

/** Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. */
export async function inTransaction<T>(pool: Pool, fn: (tx: Queryable) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    const tx: Queryable = {
      $queryRawUnsafe: async <R>(sql: string, ...values: unknown[]) => (await client.query(sql, values)).rows as R,
      $executeRawUnsafe: async (sql: string, ...values: unknown[]) => (await client.query(sql, values)).rowCount ?? 0,
    };
    const out = await fn(tx);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    // A failed ROLLBACK means the connection is gone or unusable: it is not put back in the pool.
    await client.query('ROLLBACK').catch(() => (broken = true));
    throw err;
  } finally {
    client.release(broken);
  }
}
