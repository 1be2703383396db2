/**
 * A credential's SSO settings go with it (saml_sso_settings is declared part of the credential), through three
 * region processes: the delete tombstones the settings in the same change as the credential, in every region;
 * the tombstone collector then takes the settings' tombstone too; the settings routes answer 404 as before.
 * Minimum age 0 and a 3 s write bound, as in test/replication/tombstones.test.ts, so the horizon decides.
 */
import Redis from 'ioredis';
import { Client } from 'pg';
import { replicationKeys } from '../../src/redis';
import { eventFor } from '../support/applier-rig';
import { REDIS_URL, testEventAuth } from '../support/env';
import { adminHeaders, blocksAnother, call, createOrg, eventually, slashidHeaders, startCluster, type Cluster } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { scrape } from '../observability/support';
import { regionDatabases, type RegionDatabases } from '../support/region-databases';

const PATH = '/organizations/sso/saml/provider-credentials';
const REGIONS = ['us-iowa', 'europe-belgium', 'asia-japan'];
const ALL = { 'SlashID-Required-Consistency': 'all_regions' };
const COLLECTED_WITHIN_MS = 120_000;
let cluster: Cluster;
let idp: IdpServer;
let org: { id: string; api_key: string };
let dbs: RegionDatabases | undefined;
/** A credential whose rows asia-japan lost, while the other regions hold it live (the last test's). */
let lacking = '';

beforeAll(async () => {
  idp = await startIdpServer();
  cluster = await startCluster('settings-delete', REGIONS, {
    extra: { metadataAllowedHosts: [idp.hostPort], tombstoneCollection: { intervalMs: 300, minAgeMs: 0, batchSize: 50 }, writeTransactionTimeoutMs: 3_000 },
  });
  dbs = await regionDatabases(cluster.deployment);
  org = await createOrg(cluster.url('us-iowa'), 'acme', { headers: ALL });
  // The last test's credential, made first: its wait for the collection cut-off (13 s here) passes meanwhile.
  lacking = await credentialWithSettings('lacking in one region');
  // asia-japan loses the credential (and its metadata) by hand, as a region lacks a row when an operator
  // discarded its parked create, its change was dead-lettered, or its database was restored from a backup
  // older than it: the settings stay, created (like the credential) soon below the collection cut-off.
  await db('asia-japan').query('DELETE FROM saml_credential_metadata WHERE credential_id = $1', [lacking]);
  await db('asia-japan').query('DELETE FROM saml_provider_credentials WHERE id = $1', [lacking]);
}, 90_000);
afterAll(async () => {
  await dbs?.end();
  await cluster?.stop();
  await idp?.close();
});

const db = (region: string) => (dbs as RegionDatabases).db(region);
const settingsPath = (id: string) => `${PATH}/${id}/sso-settings`;

/** What a region's database holds for a credential's settings: a live row, a tombstone, or nothing. */
async function settingsState(region: string, id: string): Promise<'live' | 'tombstone' | 'absent'> {
  const r = await db(region).query('SELECT deleted_at IS NOT NULL AS deleted FROM saml_sso_settings WHERE credential_id = $1', [id]);
  if (r.rows.length === 0) return 'absent';
  return r.rows[0].deleted ? 'tombstone' : 'live';
}
/** The changes a region's outbox holds that carry a row of the settings of credential `id`. */
async function outboxChangesOf(region: string, id: string): Promise<number> {
  const r = await db(region).query(`SELECT count(*)::int AS n FROM replication_outbox WHERE event->'ops' @> jsonb_build_array(jsonb_build_object('table', 'saml_sso_settings', 'key', $1::text))`, [id]);
  return r.rows[0].n;
}
const everywhere = async (id: string, want: string) => (await Promise.all(REGIONS.map((r) => settingsState(r, id)))).every((s) => s === want);
/** What a region's part sweep took since its process started (GET /admin/replication). */
async function partsSwept(region: string): Promise<{ tombstoned: number; deleted_here: number }> {
  return (await call(cluster.url(region), 'GET', '/admin/replication', { headers: adminHeaders })).body.tombstones.parts_swept;
}

async function credentialWithSettings(label: string): Promise<string> {
  const res = await call(cluster.url('us-iowa'), 'POST', PATH, { body: { idp_metadata_url: idp.url('okta.xml'), label }, headers: slashidHeaders(org, ALL) });
  expect(res.status).toBe(201);
  const id = res.body.result.id as string;
  // Set in another region than the credential's: the settings row is europe-belgium's write.
  const on = await call(cluster.url('europe-belgium'), 'PATCH', settingsPath(id), { body: { allow_idp_initiated: true }, headers: slashidHeaders(org, ALL) });
  expect(on.status).toBe(200);
  expect(await everywhere(id, 'live')).toBe(true);
  return id;
}

test("a delete tombstones the credential's SSO settings in the same change, in every region; the collector then takes them", async () => {
  const id = await credentialWithSettings('doomed');
  const del = await call(cluster.url('asia-japan'), 'DELETE', `${PATH}/${id}`, { headers: slashidHeaders(org, ALL) });
  expect(del.status).toBe(204);
  // Under all_regions every region applied the change: the settings' tombstone came with it.
  expect(await everywhere(id, 'tombstone')).toBe(true);
  const tombstone = (await db('us-iowa').query('SELECT allow_idp_initiated, org_id FROM saml_sso_settings WHERE credential_id = $1', [id])).rows[0];
  expect(tombstone).toEqual({ allow_idp_initiated: false, org_id: org.id });
  // One change carries both rows (and the metadata's): a region applies all of them or none.
  const change = String(del.headers.get('x-change-id'));
  const event = (await db('asia-japan').query('SELECT event FROM replication_outbox WHERE change_id = $1', [change])).rows[0].event;
  expect(event.ops.map((op: { table: string }) => op.table).sort()).toEqual(['saml_credential_metadata', 'saml_provider_credentials', 'saml_sso_settings']);

  expect(await eventually(() => everywhere(id, 'absent'), COLLECTED_WITHIN_MS, 200)).toBe(true);
  for (const r of REGIONS) {
    const t = (await call(cluster.url(r), 'GET', '/admin/replication', { headers: adminHeaders })).body.tombstones;
    expect(t.collected.by_table.saml_sso_settings).toBeGreaterThanOrEqual(1);
  }
}, 180_000);

test('the settings routes of a deleted credential answer 404 in every region, and write nothing', async () => {
  const id = await credentialWithSettings('deleted, then asked about');
  const del = await call(cluster.url('us-iowa'), 'DELETE', `${PATH}/${id}`, { headers: slashidHeaders(org, ALL) });
  expect(del.status).toBe(204);
  for (const r of REGIONS) {
    const read = await call(cluster.url(r), 'GET', settingsPath(id), { headers: slashidHeaders(org) });
    expect(read.status).toBe(404);
    expect(read.body.errors[0].message).toMatch(/not found in this region: not one of this organization's, deleted/);
    const patch = await call(cluster.url(r), 'PATCH', settingsPath(id), { body: { allow_idp_initiated: true }, headers: slashidHeaders(org) });
    expect(patch.status).toBe(404);
    expect(patch.headers.get('x-change-id')).toBeNull();
    expect(await settingsState(r, id)).not.toBe('live');
  }
}, 60_000);

test("the settings of a credential whose delete is on its way answer 404 where the part sweep's tombstone of them came first", async () => {
  const id = await credentialWithSettings('tombstone first');
  // asia-japan's part sweep tombstoned the settings (the credential is a tombstone there), and that change
  // reaches europe-belgium before the credential's delete does: the tombstone as asia-japan writes it.
  const [stored] = (await db('europe-belgium').query('SELECT org_id::text, created_at, created_version FROM saml_sso_settings WHERE credential_id = $1', [id])).rows;
  const sweep = eventFor('saml_sso_settings', id, {
    credential_id: id, org_id: stored.org_id, allow_idp_initiated: false, created_at: stored.created_at.toISOString(), created_version: stored.created_version, deleted_at: new Date().toISOString(),
  }, { origin: 'asia-japan' });
  const redis = new Redis(REDIS_URL);
  try {
    await redis.xadd(replicationKeys(cluster.deployment.file.redisKeyPrefix).inbox('europe-belgium'), '*', ...testEventAuth().entryFields(sweep));
  } finally {
    redis.disconnect();
  }
  expect(await eventually(async () => (await settingsState('europe-belgium', id)) === 'tombstone', 30_000, 100)).toBe(true);
  expect((await call(cluster.url('europe-belgium'), 'GET', `${PATH}/${id}`, { headers: slashidHeaders(org) })).status).toBe(200);
  // As once the delete lands (the test above), not a 409 of a write that lost to a deletion.
  for (const method of ['PATCH', 'GET']) {
    const res = await call(cluster.url('europe-belgium'), method, settingsPath(id), { headers: slashidHeaders(org), ...(method === 'PATCH' ? { body: { allow_idp_initiated: true } } : {}) });
    expect({ method, status: res.status }).toEqual({ method, status: 404 });
    expect(res.body.errors[0].message).toMatch(/not found in this region: not one of this organization's, deleted/);
    expect(res.headers.get('x-change-id')).toBeNull();
  }
  expect(await settingsState('europe-belgium', id)).toBe('tombstone');
  // The delete itself, for the other tests' regions.
  expect((await call(cluster.url('us-iowa'), 'DELETE', `${PATH}/${id}`, { headers: slashidHeaders(org, ALL) })).status).toBe(204);
}, 60_000);

test('settings first set in a region the delete had not reached yet are tombstoned there and everywhere afterwards, then collected', async () => {
  const res = await call(cluster.url('us-iowa'), 'POST', PATH, { body: { idp_metadata_url: idp.url('okta.xml'), label: 'raced' }, headers: slashidHeaders(org, ALL) });
  expect(res.status).toBe(201);
  const id = res.body.result.id as string;
  // europe-belgium's applier takes the delete's per-key locks in sorted order, the metadata row's first: held
  // here, the delete waits there while the credential stays live, as if it were still on its way.
  const holder = new Client({ connectionString: cluster.deployment.file.regions.find((r) => r.id === 'europe-belgium')?.databaseUrl });
  await holder.connect();
  try {
    await holder.query('BEGIN');
    await holder.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`saml_credential_metadata:${id}`]);
    const del = await call(cluster.url('us-iowa'), 'DELETE', `${PATH}/${id}`, { headers: slashidHeaders(org) });
    expect(del.status).toBe(204);
    // us-iowa held no settings: its delete carries none.
    const event = (await db('us-iowa').query('SELECT event FROM replication_outbox WHERE change_id = $1', [String(del.headers.get('x-change-id'))])).rows[0].event;
    expect(event.ops.map((op: { table: string }) => op.table).sort()).toEqual(['saml_credential_metadata', 'saml_provider_credentials']);
    expect(await eventually(() => blocksAnother(holder), 30_000, 50)).toBe(true);
    // Meanwhile the organization sets the credential's SSO settings in europe-belgium: its first settings row,
    // which the delete (made where there was none) does not carry.
    const on = await call(cluster.url('europe-belgium'), 'PATCH', settingsPath(id), { body: { allow_idp_initiated: true }, headers: slashidHeaders(org) });
    expect(on.status).toBe(200);
    await holder.query('COMMIT');
  } finally {
    await holder.end();
  }
  // Every region ends with the settings tombstoned (each region's sweep writes it), and then collected.
  expect(await eventually(() => everywhere(id, 'tombstone'), 30_000, 100)).toBe(true);
  // Only a sweep writes that tombstone: at least one region counts it (once its cycle ends).
  const tombstoned = async () => (await Promise.all(REGIONS.map(async (r) => (await partsSwept(r)).tombstoned))).reduce((a, b) => a + b);
  expect(await eventually(async () => (await tombstoned()) >= 1, 10_000, 100)).toBe(true);
  for (const r of REGIONS) {
    expect((await call(cluster.url(r), 'GET', settingsPath(id), { headers: slashidHeaders(org) })).status).toBe(404);
  }
  expect(await eventually(() => everywhere(id, 'absent'), COLLECTED_WITHIN_MS, 200)).toBe(true);
}, 180_000);

test("settings whose credential this region collected are deleted there; settings whose credential has not arrived yet are not", async () => {
  // Made by hand in asia-japan, as the race above leaves them once the credential's tombstone is collected:
  // settings created long before the collection cut-off, their credential absent.
  const collected = '01a20904-0000-7000-8000-00000000c011';
  const early = '01a20904-0000-7000-8000-00000000ea71';
  const old = '000001000000000.000000.europe-belgium';
  // And settings whose credential may still be on its way: created above the cut-off (an hour ahead here).
  const ahead = `${String(Date.now() + 3_600_000).padStart(15, '0')}.000000.europe-belgium`;
  const insert = 'INSERT INTO saml_sso_settings (credential_id, org_id, allow_idp_initiated, created_at, updated_at, version, created_version, origin_region) VALUES ($1, $2, true, now(), now(), $3, $3, $4)';
  // The last test's settings (beforeAll) are deleted here too, by the same sweep: counted (once its cycle ends)
  // before these are made.
  expect(await eventually(async () => (await settingsState('asia-japan', lacking)) !== 'live', COLLECTED_WITHIN_MS, 200)).toBe(true);
  expect(await eventually(async () => (await partsSwept('asia-japan')).deleted_here >= 1, 10_000, 100)).toBe(true);
  const deletedBefore = (await partsSwept('asia-japan')).deleted_here;
  await db('asia-japan').query(insert, [collected, org.id, old, 'europe-belgium']);
  await db('asia-japan').query(insert, [early, org.id, ahead, 'europe-belgium']);
  try {
    // Deleted there only, as a collection deletes a tombstone: the other regions' sweeps take their own copies.
    expect(await eventually(async () => (await settingsState('asia-japan', collected)) === 'absent', 30_000, 100)).toBe(true);
    expect(await outboxChangesOf('asia-japan', collected)).toBe(0);
    expect(await settingsState('asia-japan', early)).toBe('live');
    // Counted as deleted here (once its cycle ends), in GET /admin/replication and in the metrics.
    expect(await eventually(async () => (await partsSwept('asia-japan')).deleted_here >= deletedBefore + 1, 10_000, 100)).toBe(true);
    expect((await scrape(cluster.url('asia-japan'))).value('replication_parts_swept_total', { kind: 'deleted_here' })).toBeGreaterThanOrEqual(deletedBefore + 1);
    expect(await everywhere(collected, 'absent')).toBe(true);
  } finally {
    // (Made by hand, it has no change to replicate.)
    await db('asia-japan').query('DELETE FROM saml_sso_settings WHERE credential_id = $1', [early]);
  }
}, 180_000);

test('settings of a credential one region lacks while every other holds it live are not deleted anywhere else', async () => {
  // Made and lost in asia-japan before the first test (beforeAll).
  const id = lacking;
  // asia-japan's sweep takes its own copy once the cut-off passes the settings' creation...
  expect(await eventually(async () => (await settingsState('asia-japan', id)) !== 'live', COLLECTED_WITHIN_MS, 200)).toBe(true);
  // ...with no change: a replicated tombstone would delete the settings of a live credential everywhere.
  expect(await outboxChangesOf('asia-japan', id)).toBe(0);
  for (const r of ['us-iowa', 'europe-belgium']) {
    expect(await settingsState(r, id)).toBe('live');
    const read = await call(cluster.url(r), 'GET', settingsPath(id), { headers: slashidHeaders(org) });
    expect(read.status).toBe(200);
    expect(read.body.result).toMatchObject({ allow_idp_initiated: true });
  }
}, 180_000);
