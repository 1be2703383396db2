/**
 * Which statements retryingReads (src/db/retrying-reads.ts) runs again after a lost connection (reads only:
 * a write may have been done), and how connection errors map to the client's answer. A fake pool: the
 * cases (a write's connection lost mid-statement) cannot be made on demand with a real one.
 */
import type { Pool } from 'pg';
import { retryingReads } from '../../src/db/retrying-reads';
import { isConnectionLost, isConnectRefused, isTransient } from '../../src/db/pg-errors';
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

test("node-postgres's connection timeout is a connection refused (nothing was sent), not one lost under a statement", () => {
  // Its wording starts like the one of a socket closed under a statement ("Connection terminated"): taken
  // for lost, a connection that was never opened would be handled as a statement cut short on it.
  const timedOut = new Error('Connection terminated due to connection timeout');
  expect(isConnectRefused(timedOut)).toBe(true);
  expect(isConnectionLost(timedOut)).toBe(false);
  expect(isConnectionLost(new Error('Connection terminated unexpectedly'))).toBe(true);
});

test('55000 from a statement (object not in prerequisite state) is not a refused connection: only with the wording of a database not accepting connections', () => {
  const statement = Object.assign(new Error('cannot do that in the current state'), { code: '55000', severity: 'ERROR' });
  expect(isConnectRefused(statement)).toBe(false);
  const notAccepting = Object.assign(new Error('database "x" is not currently accepting connections'), { code: '55000', severity: 'FATAL' });
  expect(isConnectRefused(notAccepting)).toBe(true);
});

test('deadlock, serialization failure and lock timeout say "try again"; a statement timeout does not', () => {
  for (const code of ['40P01', '40001', '55P03']) expect(isTransient(Object.assign(new Error(code), { code, severity: 'ERROR' }))).toBe(true);
  expect(isTransient(Object.assign(new Error('canceling statement due to statement timeout'), { code: '57014', severity: 'ERROR' }))).toBe(false);
});
