/**
 * An organization's delete across two region processes: with all_regions, nothing of it is served in the
 * other region once answered; and a credential created in the other region while the delete was on its way
 * there (a live row of a deleted organization once both changes crossed) ends unreachable and tombstoned in
 * both, by each region's part sweep (a 300 ms collection cycle here); and a delete whose tombstone of an owned
 * row lost in the other region (to a config created there first) answers for the organization, not that row.
 */
import { Client } from 'pg';
import { CREATE_ENDPOINT } from '../../src/infisical/routes';
import { idempotencyRowId } from '../../src/idempotency/request';
import { keyIdOf } from '../../src/organizations/api-keys';
import { adminHeaders, type ApiResponse, blocksAnother, call, createOrg, eventually, slashidHeaders, startCluster, type Cluster } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { bearer, configBody, issueToken, makeCerts, SSO, type TestCerts } from '../infisical/support/fixtures';
import { regionDatabases, type RegionDatabases } from '../support/region-databases';

const PATH = '/organizations/sso/saml/provider-credentials';
const US = 'us-iowa';
const EU = 'europe-belgium';
const ALL = { 'SlashID-Required-Consistency': 'all_regions' };
let cluster: Cluster;
let idp: IdpServer;
let dbs: RegionDatabases | undefined;
let certs: TestCerts;

beforeAll(async () => {
  certs = makeCerts();
  idp = await startIdpServer();
  cluster = await startCluster('org-delete-x', [US, EU], { extra: { metadataAllowedHosts: [idp.hostPort], tombstoneCollection: { intervalMs: 300 } } });
  dbs = await regionDatabases(cluster.deployment);
}, 90_000);
afterAll(async () => {
  await dbs?.end();
  await cluster?.stop();
  await idp?.close();
});

const db = (region: string) => (dbs as RegionDatabases).db(region);
const digest = async (region: string) => JSON.stringify((await call(cluster.url(region), 'GET', '/admin/replication/digest', { headers: adminHeaders })).body.tables);
const signIn = (region: string, id: string) => fetch(`${cluster.url(region)}/sso/saml/${id}/metadata`);
async function credential(region: string, org: { id: string; api_key: string }, headers: Record<string, string> = {}): Promise<string> {
  const res = await call(cluster.url(region), 'POST', PATH, { body: { idp_metadata_url: idp.url('okta.xml'), label: region }, headers: slashidHeaders(org, headers) });
  expect(res.status).toBe(201);
  return res.body.result.id as string;
}
const credentialState = async (region: string, id: string) =>
  (await db(region).query('SELECT deleted_at IS NOT NULL AS deleted FROM saml_provider_credentials WHERE id = $1', [id])).rows[0]?.deleted === true ? 'tombstone' : 'live';

test('deleted with all_regions in one region: in the other the organization is gone, its key and token 401, its credential not served; the tables agree', async () => {
  const org = await createOrg(cluster.url(US), 'leaving', { headers: ALL });
  const cred = await credential(US, org, ALL);
  const token = await issueToken(cluster.url(EU), org.id);
  expect((await call(cluster.url(EU), 'GET', `${SSO}?organizationId=${org.id}`, { headers: bearer(token) })).status).toBe(404);
  expect((await signIn(EU, cred)).status).toBe(200);
  expect((await call(cluster.url(EU), 'GET', PATH, { headers: slashidHeaders(org) })).status).toBe(200);

  const res = await call(cluster.url(US), 'DELETE', `/admin/organizations/${org.id}`, { headers: { ...adminHeaders, ...ALL } });
  expect(res.status).toBe(204);
  expect((await call(cluster.url(EU), 'GET', `/admin/organizations/${org.id}`, { headers: adminHeaders })).status).toBe(404);
  expect((await call(cluster.url(EU), 'DELETE', `/admin/organizations/${org.id}`, { headers: adminHeaders })).status).toBe(404);
  expect((await call(cluster.url(EU), 'GET', PATH, { headers: slashidHeaders(org) })).status).toBe(401);
  expect((await signIn(EU, cred)).status).toBe(404);
  expect(await credentialState(EU, cred)).toBe('tombstone');
  // An access token issued there before: refused there now.
  expect((await call(cluster.url(EU), 'GET', `${SSO}?organizationId=${org.id}`, { headers: bearer(token) })).status).toBe(401);
  // Its change, as every region reports it to the admin API: applied in both.
  const status = await call(cluster.url(EU), 'GET', `/admin/replication/changes/${String(res.headers.get('x-change-id'))}`, { headers: adminHeaders });
  expect(status.status).toBe(200);
  expect(await eventually(async () => (await digest(US)) === (await digest(EU)), 20_000, 200)).toBe(true);
}, 60_000);

test('a credential created in another region while the delete was on its way there ends unreachable and tombstoned in both', async () => {
  const org = await createOrg(cluster.url(US), 'racing', { headers: ALL });
  // europe-belgium's applier takes the delete's per-key locks in sorted order, the API key's first: held
  // here, the delete waits there while the organization stays live, as if it were still on its way.
  const holder = new Client({ connectionString: cluster.deployment.file.regions.find((r) => r.id === EU)?.databaseUrl });
  await holder.connect();
  let raced = '';
  try {
    await holder.query('BEGIN');
    await holder.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`api_keys:${keyIdOf(org.api_key)}`]);
    const del = await call(cluster.url(US), 'DELETE', `/admin/organizations/${org.id}`, { headers: adminHeaders });
    expect(del.status).toBe(204);
    expect(await eventually(() => blocksAnother(holder), 30_000, 50)).toBe(true);
    // The organization's key still works there: it creates a credential (local_region), which the delete never saw.
    raced = await credential(EU, org);
    await holder.query('COMMIT');
  } finally {
    await holder.end();
  }
  // Each region's sweep tombstones it once both changes are in (their tombstones merge into one).
  expect(await eventually(async () => (await credentialState(US, raced)) === 'tombstone' && (await credentialState(EU, raced)) === 'tombstone', 30_000, 100)).toBe(true);
  for (const region of [US, EU]) {
    const res = await signIn(region, raced);
    expect({ region, status: res.status }).toEqual({ region, status: 404 });
    expect((await call(cluster.url(region), 'GET', PATH, { headers: slashidHeaders(org) })).status).toBe(401);
    const live = await db(region).query("SELECT table_name FROM (SELECT 'metadata' AS table_name FROM saml_credential_metadata WHERE credential_id = $1 AND deleted_at IS NULL) x", [raced]);
    expect({ region, live: live.rows }).toEqual({ region, live: [] });
  }
  expect(await eventually(async () => (await digest(US)) === (await digest(EU)), 20_000, 200)).toBe(true);
}, 90_000);

test('a credential created with all_regions in another region while the delete was on its way there answers 409: the region that deleted the organization never serves it', async () => {
  const org = await createOrg(cluster.url(US), 'racing-all', { headers: ALL });
  // As above: europe-belgium's applier waits on the API key's lock with the delete, the organization live there.
  const holder = new Client({ connectionString: cluster.deployment.file.regions.find((r) => r.id === EU)?.databaseUrl });
  await holder.connect();
  let res: ApiResponse;
  try {
    await holder.query('BEGIN');
    await holder.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`api_keys:${keyIdOf(org.api_key)}`]);
    expect((await call(cluster.url(US), 'DELETE', `/admin/organizations/${org.id}`, { headers: adminHeaders })).status).toBe(204);
    expect(await eventually(() => blocksAnother(holder), 30_000, 50)).toBe(true);
    // us-iowa applies the credential after the organization's tombstone: a row of a deleted organization,
    // never served there and tombstoned by its sweep. Not held, so not a 201.
    res = await call(cluster.url(EU), 'POST', PATH, { body: { idp_metadata_url: idp.url('okta.xml'), label: 'raced' }, headers: slashidHeaders(org, ALL) });
    await holder.query('COMMIT');
  } finally {
    await holder.end();
  }
  expect({ status: res.status, message: res.body.errors?.[0]?.message }).toEqual({ status: 409, message: expect.stringContaining(`a write made in ${US}`) });
  const change = await call(cluster.url(US), 'GET', `/admin/replication/changes/${String(res.headers.get('x-change-id'))}`, { headers: adminHeaders });
  expect(change.body).toMatchObject({ state: 'superseded', superseded: [{ region: US, winner: expect.objectContaining({ table: 'organizations', key: org.id }) }] });
  expect(await eventually(async () => (await digest(US)) === (await digest(EU)), 20_000, 200)).toBe(true);
}, 90_000);

test('deleted with all_regions while the other region had created its Infisical config first: 204, and the sweep tombstones that config in both', async () => {
  const org = await createOrg(cluster.url(US), 'config-race', { headers: ALL });
  const key = `config-race-${org.id}`;
  // us-iowa's applier takes the locks of europe-belgium's create in sorted order, its Idempotency-Key record's
  // first: held here, that create waits while us-iowa creates a config of its own, stamped later. The earlier
  // create wins in both regions, so the delete's tombstone of us-iowa's config loses in europe-belgium.
  const holder = new Client({ connectionString: cluster.deployment.file.regions.find((r) => r.id === US)?.databaseUrl });
  await holder.connect();
  let del: Awaited<ReturnType<typeof call>>;
  try {
    await holder.query('BEGIN');
    await holder.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`idempotency_keys:${idempotencyRowId(org.id, CREATE_ENDPOINT, key)}`]);
    const first = await call(cluster.url(EU), 'POST', SSO, { body: configBody(org.id, certs.pem), headers: bearer(await issueToken(cluster.url(EU), org.id), { 'Idempotency-Key': key }) });
    expect(first.status).toBe(200);
    expect(await eventually(() => blocksAnother(holder), 30_000, 50)).toBe(true);
    const second = await call(cluster.url(US), 'POST', SSO, { body: configBody(org.id, certs.pem), headers: bearer(await issueToken(cluster.url(US), org.id)) });
    expect(second.status).toBe(200);
    expect(second.body.id).toBe(first.body.id);

    del = await call(cluster.url(US), 'DELETE', `/admin/organizations/${org.id}`, { headers: { ...adminHeaders, ...ALL } });
    await holder.query('COMMIT');
  } finally {
    await holder.end();
  }
  // The organization's tombstone held everywhere: the delete answers so, and its change reads complete.
  expect({ status: del.status, body: del.body }).toEqual({ status: 204, body: del.body });
  const change = await call(cluster.url(US), 'GET', `/admin/replication/changes/${String(del.headers.get('x-change-id'))}`, { headers: adminHeaders });
  expect(change.body).toMatchObject({ state: 'complete', superseded: [] });
  for (const region of [US, EU]) expect((await call(cluster.url(region), 'GET', `/admin/organizations/${org.id}`, { headers: adminHeaders })).status).toBe(404);
  expect((await call(cluster.url(US), 'DELETE', `/admin/organizations/${org.id}`, { headers: adminHeaders })).status).toBe(404);
  // europe-belgium's config outlived the delete in both regions (the earlier create), until each region's sweep.
  const configState = async (region: string) =>
    (await db(region).query('SELECT deleted_at IS NOT NULL AS deleted FROM infisical_saml_configs WHERE org_id = $1', [org.id])).rows[0]?.deleted === true ? 'tombstone' : 'live';
  expect(await eventually(async () => (await configState(US)) === 'tombstone' && (await configState(EU)) === 'tombstone', 30_000, 100)).toBe(true);
  expect(await eventually(async () => (await digest(US)) === (await digest(EU)), 20_000, 200)).toBe(true);
}, 90_000);
