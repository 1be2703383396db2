/**
 * DELETE /admin/organizations/{id} in one region (in-process, real Postgres and Redis): what one change
 * tombstones, what is refused before and after, and the remainder of an organization larger than one change,
 * which no path serves and the part sweep tombstones. The collector's loop is off: its cycle runs when a test
 * calls it, so what the delete's change did alone is seen first.
 */
import { Client } from 'pg';
import { poolOf } from '../../src/db/client';
import { apiKeyCacheOf } from '../../src/organizations/api-key-cache';
import { OWNED_DELETE_BATCH } from '../../src/replication/tables';
import { adminHeaders, call, createOrg, eventually, slashidHeaders } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { bearer, configBody, issueToken, makeCerts, SSO, type TestCerts } from '../infisical/support/fixtures';

const PATH = '/organizations/sso/saml/provider-credentials';
let r: InProcessRegion;
let idp: IdpServer;
let certs: TestCerts;

beforeAll(async () => {
  certs = makeCerts();
  idp = await startIdpServer();
  r = await startInProcess('org-delete', ['us-iowa'], { metadataAllowedHosts: [idp.hostPort], tombstoneCollection: { enabled: false } });
}, 60_000);
afterAll(async () => {
  await r?.stop();
  await idp?.close();
});

const sql = <T = Record<string, unknown>>(text: string, values: unknown[] = []) => poolOf(r.region.db).query(text, values).then((res) => res.rows as T[]);
const outboxCount = async () => (await sql<{ n: number }>('SELECT count(*)::int AS n FROM replication_outbox'))[0]?.n;
const del = (id: string, opts: { body?: unknown; headers?: Record<string, string> } = {}) =>
  call(r.url, 'DELETE', `/admin/organizations/${id}`, { headers: { ...adminHeaders, ...opts.headers }, ...(opts.body === undefined ? {} : { body: opts.body }) });
const sso = (id: string, what: 'metadata' | 'login') => fetch(`${r.url}/sso/saml/${id}/${what}`, { redirect: 'manual' });
const acs = (id: string) =>
  fetch(`${r.url}/sso/saml/${id}/acs`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ SAMLResponse: Buffer.from('<x/>').toString('base64') }) });
const UNKNOWN_CREDENTIAL = /not found in this region \(a credential created in another region moments ago may not have arrived yet\)/;

async function credential(org: { id: string; api_key: string }): Promise<string> {
  const res = await call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url('okta.xml'), label: 'doomed' }, headers: slashidHeaders(org) });
  expect(res.status).toBe(201);
  return res.body.result.id as string;
}

test("one change tombstones the organization, its keys, credentials (metadata, SSO settings) and Infisical config; nothing of it is served after", async () => {
  const parent = await createOrg(r.url, 'parent');
  const org = await createOrg(r.url, 'tenant', { parent_id: parent.id });
  const cred = await credential(org);
  expect((await call(r.url, 'PATCH', `${PATH}/${cred}/sso-settings`, { body: { allow_idp_initiated: true }, headers: slashidHeaders(org) })).status).toBe(200);
  const token = await issueToken(r.url, org.id);
  const config = await call(r.url, 'POST', SSO, { body: configBody(org.id, certs.pem), headers: bearer(token) });
  expect(config.status).toBe(200);
  // Twice: the second key check is answered from the API-key cache, which the delete must drop.
  const cache = apiKeyCacheOf(r.region.db);
  expect(cache?.active).toBe(true);
  expect((await call(r.url, 'GET', PATH, { headers: slashidHeaders(org) })).status).toBe(200);
  const hits = cache?.hits ?? 0;
  expect((await call(r.url, 'GET', PATH, { headers: slashidHeaders(org) })).status).toBe(200);
  expect(cache?.hits).toBe(hits + 1);
  expect((await sso(cred, 'metadata')).status).toBe(200);
  expect((await sso(cred, 'login')).status).toBe(302);

  const res = await del(org.id);
  expect(res.status).toBe(204);
  const change = String(res.headers.get('x-change-id'));
  const [{ event }] = await sql<{ event: { ops: { table: string }[] } }>('SELECT event FROM replication_outbox WHERE change_id = $1', [change]);
  expect(event.ops.map((op) => op.table).sort()).toEqual(['api_keys', 'infisical_saml_configs', 'organizations', 'saml_credential_metadata', 'saml_provider_credentials', 'saml_sso_settings']);
  // Tombstones without the payload: the name, the label and URL, the IdP's settings are gone.
  expect(await sql('SELECT name, deleted_at IS NOT NULL AS deleted FROM organizations WHERE id = $1', [org.id])).toEqual([{ name: '', deleted: true }]);
  expect(await sql('SELECT label, idp_metadata_url, deleted_at IS NOT NULL AS deleted FROM saml_provider_credentials WHERE id = $1', [cred])).toEqual([{ label: '', idp_metadata_url: '', deleted: true }]);
  expect(await sql('SELECT entry_point, cert, deleted_at IS NOT NULL AS deleted FROM infisical_saml_configs WHERE org_id = $1', [org.id])).toEqual([{ entry_point: '', cert: '', deleted: true }]);
  for (const t of ['api_keys', 'saml_credential_metadata', 'saml_sso_settings']) {
    expect({ t, live: await sql(`SELECT 1 FROM ${t} WHERE org_id = $1 AND deleted_at IS NULL`, [org.id]) }).toEqual({ t, live: [] });
  }

  // The admin API: 404 for it now and for a second delete, as for an unknown or malformed id.
  expect((await call(r.url, 'GET', `/admin/organizations/${org.id}`, { headers: adminHeaders })).status).toBe(404);
  for (const id of [org.id, org.id, '00000000-0000-4000-8000-000000000000', 'not-a-uuid']) {
    const again = await del(id);
    expect({ id, status: again.status, change: again.headers.get('x-change-id') }).toEqual({ id, status: 404, change: null });
    expect(again.body.errors[0].message).toMatch(/^Organization .* not found\.$/);
  }
  expect((await call(r.url, 'GET', `/admin/organizations?parent_id=${parent.id}`, { headers: adminHeaders })).body.organizations).toEqual([]);
  expect((await call(r.url, 'POST', `/admin/organizations/${org.id}/access-tokens`, { headers: adminHeaders })).status).toBe(404);
  expect((await call(r.url, 'POST', `/admin/organizations/${org.id}/api-keys`, { headers: adminHeaders })).status).toBe(404);
  expect((await call(r.url, 'POST', '/admin/organizations', { body: { name: 'orphan', parent_id: org.id }, headers: adminHeaders })).status).toBe(404);

  // Its key, at once in this process (the cache was dropped); a parent's key for it; the parent itself unharmed.
  const own = await call(r.url, 'GET', `${PATH}/${cred}`, { headers: slashidHeaders(org) });
  expect(own.status).toBe(401);
  expect((await call(r.url, 'GET', PATH, { headers: slashidHeaders(org) })).status).toBe(401);
  const byParent = await call(r.url, 'GET', `${PATH}/${cred}`, { headers: slashidHeaders({ id: org.id, api_key: parent.api_key }) });
  expect(byParent.status).toBe(403);
  expect((await call(r.url, 'GET', PATH, { headers: slashidHeaders(parent) })).status).toBe(200);
  // Its change, followed with the parent's key: not one of an organization it may follow.
  expect((await call(r.url, 'GET', `/organizations/replication/changes/${change}`, { headers: slashidHeaders({ id: parent.id, api_key: parent.api_key }) })).status).toBe(404);

  // The public sign-in endpoints of its credential: as for an unknown credential.
  for (const res of [await sso(cred, 'metadata'), await sso(cred, 'login'), await acs(cred)]) {
    expect(res.status).toBe(404);
    expect(((await res.json()) as { errors: { message: string }[] }).errors[0]?.message).toMatch(UNKNOWN_CREDENTIAL);
  }

  // Its access token: refused, and says why; its changes are not shown to it.
  const got = await call(r.url, 'GET', `${SSO}?organizationId=${org.id}`, { headers: bearer(token) });
  expect(got.status).toBe(401);
  expect(got.body.message).toMatch(/which was deleted/);
  expect((await call(r.url, 'PATCH', SSO, { body: { organizationId: org.id, isActive: false }, headers: bearer(token) })).status).toBe(401);
  const status = await call(r.url, 'GET', `/api/v1/replication/changes/${String(config.headers.get('x-change-id'))}`, { headers: bearer(token) });
  expect(status.status).toBe(404);
});

test('refuses (409) an organization with live sub-organizations, says how many and how to list them, and writes nothing', async () => {
  const parent = await createOrg(r.url, 'holding');
  const kids = [await createOrg(r.url, 'kid one', { parent_id: parent.id }), await createOrg(r.url, 'kid two', { parent_id: parent.id })];
  const before = await outboxCount();
  const res = await del(parent.id);
  expect(res.status).toBe(409);
  expect(res.body.errors[0].message).toBe(
    `Organization ${parent.id} has 2 sub-organizations in this region; delete them first (list them with GET /admin/organizations?parent_id=${parent.id}). Nothing was deleted.`,
  );
  expect(res.headers.get('x-change-id')).toBeNull();
  expect(await outboxCount()).toBe(before);
  expect((await call(r.url, 'GET', PATH, { headers: slashidHeaders(parent) })).status).toBe(200);
  for (const kid of kids) expect((await del(kid.id)).status).toBe(204);
  expect((await del(parent.id)).status).toBe(204);
});

test('a credential create that committed after the delete here is refused (401) and writes nothing', async () => {
  const org = await createOrg(r.url, 'deleted mid-create');
  // The organization's per-key lock, held: the delete waits for it first, then the create's commit-time check
  // (taken under the same lock) queues behind the delete.
  const holder = new Client({ connectionString: r.deployment.file.regions[0]?.databaseUrl });
  await holder.connect();
  // Sessions of this database waiting on a lock (the delete behind the holder; the create behind either: which
  // one Postgres names depends on where in the queue it is, and either way it commits after the delete).
  const waiting = async (n: number) =>
    (await holder.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND cardinality(pg_blocking_pids(pid)) > 0')).rows[0]?.n === n;
  try {
    await holder.query('BEGIN');
    await holder.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`organizations:${org.id}`]);
    const deleting = del(org.id);
    expect(await eventually(() => waiting(1), 30_000, 20)).toBe(true);
    const creating = call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url('okta.xml'), label: 'too late' }, headers: slashidHeaders(org) });
    expect(await eventually(() => waiting(2), 30_000, 20)).toBe(true);
    await holder.query('COMMIT');
    expect((await deleting).status).toBe(204);
    const created = await creating;
    expect(created.status).toBe(401);
    expect(created.body.errors[0].message).toBe(`Organization ${org.id} was deleted while this request ran; nothing was created (its API keys are no longer valid).`);
    expect(created.headers.get('x-change-id')).toBeNull();
  } finally {
    await holder.end();
  }
  expect(await sql("SELECT 1 FROM saml_provider_credentials WHERE org_id = $1 AND label = 'too late'", [org.id])).toEqual([]);
});

test('takes no body, no Idempotency-Key, only valid consistency headers, and needs the admin token: refused without writing', async () => {
  const org = await createOrg(r.url, 'kept');
  const before = await outboxCount();
  const withBody = await del(org.id, { body: { cascade: true } });
  expect(withBody.status).toBe(400);
  expect(withBody.body.errors[0].message).toMatch(/takes no request body/);
  // A client that counts on the key to have a retry answer 204 again is told (a retry answers 404), not ignored.
  for (const key of ['retry-1', '']) {
    const keyed = await del(org.id, { headers: { 'Idempotency-Key': key } });
    expect({ key, status: keyed.status }).toEqual({ key, status: 400 });
    expect(keyed.body.errors[0].message).toMatch(/^Idempotency-Key is not taken here: a delete is not replayed/);
  }
  for (const headers of <Record<string, string>[]>[{ 'SlashID-Required-Consistency': 'everywhere' }, { 'SlashID-Required-Consistency': '' }, { 'SlashID-Required-Consistency-Timeout': '0' }]) {
    const res = await del(org.id, { headers });
    expect({ headers, status: res.status }).toEqual({ headers, status: 400 });
    expect(res.body.errors[0].message).toMatch(/^SlashID-Required-Consistency/);
  }
  const anonymous = await call(r.url, 'DELETE', `/admin/organizations/${org.id}`);
  expect(anonymous.status).toBe(401);
  expect(await outboxCount()).toBe(before);
  expect((await call(r.url, 'GET', `/admin/organizations/${org.id}`, { headers: adminHeaders })).status).toBe(200);
});

test('an organization larger than one change: the rest is unreachable at once, not refreshed, and the sweep tombstones it', async () => {
  const org = await createOrg(r.url, 'large');
  const extra = OWNED_DELETE_BATCH + 5;
  // Inserted as a replicated create would leave them, with due refresh schedules: credentials this region refreshes.
  const version = `${String(Date.now()).padStart(15, '0')}.000000.us-iowa`;
  await sql(
    `INSERT INTO saml_provider_credentials (id, org_id, label, idp_metadata_url, email_claims, enable_in_slashid_oidc_authz_server, home_region, created_at, updated_at, version, created_version, origin_region)
     SELECT gen_random_uuid(), $1, 'bulk', $2, '{}', false, 'us-iowa', now(), now(), $3, $3, 'us-iowa' FROM generate_series(1, $4)`,
    [org.id, idp.url('okta.xml'), version, extra],
  );
  await sql(`INSERT INTO metadata_refresh_state (credential_id, next_at) SELECT id, now() + interval '1 hour' FROM saml_provider_credentials WHERE org_id = $1`, [org.id]);
  const refreshed = async () => {
    const res = await call(r.url, 'GET', '/admin/metadata-refresh', { headers: adminHeaders });
    expect(res.status).toBe(200);
    return (res.body.credentials as { org_id: string }[]).filter((c) => c.org_id === org.id).length;
  };
  expect(await refreshed()).toBeGreaterThan(0);
  const live = async () => (await sql<{ id: string }>('SELECT id::text FROM saml_provider_credentials WHERE org_id = $1 AND deleted_at IS NULL', [org.id])).map((x) => x.id);

  const res = await del(org.id);
  expect(res.status).toBe(204);
  const [{ n, bytes }] = await sql<{ n: number; bytes: number }>(
    `SELECT count(*) FILTER (WHERE op->>'table' = 'saml_provider_credentials')::int AS n, max(length(event::text)) AS bytes
       FROM replication_outbox, jsonb_array_elements(event->'ops') op WHERE change_id = $1`,
    [String(res.headers.get('x-change-id'))],
  );
  // One stream entry: bounded however large the organization (129 KB measured; ~350 KB with every credential's parts).
  expect(bytes).toBeLessThan(200 * 1024);
  // The key took one place of the batch.
  expect(n).toBe(OWNED_DELETE_BATCH - 1);
  const rest = await live();
  expect(rest).toHaveLength(extra - n);
  // Live rows of a deleted organization: no sign-in, no refresh, no held document to accept.
  await sql(
    `INSERT INTO saml_credential_metadata (credential_id, org_id, idp_metadata_url, metadata, created_at, updated_at, version, created_version, origin_region)
     VALUES ($1, $2, $3, '{"entity_id": "held", "signing_certificates": [], "pending": {"metadata": {"entity_id": "new", "signing_certificates": []}}}', now(), now(), $4, $4, 'us-iowa')`,
    [rest[0], org.id, idp.url('okta.xml'), version],
  );
  const accept = await call(r.url, 'POST', `/admin/metadata-refresh/${rest[0]}/accept`, { headers: adminHeaders });
  expect(accept.status).toBe(404);
  expect(accept.body.errors[0].message).toMatch(/has no held IdP metadata to accept/);
  for (const what of ['metadata', 'login'] as const) expect((await sso(rest[0] as string, what)).status).toBe(404);
  expect(await refreshed()).toBe(0);

  const before = await outboxCount();
  await r.region.replication.tombstones?.cycle();
  expect(await live()).toEqual([]);
  expect(await outboxCount()).toBe((before ?? 0) + 1);
  // Counted with the sweep's tombstones (GET /admin/replication).
  expect((await call(r.url, 'GET', '/admin/replication', { headers: adminHeaders })).body.tombstones.parts_swept.tombstoned).toBeGreaterThanOrEqual(1);
});
