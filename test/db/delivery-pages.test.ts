/**
 * A delivery's confirmation rewrites its row on the row's own page as a HOT update (the table's fillfactor
 * leaves room there, migration 20261206110000): no new entry in the primary key's index, and only the changed
 * bytes logged. Real migrated schema; the deliveries recorded by recordDeliveries, as the relay records them,
 * and confirmed in rounds by the relay's own statement (relay-confirm.ts CONFIRM_DELIVERIES: confirmed_at and
 * the ack).
 */
import { randomUUID } from 'node:crypto';
import { poolOf } from '../../src/db/client';
import { recordDeliveries } from '../../src/replication/delivery';
import { CONFIRM_DELIVERIES } from '../../src/replication/relay-confirm';
import { migratedDb, type MigratedDb } from '../support/migrated-db';

let m: MigratedDb;
beforeAll(async () => {
  m = await migratedDb('deliverypages');
}, 60_000);
afterAll(() => m.close());

const REGIONS = ['europe-belgium', 'asia-japan'];

/** Each delivery's current version: its page (the block of its ctid). */
async function pages(): Promise<Map<string, string>> {
  const { rows } = await poolOf(m.db).query<{ key: string; page: string }>(
    `SELECT change_id::text || ' ' || region AS key, (ctid::text::point)[0]::text AS page FROM replication_deliveries`,
  );
  return new Map(rows.map((r) => [r.key, r.page]));
}

test('confirming deliveries keeps each on the page it was inserted in, with several pages of them', async () => {
  const pool = poolOf(m.db);
  // Recorded in batches, as the relay publishes them.
  const changes = Array.from({ length: 600 }, () => randomUUID());
  for (let i = 0; i < changes.length; i += 200) {
    const batch = changes.slice(i, i + 200);
    await recordDeliveries(m.db, batch.flatMap((id, j) => REGIONS.map((region) => ({ changeId: id, region, streamId: `1765012345678-${i + j}` }))), []);
  }
  const inserted = await pages();
  expect(inserted.size).toBe(changes.length * REGIONS.length);
  expect(new Set(inserted.values()).size).toBeGreaterThan(4);
  // Confirmed in rounds, each its own transaction, with a signed ack each (~90 bytes).
  for (let i = 0; i < changes.length; i += 150) {
    const batch = changes.slice(i, i + 150);
    const acked = batch.flatMap((id) => REGIONS.map((region) => ({ id, region, ack: `applied@2026-12-06T11:12:03.123Z#k1:${randomUUID()}${randomUUID()}` })));
    await pool.query(CONFIRM_DELIVERIES, [acked.map((a) => a.id), acked.map((a) => a.region), acked.map((a) => a.ack)],
    );
  }
  const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM replication_deliveries WHERE confirmed_at IS NOT NULL');
  expect(rows[0]?.n).toBe(inserted.size);
  expect(await pages()).toEqual(inserted);
});
