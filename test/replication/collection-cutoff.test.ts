/**
 * The tombstone collector against a real database: the cut-off it records (replication_horizon's
 * collected_through, which makes a region refuse a late change of a collected row) never moves back, and a
 * tombstone whose key a writer or an apply holds locked is left for the next round.
 */
import pino from 'pino';
import { Client } from 'pg';
import type { Db } from '../../src/db/client';
import { credentialsTable } from '../../src/provider-credentials/store';
import { collectionRecord, RAISE_COLLECTED_THROUGH_SQL, TombstoneCollector } from '../../src/replication/tombstones';
import { formatVersion } from '../../src/replication/hlc';
import type { ReplicatedTable } from '../../src/replication/tables';
import { migratedDb, type MigratedDb } from '../support/migrated-db';

let m: MigratedDb;
let db: Db;
let collector: TombstoneCollector;
/** One batch of collection of the credentials' tombstones below `cutoff` (as collect() runs it per table). */
let collectBelow: (cutoff: string) => Promise<number>;

beforeAll(async () => {
  m = await migratedDb('collectcutoff');
  db = m.db;
  collector = new TombstoneCollector({
    db, links: {} as never, keys: {} as never, region: 'us-iowa', regions: ['us-iowa'], store: { belowHorizon: 0 }, tables: [credentialsTable], log: pino({ level: 'silent' }),
    options: { enabled: true, intervalMs: 1000, minAgeMs: 0, batchSize: 10 },
  });
  const batch = (collector as unknown as { collectBatch(t: ReplicatedTable, c: string): Promise<number> }).collectBatch.bind(collector);
  collectBelow = (cutoff) => batch(credentialsTable, cutoff);
});
afterAll(() => m.close());

const T0 = Date.parse('2026-11-23T00:00:00.000Z');
const v = (wall: number) => formatVersion({ wall, counter: 0, region: 'us-iowa' });
let n = 0;
/** A tombstone deleted at `wall` (its version stamped then). */
async function tombstone(wall: number): Promise<string> {
  const id = `01a20904-0000-7000-8000-${String(++n).padStart(12, '0')}`;
  await db.$executeRawUnsafe(
    `INSERT INTO saml_provider_credentials (id, org_id, label, idp_metadata_url, email_claims, enable_in_slashid_oidc_authz_server, home_region, created_at, updated_at, deleted_at, version, created_version, origin_region)
     VALUES ($1::uuid, '01a20904-0000-7000-8000-00000000000a', 'gone', 'https://idp.example.com/md', '{}', false, 'us-iowa', $2::timestamptz, $2::timestamptz, $2::timestamptz, $3, $3, 'us-iowa')`,
    id, new Date(wall).toISOString(), v(wall),
  );
  return id;
}
const present = async (id: string) => (await db.$queryRawUnsafe<unknown[]>('SELECT 1 FROM saml_provider_credentials WHERE id = $1::uuid', id)).length === 1;

test('the recorded cut-off never moves back: a later collection under a lower horizon keeps the higher one', async () => {
  await tombstone(T0 + 1000);
  expect(await collectBelow(v(T0 + 5000))).toBe(1);
  expect((await collectionRecord(db)).collectedThrough).toBe(v(T0 + 5000));
  // The horizon fell (a clock stepped back, an old event parked): what was collected under the higher
  // cut-off is still collected, so the record keeps it.
  await tombstone(T0 + 500);
  expect(await collectBelow(v(T0 + 2000))).toBe(1);
  expect((await collectionRecord(db)).collectedThrough).toBe(v(T0 + 5000));
});

test('a tombstone whose key is locked (a write or an apply of that row under way) is left for the next round', async () => {
  const id = await tombstone(T0 + 6000);
  const holder = new Client({ connectionString: m.url });
  await holder.connect();
  try {
    await holder.query('BEGIN');
    await holder.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`${credentialsTable.name}:${id}`]);
    expect(await collectBelow(v(T0 + 10_000))).toBe(0);
    expect(await present(id)).toBe(true);
    await holder.query('COMMIT');
    expect(await collectBelow(v(T0 + 10_000))).toBe(1);
    expect(await present(id)).toBe(false);
  } finally {
    await holder.end();
  }
});

test("a re-seed raising the cut-off to a peer's lower one keeps this region's own", async () => {
  const own = (await collectionRecord(db)).collectedThrough;
  expect(own).not.toBe('');
  // The peer collected less far than this region: taking its cut-off over must not lower this one, or
  // this region would apply a late change of a row it collected (and hold that row alone).
  await db.$executeRawUnsafe(RAISE_COLLECTED_THROUGH_SQL, v(T0));
  expect((await collectionRecord(db)).collectedThrough).toBe(own);
  await db.$executeRawUnsafe(RAISE_COLLECTED_THROUGH_SQL, v(T0 + 60_000));
  expect((await collectionRecord(db)).collectedThrough).toBe(v(T0 + 60_000));
});
