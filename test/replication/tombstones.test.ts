/**
 * Tombstone collection (issue H, item 4) through three region processes: a tombstone is collected in every
 * region once every region applied its deletion and the horizon passed it; while one region is paused no
 * region collects anything; a replayed older event of a collected row does not bring it back; and a
 * re-seed after collection converges. Minimum age 0 here, so the horizon decides: every region's clock less
 * the in-flight time, which follows the write transactions' bound (3 s here, so 13 s; 30 s by default).
 */
import Redis from 'ioredis';
import { replicationKeys } from '../../src/redis';
import { IN_FLIGHT_MS, inFlightMs, wallOf } from '../../src/replication/horizon';
import { adminHeaders, call, createOrg, eventually, runReseed, slashidHeaders, startCluster, type Cluster } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { REDIS_URL, testEventAuth } from '../support/env';
import { regionDatabases, type RegionDatabases } from '../support/region-databases';

const PATH = '/organizations/sso/saml/provider-credentials';
const REGIONS = ['us-iowa', 'europe-belgium', 'asia-japan'];
const ALL = { 'SlashID-Required-Consistency': 'all_regions' };
/** The write transactions' bound here: each region's watermark stays it and 10 s more behind its clock. */
const WRITE_TX_MS = 3_000;
/** Long enough for the horizon (every region's clock less the in-flight time, see horizon.ts) to pass a delete. */
const COLLECTED_WITHIN_MS = 120_000;
let cluster: Cluster;
let idp: IdpServer;
let org: { id: string; api_key: string };
let redis: Redis;
let dbs: RegionDatabases | undefined;

beforeAll(async () => {
  idp = await startIdpServer();
  cluster = await startCluster('tombstones', REGIONS, {
    extra: { metadataAllowedHosts: [idp.hostPort], tombstoneCollection: { intervalMs: 300, minAgeMs: 0, batchSize: 2 }, writeTransactionTimeoutMs: WRITE_TX_MS },
  });
  dbs = await regionDatabases(cluster.deployment);
  redis = new Redis(REDIS_URL);
  org = await createOrg(cluster.url('us-iowa'), 'acme', { headers: ALL });
}, 90_000);
afterAll(async () => {
  redis?.disconnect();
  await dbs?.end();
  await cluster?.stop();
  await idp?.close();
});

const db = (region: string) => (dbs as RegionDatabases).db(region);
/** What a region's database holds for a key: a live row, a tombstone, or nothing. */
async function stateOf(region: string, table: string, keyColumn: string, key: string): Promise<'live' | 'tombstone' | 'absent'> {
  const r = await db(region).query(`SELECT deleted_at IS NOT NULL AS deleted FROM ${table} WHERE ${keyColumn} = $1`, [key]);
  if (r.rows.length === 0) return 'absent';
  return r.rows[0].deleted ? 'tombstone' : 'live';
}
const credentialState = (region: string, id: string) => stateOf(region, 'saml_provider_credentials', 'id', id);
const everywhere = async (f: (r: string) => Promise<string>, want: string) => (await Promise.all(REGIONS.map(f))).every((s) => s === want);
const tombstones = async (region: string) => (await call(cluster.url(region), 'GET', '/admin/replication', { headers: adminHeaders })).body.tombstones;
const digest = async (region: string) => JSON.stringify((await call(cluster.url(region), 'GET', '/admin/replication/digest', { headers: adminHeaders })).body.tables);

async function createCredential(region = 'us-iowa', label = 'doomed'): Promise<{ id: string; changeId: string }> {
  const res = await call(cluster.url(region), 'POST', PATH, { body: { idp_metadata_url: idp.url('okta.xml'), label }, headers: slashidHeaders(org, ALL) });
  expect(res.status).toBe(201);
  return { id: res.body.result.id, changeId: String(res.headers.get('x-change-id')) };
}

/**
 * The stream entry of a change exactly as its origin published it (signed; the outbox keeps the signed
 * event), as a writer on the bus could have recorded it for a later replay.
 */
async function recordEntry(origin: string, changeId: string): Promise<string[]> {
  const r = await db(origin).query('SELECT event FROM replication_outbox WHERE change_id = $1', [changeId]);
  expect(r.rows).toHaveLength(1);
  const fields = testEventAuth().entryFields(r.rows[0].event);
  expect(testEventAuth().verify(fields).ok).toBe(true);
  return fields;
}

let collectedId = '';
let recorded: string[] = [];

test("a deleted credential's tombstone, and a rotated API key's, are collected in every region once every region applied them", async () => {
  const c = await createCredential();
  recorded = await recordEntry('us-iowa', c.changeId);
  const oldKeyId = /^sidk_([^.]+)\./.exec(org.api_key)?.[1] ?? '';
  expect(await stateOf('us-iowa', 'api_keys', 'key_id', oldKeyId)).toBe('live');
  const rotated = await call(cluster.url('europe-belgium'), 'POST', `/admin/organizations/${org.id}/api-keys`, { headers: { ...adminHeaders, ...ALL } });
  expect(rotated.status).toBe(201);
  org = { ...org, api_key: rotated.body.api_key };

  const del = await call(cluster.url('asia-japan'), 'DELETE', `${PATH}/${c.id}`, { headers: slashidHeaders(org, ALL) });
  expect(del.status).toBe(204);
  // Right after the all_regions answer every region holds the tombstones (payload stripped).
  expect(await everywhere((r) => credentialState(r, c.id), 'tombstone')).toBe(true);
  expect(await everywhere((r) => stateOf(r, 'saml_credential_metadata', 'credential_id', c.id), 'tombstone')).toBe(true);
  expect(await everywhere((r) => stateOf(r, 'api_keys', 'key_id', oldKeyId), 'tombstone')).toBe(true);

  const gone = async () =>
    (await everywhere((r) => credentialState(r, c.id), 'absent')) &&
    (await everywhere((r) => stateOf(r, 'saml_credential_metadata', 'credential_id', c.id), 'absent')) &&
    (await everywhere((r) => stateOf(r, 'api_keys', 'key_id', oldKeyId), 'absent'));
  expect(await eventually(gone, COLLECTED_WITHIN_MS, 200)).toBe(true);
  collectedId = c.id;

  for (const r of REGIONS) {
    expect((await call(cluster.url(r), 'GET', `${PATH}/${c.id}`, { headers: slashidHeaders(org) })).status).toBe(404);
    // Nothing holds the horizon; a region's report can be a moment past its age bound on a loaded host (a
    // clean CI run saw `stale-report` once, right after the collection), which holds it only until the next.
    let t = await tombstones(r);
    await eventually(async () => (t = await tombstones(r)).held_by.length === 0, 15_000, 200);
    expect(t.enabled).toBe(true);
    expect(t.held_by).toEqual([]);
    expect(t.horizon).toMatch(/^\d{15}\.\d{6}\./);
    // The horizon keeps the in-flight time of the configured bound behind the clock, and no more than the default's.
    const behind = Date.parse(t.computed_at) - wallOf(t.horizon);
    expect(behind).toBeGreaterThanOrEqual(inFlightMs(WRITE_TX_MS));
    expect(behind).toBeLessThan(IN_FLIGHT_MS);
    expect(t.members.map((m: { region: string }) => m.region).sort()).toEqual([...REGIONS].sort());
    expect(t.collected_through).not.toBeNull();
    expect(t.collected.by_table.saml_provider_credentials).toBeGreaterThanOrEqual(1);
    expect(t.collected.by_table.saml_credential_metadata).toBeGreaterThanOrEqual(1);
    expect(t.collected.by_table.api_keys).toBeGreaterThanOrEqual(1);
  }
  // The revoked key stays refused, the new one works.
  expect((await call(cluster.url('us-iowa'), 'GET', PATH, { headers: { 'SlashID-OrgID': org.id, 'SlashID-API-Key': `sidk_${oldKeyId}.x` } })).status).toBe(401);
  expect((await call(cluster.url('us-iowa'), 'GET', PATH, { headers: slashidHeaders(org) })).status).toBe(200);
  const metrics = await (await fetch(`${cluster.url('us-iowa')}/metrics`, { headers: adminHeaders })).text();
  expect(metrics).toMatch(/replication_tombstones_collected_total\{table="saml_provider_credentials",region="us-iowa"\} [1-9]/);
  expect(metrics).toMatch(/replication_tombstone_horizon_timestamp_seconds\{region="us-iowa"\} \d/);
  // Each member's watermark, named by member_region; region stays the reporting region's (the member's
  // name overrode it, so three samples read region="asia-japan" and so on).
  for (const member of REGIONS) {
    expect(metrics).toMatch(new RegExp(`^replication_watermark_timestamp_seconds\\{member_region="${member}",region="us-iowa"\\} \\d`, 'm'));
  }
}, 180_000);

test('a replayed create of a collected credential (a signed entry recorded from the bus) does not bring it back', async () => {
  expect(collectedId).not.toBe('');
  // The create was us-iowa's: the other regions apply it (its origin only acks its own events).
  const appliers = ['europe-belgium', 'asia-japan'];
  const before = await Promise.all(appliers.map(async (r) => (await tombstones(r)).refused_below_horizon as number));
  // Into each applier's own inbox (one Redis serves every region here).
  const keys = replicationKeys(cluster.deployment.file.redisKeyPrefix);
  for (const r of appliers) await redis.xadd(keys.inbox(r), '*', ...recorded);
  // They read it (its signature holds) and do not apply it: older than what they collected.
  const refused = async () => (await Promise.all(appliers.map(async (r, i) => (await tombstones(r)).refused_below_horizon > (before[i] ?? 0)))).every(Boolean);
  expect(await eventually(refused, 30_000, 300)).toBe(true);
  expect(await everywhere((r) => credentialState(r, collectedId), 'absent')).toBe(true);
  for (const r of REGIONS) expect((await call(cluster.url(r), 'GET', `${PATH}/${collectedId}`, { headers: slashidHeaders(org) })).status).toBe(404);
  const metrics = await (await fetch(`${cluster.url('europe-belgium')}/metrics`, { headers: adminHeaders })).text();
  expect(metrics).toMatch(/replication_events_below_horizon_total\{region="europe-belgium"\} [1-9]/);
}, 60_000);

test('with one region paused no region collects a tombstone; once it is back and has caught up, every region does', async () => {
  const c = await createCredential('europe-belgium', 'deleted while asia-japan is paused');
  const asia = cluster.proc('asia-japan');
  asia.pause();
  try {
    const del = await call(cluster.url('us-iowa'), 'DELETE', `${PATH}/${c.id}`, { headers: slashidHeaders(org) });
    expect(del.status).toBe(204);
    const deletedAt = Date.now();
    // Wait for a horizon computed after the point where, without the pause, the delete would be below it
    // (clock less the in-flight time, plus more than the 3 report intervals, 0.9 s, a report in use may be
    // old): the other regions say asia-japan holds it back.
    for (const r of ['us-iowa', 'europe-belgium']) {
      const held = async () => {
        const t = await tombstones(r);
        return Date.parse(t.computed_at) > deletedAt + inFlightMs(WRITE_TX_MS) + 2_000 && t.horizon === null &&
          t.held_by.some((h: { region: string; reason: string }) => h.region === 'asia-japan' && h.reason === 'stale-report');
      };
      expect(await eventually(held, 90_000, 500)).toBe(true);
    }
    expect(await credentialState('us-iowa', c.id)).toBe('tombstone');
    expect(await credentialState('europe-belgium', c.id)).toBe('tombstone');
    // The paused region still holds the live row: collecting elsewhere now would let it come back.
    expect(await credentialState('asia-japan', c.id)).toBe('live');
  } finally {
    asia.resume();
  }
  expect(await eventually(() => everywhere((r) => credentialState(r, c.id), 'absent'), COLLECTED_WITHIN_MS, 200)).toBe(true);
  for (const r of REGIONS) expect((await call(cluster.url(r), 'GET', `${PATH}/${c.id}`, { headers: slashidHeaders(org) })).status).toBe(404);
}, 240_000);

test('a re-seed after collection converges: the target gets every live row and loses a stale copy of a collected one', async () => {
  const kept = await createCredential('us-iowa', 'kept');
  // asia-japan holds a live copy of the collected credential, as a database restored from a backup would.
  const row = (await db('us-iowa').query('SELECT to_jsonb(x) AS row FROM saml_provider_credentials x WHERE id = $1', [kept.id])).rows[0].row;
  const old = '000001000000000.000000.us-iowa';
  await db('asia-japan').query('INSERT INTO saml_provider_credentials SELECT * FROM jsonb_populate_record(NULL::saml_provider_credentials, $1::jsonb)', [
    { ...row, id: collectedId, label: 'restored from a backup', version: old, created_version: old },
  ]);
  expect(await credentialState('asia-japan', collectedId)).toBe('live');
  // And a row created after the peer's cut-off that the peer does not hold yet (written in the target, its
  // change on its way): not a collected row's copy, so it stays.
  const recentId = '01a20904-0000-7000-8000-00000000a5a5';
  const recent = `${String(Date.now()).padStart(15, '0')}.000000.asia-japan`;
  await db('asia-japan').query('INSERT INTO saml_provider_credentials SELECT * FROM jsonb_populate_record(NULL::saml_provider_credentials, $1::jsonb)', [
    { ...row, id: recentId, label: 'created after the cut-off', version: recent, created_version: recent, origin_region: 'asia-japan' },
  ]);
  const run = await runReseed(cluster, 'us-iowa', 'asia-japan');
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  expect(JSON.parse(run.stdout).tables.saml_provider_credentials).toMatchObject({ removed: 1 });
  expect(await credentialState('asia-japan', recentId)).toBe('live');
  // (Made by hand, it has no change to replicate: taken out again for the convergence below.)
  await db('asia-japan').query('DELETE FROM saml_provider_credentials WHERE id = $1', [recentId]);
  // The re-seed marks asia-japan active in each Redis and exits; us-iowa's view follows on the record's
  // announcement, or its refresh every second: waited for.
  const members = async () => (await call(cluster.url('us-iowa'), 'GET', '/admin/replication', { headers: adminHeaders })).body.members;
  const asiaState = async () => (await members()).find((m: { region: string }) => m.region === 'asia-japan')?.state;
  expect(await eventually(async () => (await asiaState()) === 'active', 15_000, 200)).toBe(true);
  expect(await asiaState()).toBe('active');
  expect(await eventually(async () => new Set(await Promise.all(REGIONS.map(digest))).size === 1, 30_000, 300)).toBe(true);
  expect(await credentialState('asia-japan', kept.id)).toBe('live');
  expect(await everywhere((r) => credentialState(r, collectedId), 'absent')).toBe(true);
}, 90_000);
