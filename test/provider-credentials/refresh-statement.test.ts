/**
 * The refresh schedule every create writes (refreshStatement, sent with the create's commit) runs as a
 * prepared statement in a pipelined transaction: planned on every create it cost the backend ~40 µs more.
 */
import type { Pool } from 'pg';
import { poolOf } from '../../src/db/client';
import { refreshStatement } from '../../src/provider-credentials/store';
import { inPipeline } from '../../src/replication/pg-tx';
import { migratedDb, type MigratedDb } from '../support/migrated-db';

let m: MigratedDb;
let pool: Pool;
beforeAll(async () => {
  m = await migratedDb('refresh-statement');
  pool = poolOf(m.db);
});
afterAll(() => m?.close());

/** Sends the statement, then asks whether the connection holds it prepared (its success or its failure form). */
async function recordOnPipeline(id: string, outcome: Parameters<typeof refreshStatement>[2]): Promise<boolean> {
  // A PREPARE's text (pg_prepared_statements shows the whole query string that carried it).
  const columns = outcome.ok ? 'last_attempt_at, last_success_at,' : 'last_attempt_at, last_error,';
  const prepared = { sql: 'SELECT EXISTS (SELECT FROM pg_prepared_statements WHERE statement LIKE $1::text) AS found', values: [`%AS INSERT INTO metadata_refresh_state (credential_id, next_at, ${columns}%`] };
  const results = await inPipeline(pool, (tx) => tx.run([refreshStatement(id, new Date('2026-12-07T00:00:00Z'), outcome), prepared], true));
  return (results[1]?.[0] as { found: boolean } | undefined)?.found === true;
}

const stored = async (id: string) =>
  (await pool.query('SELECT next_at, last_error, last_error_code, consecutive_failures FROM metadata_refresh_state WHERE credential_id = $1', [id])).rows[0];

test('a success is written by a prepared statement, and schedules the next fetch', async () => {
  const id = '01a20906-0000-7000-8000-000000000011';
  expect(await recordOnPipeline(id, { ok: true })).toBe(true);
  expect(await stored(id)).toMatchObject({ next_at: new Date('2026-12-07T00:00:00Z'), last_error: null, consecutive_failures: 0 });
});

test('a failure is written by a prepared statement too, and counts the failures in a row', async () => {
  const id = '01a20906-0000-7000-8000-000000000012';
  const failed = { ok: false as const, code: 'http_status', message: "the IdP's answer: HTTP 503" };
  expect(await recordOnPipeline(id, failed)).toBe(true);
  await recordOnPipeline(id, failed);
  expect(await stored(id)).toMatchObject({ last_error: "the IdP's answer: HTTP 503", last_error_code: 'http_status', consecutive_failures: 2 });
});
