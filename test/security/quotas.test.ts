/**
 * Quotas (issue H, item 4) through a region: what is stored of a document, credentials per organization, IdP
 * metadata fetches in flight per organization and per region, and tombstones without payload.
 */
import { Client } from 'pg';
import { adminHeaders, blocksAnother, call, createOrg, eventually, slashidHeaders } from '../support/harness';
import { fixture, startIdpServer, type IdpServer } from '../support/idp-server';
import { startInProcess, type InProcessRegion } from '../support/in-process';

const PATH = '/organizations/sso/saml/provider-credentials';
const MAX_CREDENTIALS = 3;
let r: InProcessRegion;
let idp: IdpServer;

beforeAll(async () => {
  idp = await startIdpServer();
  r = await startInProcess('quotas', ['us-iowa'], {
    metadataAllowedHosts: [idp.hostPort],
    metadataRefreshIntervalSeconds: 3600,
    maxCredentialsPerOrg: MAX_CREDENTIALS,
    metadataFetchConcurrency: { perOrg: 1, perRegion: 2, waitMs: 0 },
  });
});
afterAll(async () => {
  await r.stop();
  await idp.close();
});

const okta = fixture('okta.xml');
const create = (org: { id: string; api_key: string }, file: string) =>
  call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url(file) }, headers: slashidHeaders(org) });

describe('what is stored of a document', () => {
  test('only the usable SSO endpoints, each once and at most 8; an over-long entityID is refused', async () => {
    const org = await createOrg(r.url, 'stored');
    const services = Array.from({ length: 300 }, (_, i) =>
      `<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example/sso/${i % 50}"/>` +
      `<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:SOAP" Location="https://idp.example/soap/${i}"/>`).join('');
    idp.set('many-endpoints.xml', okta.replace('</md:IDPSSODescriptor>', `${services}</md:IDPSSODescriptor>`));
    const res = await create(org, 'many-endpoints.xml');
    expect(res.status).toBe(201);
    const md = await call(r.url, 'GET', `${PATH}/${res.body.result.id}/metadata`, { headers: slashidHeaders(org) });
    expect(md.body.result.metadata.sso_services).toHaveLength(8);
    const stored = await r.region.db.$queryRawUnsafe<{ n: number }[]>(
      'SELECT octet_length(metadata::text) AS n FROM saml_credential_metadata WHERE credential_id = $1::uuid',
      res.body.result.id,
    );
    expect(stored[0]?.n).toBeLessThan(16 * 1024);

    idp.set('long-entity.xml', okta.replace(/entityID="[^"]*"/, `entityID="urn:${'e'.repeat(1100)}"`));
    const long = await create(org, 'long-entity.xml');
    expect(long.status).toBe(400);
    expect(long.body.errors[0].message).toMatch(/longer than the 1024 characters/);
  });
});

describe('credentials per organization', () => {
  test(`at most ${MAX_CREDENTIALS} live credentials; a delete frees a place`, async () => {
    const org = await createOrg(r.url, 'limited');
    const ids: string[] = [];
    for (let i = 0; i < MAX_CREDENTIALS; i++) {
      const res = await create(org, 'okta.xml');
      expect(res.status).toBe(201);
      ids.push(res.body.result.id);
    }
    const refused = await create(org, 'okta.xml');
    expect(refused.status).toBe(409);
    expect(refused.body).toEqual({
      meta: {},
      errors: [{ httpcode: 409, message: `This organization has ${MAX_CREDENTIALS} SAML provider credentials, the most it may have (${MAX_CREDENTIALS}); delete one before creating another.` }],
    });
    // Another organization is not affected.
    expect((await create(await createOrg(r.url, 'other'), 'okta.xml')).status).toBe(201);
    expect((await call(r.url, 'DELETE', `${PATH}/${ids[0]}`, { headers: slashidHeaders(org) })).status).toBe(204);
    expect((await create(org, 'okta.xml')).status).toBe(201);
  });
});

describe('credentials per organization, over a limit lowered since', () => {
  test('the refusal names how many the organization holds, though the check counts only up to the limit', async () => {
    const org = await createOrg(r.url, 'over');
    // Five live credentials stored under a higher limit (written as rows: this region allows three).
    await r.region.db.$executeRawUnsafe(
      `INSERT INTO saml_provider_credentials (id, org_id, label, idp_metadata_url, email_claims, enable_in_slashid_oidc_authz_server,
         home_region, created_at, updated_at, version, created_version, origin_region)
       SELECT gen_random_uuid(), $1::uuid, 'old ' || g, 'https://idp.example.com/md', ARRAY[]::text[], false, 'us-iowa', now(), now(),
         '000000000000001.000000.us-iowa', '000000000000001.000000.us-iowa', 'us-iowa' FROM generate_series(1, 5) g`,
      org.id,
    );
    const refused = await create(org, 'okta.xml');
    expect(refused.status).toBe(409);
    expect(refused.body.errors[0].message).toBe(
      `This organization has 5 SAML provider credentials, the most it may have (${MAX_CREDENTIALS}); delete one before creating another.`,
    );
  });
});

/** A region of its own whose fetch limits let every create of a burst through to the write. */
const raceRegion = (name: string) =>
  startInProcess(name, ['us-iowa'], {
    metadataAllowedHosts: [idp.hostPort],
    metadataRefreshIntervalSeconds: 3600,
    maxCredentialsPerOrg: MAX_CREDENTIALS,
    metadataFetchConcurrency: { perOrg: 20, perRegion: 20 },
  });

describe('credentials per organization, creates at once', () => {
  test('ten concurrent creates for three places: three 201, seven 409, and nothing of the refused ones is stored', async () => {
    const race = await raceRegion('quotas-race');
    try {
      const org = await createOrg(race.url, 'race');
      const answers = await Promise.all(
        Array.from({ length: 10 }, () => call(race.url, 'POST', PATH, { body: { idp_metadata_url: idp.url('okta.xml') }, headers: slashidHeaders(org) })),
      );
      expect(answers.map((a) => a.status).sort()).toEqual([201, 201, 201, 409, 409, 409, 409, 409, 409, 409]);
      for (const a of answers.filter((x) => x.status === 409)) expect(a.body.errors[0].message).toMatch(/the most it may have \(3\)/);
      const rows = await race.region.db.$queryRawUnsafe<{ credentials: number; metadata: number; refresh: number; outbox: number }[]>(
        `SELECT (SELECT count(*)::int FROM saml_provider_credentials WHERE org_id = $1::uuid) AS credentials,
                (SELECT count(*)::int FROM saml_credential_metadata WHERE org_id = $1::uuid) AS metadata,
                (SELECT count(*)::int FROM metadata_refresh_state r JOIN saml_provider_credentials c ON c.id = r.credential_id WHERE c.org_id = $1::uuid) AS refresh,
                (SELECT count(*)::int FROM replication_outbox WHERE org_id = $1::uuid) AS outbox`,
        org.id,
      );
      // The organization's own create is in the outbox too.
      expect(rows[0]).toEqual({ credentials: 3, metadata: 3, refresh: 3, outbox: 4 });
    } finally {
      await race.stop();
    }
  });
});

describe('credentials per organization, creates whose rows are all in before any is counted', () => {
  test("six creates for three places, each held after its own row is in: the organization's lock still counts them one after the other (three 201, three 409)", async () => {
    const race = await raceRegion('quotas-lock');
    const locker = new Client({ connectionString: race.deployment.configFor('us-iowa').region.databaseUrl });
    await locker.connect();
    try {
      const org = await createOrg(race.url, 'lock');
      // A create's transaction is one round trip: its rows, its refresh schedule, the organization's lock, the
      // count. Holding the schedules' table stops each create after its credential row is in and before it is
      // counted, so those held are counted at once when it is let go: only the organization's lock orders them.
      // The organization's key is read (and its first use written) before the table is held.
      expect((await call(race.url, 'GET', PATH, { headers: slashidHeaders(org) })).status).toBe(200);
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE metadata_refresh_state IN EXCLUSIVE MODE');
      const answers = Promise.all(
        Array.from({ length: 6 }, () => call(race.url, 'POST', PATH, { body: { idp_metadata_url: idp.url('okta.xml') }, headers: slashidHeaders(org) })),
      );
      // Once one waits on the table, the others are given a moment to reach it too (a pipelined statement's text
      // in pg_stat_activity is not yet its own, so they are counted by what blocks them). However many got
      // there, three are taken: without the lock, every one held would be.
      expect(await eventually(() => blocksAnother(locker), 15_000, 20)).toBe(true);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      await locker.query('COMMIT');
      expect((await answers).map((a) => a.status).sort()).toEqual([201, 201, 201, 409, 409, 409]);
      expect(await race.region.db.samlProviderCredential.count({ where: { orgId: org.id, deletedAt: null } })).toBe(MAX_CREDENTIALS);
    } finally {
      await locker.query('ROLLBACK').catch(() => undefined);
      await locker.end();
      await race.stop();
    }
  });
});

describe('IdP metadata fetches in flight', () => {
  test('per organization: a second fetch while one runs is a 429 with Retry-After; per region: a 503', async () => {
    const [a, b, c] = [await createOrg(r.url, 'fa'), await createOrg(r.url, 'fb'), await createOrg(r.url, 'fc')];
    // After each slow create, the test waits until the IdP server holds its fetch, not a fixed 300 ms: on a loaded host the region
    // could take longer than that to reach the fetch, and the request after it then took the free slot. Held
    // for 5 s (under the fetch timeout of 10 s), so that the first still holds its slot while the requests after
    // it are answered.
    for (const name of ['slow-a.xml', 'slow-b.xml']) {
      idp.set(name, okta);
      idp.slow(name, 5000);
    }
    const first = create(a, 'slow-a.xml');
    expect(await eventually(async () => idp.held() === 1, 15_000, 20)).toBe(true);
    const again = await create(a, 'okta.xml');
    expect(again.status).toBe(429);
    expect(again.headers.get('retry-after')).toMatch(/^[0-9]+$/);
    expect(again.body).toEqual({ meta: {}, errors: [{ httpcode: 429, message: expect.stringMatching(/^This API key's organization already has 1 IdP metadata fetches in progress, for itself or the sub-organizations the key acts on \(the limit is 1\)/) }] });

    const second = create(b, 'slow-b.xml');
    expect(await eventually(async () => idp.held() === 2, 15_000, 20)).toBe(true);
    const busy = await create(c, 'okta.xml');
    expect(busy.status).toBe(503);
    expect(busy.headers.get('retry-after')).toMatch(/^[0-9]+$/);
    expect(busy.body.errors[0].message).toMatch(/fetching as much IdP metadata as it may at once/);

    expect((await first).status).toBe(201);
    expect((await second).status).toBe(201);
    // The slots are given back.
    expect((await create(c, 'okta.xml')).status).toBe(201);
  });

  test("per organization whose key sends it: a parent's key acting on two sub-organizations has one share, not one per sub-organization; a sub-organization's own key has its own", async () => {
    const parent = await createOrg(r.url, 'fparent');
    const [s1, s2] = [await createOrg(r.url, 'fsub1', { parent_id: parent.id }), await createOrg(r.url, 'fsub2', { parent_id: parent.id })];
    const byParent = (sub: { id: string }, file: string) =>
      call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url(file) }, headers: slashidHeaders({ id: sub.id, api_key: parent.api_key }) });
    idp.set('slow-p.xml', okta);
    idp.slow('slow-p.xml', 5000);
    const first = byParent(s1, 'slow-p.xml');
    expect(await eventually(async () => idp.held() === 1, 15_000, 20)).toBe(true);
    // Before, the share was the sub-organization's: this fetch took a second slot (201) while the first ran.
    const other = await byParent(s2, 'okta.xml');
    expect(other.status).toBe(429);
    // Said of the key's organization: the sub-organization it acts on has none in progress (before: "This organization
    // already has 1 …", of a sub-organization that had none).
    expect(other.body).toEqual({ meta: {}, errors: [{ httpcode: 429, message: expect.stringMatching(/^This API key's organization already has 1 IdP metadata fetches in progress, for itself or the sub-organizations the key acts on \(the limit is 1\)/) }] });
    expect(await r.region.db.samlProviderCredential.count({ where: { orgId: s2.id } })).toBe(0);
    // The sub-organization's own key is another tenant's share.
    expect((await create(s2, 'okta.xml')).status).toBe(201);
    expect((await first).status).toBe(201);
    expect((await byParent(s2, 'okta.xml')).status).toBe(201);
  });
});

describe('tombstones', () => {
  test('a delete keeps the key, version and deleted_at, not the payload', async () => {
    const org = await createOrg(r.url, 'tombstone');
    const res = await call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url('okta.xml'), label: 'secret label', email_claims: ['mail'] }, headers: slashidHeaders(org) });
    expect(res.status).toBe(201);
    const id = res.body.result.id as string;
    const del = await call(r.url, 'DELETE', `${PATH}/${id}`, { headers: slashidHeaders(org) });
    expect(del.status).toBe(204);
    const cred = await r.region.db.samlProviderCredential.findUnique({ where: { id } });
    expect(cred).toMatchObject({ label: '', idpMetadataUrl: '', emailClaims: [], deletedAt: expect.any(Date), orgId: org.id });
    const md = await r.region.db.samlCredentialMetadata.findUnique({ where: { credentialId: id } });
    expect(md).toMatchObject({ metadata: {}, idpMetadataUrl: '', deletedAt: expect.any(Date) });
    // The change that travels to the other regions carries no payload either.
    const outbox = await r.region.db.$queryRawUnsafe<{ event: string }[]>(
      'SELECT event::text FROM replication_outbox WHERE change_id = $1::uuid',
      del.headers.get('x-change-id'),
    );
    expect(outbox).toHaveLength(1);
    expect(outbox[0]?.event).not.toContain('secret label');
    expect(outbox[0]?.event).not.toContain('okta.xml');
    expect(outbox[0]?.event).not.toContain('BEGIN CERTIFICATE');
    // Gone for the API.
    expect((await call(r.url, 'GET', `${PATH}/${id}`, { headers: slashidHeaders(org) })).status).toBe(404);
    expect((await call(r.url, 'GET', '/admin/metadata-refresh', { headers: adminHeaders })).body.credentials).not.toContainEqual(expect.objectContaining({ credential_id: id }));
  });
});
