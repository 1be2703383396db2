/**
 * The outbox's published mark rewrites its row on the row's own page (the table's fillfactor leaves room
 * there): on the same page Postgres logs only the bytes that changed, on another page the whole new
 * version, the signed event included. Real migrated schema; the marks by recordDeliveries, as the fast
 * path and the relay record them.
 */
import { randomUUID } from 'node:crypto';
import { poolOf } from '../../src/db/client';
import { recordDeliveries } from '../../src/replication/delivery';
import { migratedDb, type MigratedDb } from '../support/migrated-db';

let m: MigratedDb;
beforeAll(async () => {
  m = await migratedDb('outboxpages');
}, 60_000);
afterAll(() => m.close());

/** Each row's current version: its page (the block of its ctid). */
async function pages(ids: string[]): Promise<Map<string, string>> {
  const { rows } = await poolOf(m.db).query<{ change_id: string; page: string }>(
    `SELECT change_id::text, (ctid::text::point)[0]::text AS page FROM replication_outbox WHERE change_id = ANY($1::uuid[])`,
    [ids],
  );
  return new Map(rows.map((r) => [r.change_id, r.page]));
}

test('marking rows published keeps each on the page it was inserted in, with the pages full of PATCH-sized events', async () => {
  // A PATCH's signed event is ~1 KB: 40 of them fill several 8 KB pages.
  const payload = 'x'.repeat(900);
  const ids = Array.from({ length: 40 }, () => randomUUID());
  for (const id of ids) {
    await poolOf(m.db).query('INSERT INTO replication_outbox (change_id, event, org_id) VALUES ($1::uuid, $2::jsonb, $3::uuid)', [
      id,
      JSON.stringify({ changeId: id, ops: [{ row: { label: payload } }] }),
      randomUUID(),
    ]);
  }
  const inserted = await pages(ids);
  expect(new Set(inserted.values()).size).toBeGreaterThan(4);
  await recordDeliveries(m.db, ids.map((id) => ({ changeId: id, region: 'europe-belgium', streamId: '1-0' })), ids);
  const { rows } = await poolOf(m.db).query<{ n: number }>('SELECT count(*)::int AS n FROM replication_outbox WHERE published_at IS NOT NULL');
  expect(rows[0]?.n).toBe(ids.length);
  expect(await pages(ids)).toEqual(inserted);
});
