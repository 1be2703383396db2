/**
 * The outbox backlog figures shown by GET /admin/replication and the replication_outbox_* gauges
 * (outboxBacklog): rows in each state of a real migrated outbox, and each figure read through the partial
 * index of its state, not a scan of the whole table.
 */
import { randomUUID } from 'node:crypto';
import { poolOf } from '../../src/db/client';
import { outboxBacklog } from '../../src/replication/outbox-backlog';
import { migratedDb, type MigratedDb } from '../support/migrated-db';

let m: MigratedDb;

beforeAll(async () => {
  m = await migratedDb('outboxbacklog');
  // Per state: how many rows, and how long ago they were created.
  const rows: [published: boolean, confirmed: boolean, age: string][] = [
    [false, false, '5 minutes'],
    [false, false, '10 minutes'],
    [true, false, '1 minute'],
    [true, true, '20 minutes'],
    [true, true, '30 minutes'],
    [true, true, '40 minutes'],
  ];
  for (const [published, confirmed, age] of rows) {
    await poolOf(m.db).query(
      `INSERT INTO replication_outbox (change_id, event, created_at, published_at, confirmed_at)
       VALUES ($1, '{}'::jsonb, now() - $2::interval, CASE WHEN $3 THEN now() END, CASE WHEN $4 THEN now() END)`,
      [randomUUID(), age, published, confirmed],
    );
  }
}, 60_000);
afterAll(() => m.close());

test('unpublished and unconfirmed rows are counted apart, confirmed ones not at all; the oldest unpublished one only when asked', async () => {
  const all = await outboxBacklog(m.db, { oldest: true });
  expect({ unpublished: all.unpublished, unconfirmed: all.unconfirmed }).toEqual({ unpublished: 2, unconfirmed: 1 });
  expect(Date.now() - (all.oldestUnpublished as Date).getTime()).toBeGreaterThanOrEqual(10 * 60_000 - 5000);
  expect(Date.now() - (all.oldestUnpublished as Date).getTime()).toBeLessThan(11 * 60_000);
  expect(await outboxBacklog(m.db)).toEqual({ unpublished: 2, unconfirmed: 1, oldestUnpublished: null });
});

test('each figure is read through a partial index of the outbox, never by reading the whole table', async () => {
  const pool = poolOf(m.db);
  const client = await pool.connect();
  try {
    // Sequential scans priced out: on a table this small the planner would scan it whatever its indexes.
    await client.query('BEGIN');
    await client.query('SET LOCAL enable_seqscan = off');
    const plan = (await client.query(`EXPLAIN ${(await captured()).sql}`)).rows.map((r: { 'QUERY PLAN': string }) => r['QUERY PLAN']).join('\n');
    await client.query('ROLLBACK');
    expect(plan).not.toMatch(/Seq Scan/);
    expect(plan.match(/replication_outbox_(unpublished|unconfirmed)_idx/g)?.length).toBe(3);
  } finally {
    client.release();
  }
});

/** The statement outboxBacklog sends (with the oldest unpublished row asked for). */
async function captured(): Promise<{ sql: string }> {
  let sql = '';
  await outboxBacklog({ $queryRawUnsafe: async (q: string) => ((sql = q), []) as never }, { oldest: true });
  return { sql };
}
