/**
 * Applying key rows (idempotency_keys, pruned by each region on its own): a stored row the region's
 * cleanup may delete is deleted first, and an incoming row that old is not stored at all (taken as
 * applied), so a late copy of an old key row never replaces the newer row of a reuse by its earlier create.
 */
import { formatVersion } from '../../src/replication/hlc';
import { createApplyPool, inPipeline } from '../../src/replication/pg-tx';
import { RowStore } from '../../src/replication/row-store';
import type { Row } from '../../src/replication/tables';
import { idempotencyKeysTable } from '../../src/idempotency/store';
import { migratedDb, type MigratedDb } from '../support/migrated-db';

let m: MigratedDb;
let store: RowStore;
beforeAll(async () => {
  m = await migratedDb('pruneapply');
  store = await RowStore.load(m.db, [idempotencyKeysTable]);
}, 60_000);
afterAll(() => m.close());

const DAY = 24 * 3600_000;
const v = (wall: number) => formatVersion({ wall, counter: 0, region: 'us-iowa' });

/** The key row `id`, created at `created` (ms) and expiring a day later, written at version `version`. */
function keyRow(id: string, created: number, version: number, status: number): Row {
  return {
    id, org_id: '01a20904-0000-7000-8000-0000000000e0', endpoint: 'create', idempotency_key: 'k', request_hash: 'h',
    response_status: status, response_body: {}, change_id: null,
    created_at: new Date(created).toISOString(), expires_at: new Date(created + DAY).toISOString(), updated_at: new Date(created).toISOString(),
    deleted_at: null, version: v(version), created_version: v(created), origin_region: 'us-iowa',
  };
}
const change = (r: Row) => ({ table: idempotencyKeysTable.name, key: String(r.id), version: String(r.version), row: r });
const statusOf = async (id: string) =>
  (await m.db.$queryRawUnsafe<{ response_status: number }[]>('SELECT response_status FROM idempotency_keys WHERE id = $1', id))[0]?.response_status ?? null;

test('a stored key row past the cleanup\'s cutoff does not outrank a newer create of the same key', async () => {
  const now = Date.now();
  // Stored while it was live (written here directly: an apply would not store a row that old now).
  const old = keyRow('reused-1', now - 4 * DAY, now - 4 * DAY, 201);
  await m.db.$executeRawUnsafe(
    'INSERT INTO idempotency_keys SELECT * FROM jsonb_populate_record(NULL::idempotency_keys, $1::jsonb)',
    JSON.stringify(old),
  );
  expect(await statusOf('reused-1')).toBe(201);
  const fresh = keyRow('reused-1', now - 1000, now - 1000, 202);
  const { outcomes } = await store.apply(m.db, [change(fresh)]);
  expect(outcomes).toEqual([{ applied: true }]);
  expect(await statusOf('reused-1')).toBe(202);
});

test('so too through the applier\'s one-round-trip apply (its locks, the statement that reads and writes, COMMIT)', async () => {
  const pool = createApplyPool(m.url);
  try {
    const now = Date.now();
    const old = keyRow('reused-4', now - 4 * DAY, now - 4 * DAY, 201);
    await m.db.$executeRawUnsafe('INSERT INTO idempotency_keys SELECT * FROM jsonb_populate_record(NULL::idempotency_keys, $1::jsonb)', JSON.stringify(old));
    const fresh = keyRow('reused-4', now - 1000, now - 1000, 202);
    const { outcomes } = await inPipeline(pool, (tx) => store.apply(tx, [change(fresh)], undefined, { lock: true, last: true }));
    expect(outcomes).toEqual([{ applied: true }]);
    expect(await statusOf('reused-4')).toBe(202);
  } finally {
    await pool.end();
  }
});

test('a late copy of a key row past the cutoff is taken as applied and does not replace the newer row', async () => {
  const now = Date.now();
  await store.apply(m.db, [change(keyRow('reused-2', now - 1000, now - 1000, 202))]);
  const old = keyRow('reused-2', now - 4 * DAY, now - 4 * DAY, 201);
  const { outcomes } = await store.apply(m.db, [change(old)]);
  expect(outcomes).toEqual([{ applied: true }]);
  expect(await statusOf('reused-2')).toBe(202);
  // In one batch with the newer row, too.
  const both = await store.apply(m.db, [change(keyRow('reused-3', now - 1000, now - 1000, 202)), change(keyRow('reused-3', now - 4 * DAY, now - 4 * DAY, 201))]);
  expect(both.outcomes).toEqual([{ applied: true }, { applied: true }]);
  expect(await statusOf('reused-3')).toBe(202);
});
