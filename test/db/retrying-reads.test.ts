/**
 * Which statements retryingReads (src/db/retrying-reads.ts) runs again after a lost connection (reads only:
 * a write may have been done), and how connection errors map to the client's answer. A fake pool: the
 * cases (a write's connection lost mid-statement) cannot be made on demand with a real one.
 */
import type { Pool } from 'pg';
import { retryingReads } from '../../src/db/retrying-reads';
import { isConnectionLost, isConnectRefused } from '../../src/db/pg-errors';
import { asAppError } from '../../src/http/errors';

const lost = () => Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01', severity: 'FATAL' });

/** A pool whose query fails with `first` once, then answers. */
function fakePool(first: Error) {
  const calls: string[] = [];
  const pool = {
    query: async (q: string) => {
      calls.push(q);
      if (calls.length === 1) throw first;
      return { rows: [], rowCount: 0 };
    },
  } as unknown as Pool;
  return { pool: retryingReads(pool), calls };
}

test('a read whose connection was lost runs again', async () => {
  const { pool, calls } = fakePool(lost());
  await expect(pool.query('SELECT 1')).resolves.toBeDefined();
  expect(calls).toHaveLength(2);
});

test.each([
  ['INSERT INTO t (a) VALUES (1)'],
  ['UPDATE t SET a = 2'],
  ['DELETE FROM t'],
  ['WITH moved AS (DELETE FROM t RETURNING *) SELECT count(*) FROM moved'],
  ['WITH x AS (INSERT INTO t (a) VALUES (1) RETURNING a) SELECT a FROM x'],
  ['SELECT 1; DELETE FROM t'],
])('a write whose connection was lost is NOT run again (it may have been done): %s', async (sql) => {
  const { pool, calls } = fakePool(lost());
  await expect(pool.query(sql)).rejects.toMatchObject({ code: '57P01' });
  expect(calls).toHaveLength(1);
});

test('a read that failed for its own reasons (a statement timeout, a syntax error) is not run again', async () => {
  for (const code of ['57014', '42601']) {
    const { pool, calls } = fakePool(Object.assign(new Error('statement failed'), { code, severity: 'ERROR' }));
    await expect(pool.query('SELECT pg_sleep(10)')).rejects.toMatchObject({ code });
    expect(calls).toHaveLength(1);
  }
});

test('a database starting up or shutting down refuses with 57P03: a 503 with Retry-After, nothing done', () => {
  const starting = Object.assign(new Error('the database system is starting up'), { code: '57P03', severity: 'FATAL' });
  expect(isConnectRefused(starting)).toBe(true);
  const answer = asAppError(starting);
  expect({ status: answer?.status, retry: answer?.extra.retryAfterSeconds }).toEqual({ status: 503, retry: 2 });
});

test('a socket reset by the peer (ECONNRESET) is a lost connection: a 503, not a 500', () => {
  const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET', syscall: 'read' });
  expect(isConnectionLost(reset)).toBe(true);
  expect(asAppError(reset, 'GET')?.status).toBe(503);
});
