/**
 * IdP metadata through the service: each fixture gets its MANIFEST verdict (clock pinned to 2026-11-23),
 * SSRF refusals with real servers listening behind them, the metadata resource, and the refresh job.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';
import { adminHeaders, call, createOrg, eventually, slashidHeaders } from '../support/harness';
import { FIXTURE_DATE } from '../support/env';
import { fixture, startIdpServer, type IdpServer } from '../support/idp-server';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { idpMetadata, signer } from '../sso/support/idp-simulator';

const PATH = '/organizations/sso/saml/provider-credentials';
let r: InProcessRegion;
let idp: IdpServer;
let decoy: http.Server;
let decoyPort: number;
let packed: http.Server;
let packedHost: string;
let org: { id: string; api_key: string };

beforeAll(async () => {
  idp = await startIdpServer();
  // A live server that is NOT allow-listed: a missed refusal would fetch from it successfully.
  decoy = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/xml' }).end(fixture('okta.xml')));
  await new Promise<void>((resolve) => decoy.listen(0, '0.0.0.0', () => resolve()));
  decoyPort = (decoy.address() as AddressInfo).port;
  // Compresses whatever the fetch asks for (it asks for identity), as some servers and CDNs do.
  packed = http.createServer((req, res) => {
    const okta = Buffer.from(fixture('okta.xml'));
    const [encoding, body] = PACKED[(req.url ?? '/').slice(1)] ?? ['gzip', zlib.gzipSync(okta)];
    res.setHeader('content-encoding', encoding);
    res.writeHead(200, { 'content-type': 'application/samlmetadata+xml' }).end(body);
  });
  await new Promise<void>((resolve) => packed.listen(0, '127.0.0.1', () => resolve()));
  packedHost = `127.0.0.1:${(packed.address() as AddressInfo).port}`;
  r = await startInProcess('metadata', ['us-iowa'], { metadataAllowedHosts: [idp.hostPort, packedHost], metadataRefreshIntervalSeconds: 1 });
  org = await createOrg(r.url, 'md');
});
afterAll(async () => {
  await r.stop();
  await idp.close();
  await new Promise((res) => decoy.close(res));
  await new Promise((res) => packed.close(res));
});

const OKTA = () => Buffer.from(fixture('okta.xml'));
const PACKED: Record<string, [string | string[], Buffer]> = {
  'gzip.xml': ['gzip', zlib.gzipSync(OKTA())],
  'deflate.xml': ['deflate', zlib.deflateSync(OKTA())],
  'raw-deflate.xml': ['deflate', zlib.deflateRawSync(OKTA())],
  'br.xml': ['br', zlib.brotliCompressSync(OKTA())],
  'twice.xml': ['gzip, br', zlib.brotliCompressSync(zlib.gzipSync(OKTA()))],
  // The same list on two header lines, which HTTP reads as one (RFC 9110 5.3).
  'two-lines.xml': [['gzip', 'br'], zlib.brotliCompressSync(zlib.gzipSync(OKTA()))],
  'bomb.xml': ['gzip', zlib.gzipSync(Buffer.alloc(3 * 1024 * 1024, ' '))],
  'zstd.xml': ['zstd', OKTA()],
  'liar.xml': ['gzip', OKTA()],
  // A name every object inherits (a lookup by `in` found it, and the body was read as not encoded): no coding.
  'constructor.xml': ['constructor', OKTA()],
};

const count = () => r.region.db.samlProviderCredential.count({ where: { deletedAt: null } });
const create = (url: string) => call(r.url, 'POST', PATH, { body: { idp_metadata_url: url }, headers: slashidHeaders(org) });

describe('every fixture gets its MANIFEST verdict', () => {
  test.each([
    ['okta.xml', 'http://www.okta.com/exk9u78i8aMSxvkV70h7', 1],
    ['azure-entra.xml', 'https://sts.windows.net/81c1df79-e153-4f9d-a101-8dcf04af6c2c/', 2],
    ['google-workspace.xml', 'https://accounts.google.com/o/saml2?idpid=C01yz0nbv', 1],
    ['keycloak.xml', 'https://lxapocd5.transplace.com:8443/auth/realms/SpringBootKeycloak', 1],
    ['adfs.xml', 'http://adfs-testad.testad.local/adfs/services/trust', 1],
    ['auth0.xml', 'urn:dev-tyj7qyzz.auth0.com', 1],
    ['simplesamlphp.xml', 'https://guest.login.utexas.edu/idp', 1],
    ['shibboleth-aggregate-entities.xml', 'https://idp.testshib.org/idp/shibboleth', 1],
    ['two-signing-certs.xml', 'https://accounts.google.com/o/saml2?idpid=C03ddq7te', 2],
  ])('%s is accepted and its parsed metadata is visible', async (file, entityId, certs) => {
    const res = await create(idp.url(file));
    expect(res.status).toBe(201);
    const md = await call(r.url, 'GET', `${PATH}/${res.body.result.id}/metadata`, { headers: slashidHeaders(org) });
    expect(md.status).toBe(200);
    expect(md.body.result.metadata.entity_id).toBe(entityId);
    expect(md.body.result.metadata.signing_certificates).toHaveLength(certs);
    expect(md.body.result.metadata.sso_services.length).toBeGreaterThan(0);
    for (const c of md.body.result.metadata.signing_certificates) {
      expect(c).toMatchObject({ not_after: expect.any(String), fingerprint_sha256: expect.any(String), expired: expect.any(Boolean) });
    }
    expect(md.body.result.refresh.home_region).toBe('us-iowa');
  });

  test.each([
    ['onelogin-expired-cert.xml', /expired.*2021-08-05/i],
    ['signed-aggregate-expired-validuntil.xml', /validUntil|stale/i],
    ['signed-metadata-bad-signature.xml', /signature/i],
    ['no-sso-service.xml', /SingleSignOnService/i],
    ['sp-metadata-not-idp.xml', /service provider|SP metadata|SPSSODescriptor/i],
    ['malformed.xml', /XML/],
    ['html-error-page.xml', /HTML/],
  ])('%s is refused with a 400 that says why, and nothing is written', async (file, why) => {
    const before = await count();
    const res = await create(idp.url(file));
    expect(res.status).toBe(400);
    expect(res.body.errors[0].message).toMatch(why);
    expect(res.body.errors[0].message).toContain('idp_metadata_url');
    expect(await count()).toBe(before);
  });
});

describe('server-side request forgery is refused, with a live server behind each address', () => {
  test.each([
    ['127.0.0.2', () => `http://127.0.0.2:${decoyPort}/md.xml`],
    ['[::1]', () => `http://[::1]:${decoyPort}/md.xml`],
    ['0.0.0.0', () => `http://0.0.0.0:${decoyPort}/md.xml`],
    ['decimal 127.0.0.1', () => `http://2130706433:${decoyPort}/md.xml`],
    ['hex 127.0.0.1', () => `http://0x7f000001:${decoyPort}/md.xml`],
    ['localhost', () => `http://localhost:${decoyPort}/md.xml`],
    ['a loopback port that is not allow-listed', () => `http://127.0.0.1:${decoyPort}/md.xml`],
    ['https to loopback', () => `https://127.0.0.1:${decoyPort}/md.xml`],
  ])('%s', async (_n, url) => {
    const before = await count();
    const res = await create(url());
    expect(res.status).toBe(400);
    expect(res.body.errors[0].message).toMatch(/loopback|not allowed|blocked|private|unspecified|not public/i);
    expect(await count()).toBe(before);
  });

  test('a redirect from an allow-listed host to a loopback port that is not allow-listed', async () => {
    idp.redirect('hop.xml', `http://127.0.0.1:${decoyPort}/md.xml`);
    const res = await create(idp.url('hop.xml'));
    expect(res.status).toBe(400);
    expect(res.body.errors[0].message).toMatch(/redirect/i);
  });

  test('a document larger than the limit', async () => {
    idp.set('huge.xml', `<x>${'a'.repeat(2 * 1024 * 1024)}</x>`);
    const res = await create(idp.url('huge.xml'));
    expect(res.status).toBe(400);
    expect(res.body.errors[0].message).toMatch(/large|limit/i);
  });
});

test('PATCH of idp_metadata_url fetches the new document; a refused one changes nothing', async () => {
  const c = (await create(idp.url('okta.xml'))).body.result;
  const ok = await call(r.url, 'PATCH', `${PATH}/${c.id}`, { body: { idp_metadata_url: idp.url('auth0.xml') }, headers: slashidHeaders(org) });
  expect(ok.status).toBe(204);
  const md = await call(r.url, 'GET', `${PATH}/${c.id}/metadata`, { headers: slashidHeaders(org) });
  expect(md.body.result.metadata.entity_id).toBe('urn:dev-tyj7qyzz.auth0.com');
  const bad = await call(r.url, 'PATCH', `${PATH}/${c.id}`, { body: { idp_metadata_url: idp.url('sp-metadata-not-idp.xml') }, headers: slashidHeaders(org) });
  expect(bad.status).toBe(400);
  const after = await call(r.url, 'GET', `${PATH}/${c.id}`, { headers: slashidHeaders(org) });
  expect(after.body.result.idp_metadata_url).toBe(idp.url('auth0.xml'));
});

describe('an answer compressed though the fetch asked for identity', () => {
  test.each(['gzip', 'deflate', 'raw-deflate', 'br', 'twice', 'two-lines'])('%s is read as a browser reads it', async (name) => {
    const res = await create(`http://${packedHost}/${name}.xml`);
    expect(res.status).toBe(201);
    const md = await call(r.url, 'GET', `${PATH}/${res.body.result.id}/metadata`, { headers: slashidHeaders(org) });
    expect(md.body.result.metadata.entity_id).toBe('http://www.okta.com/exk9u78i8aMSxvkV70h7');
  });

  test.each([
    ['bomb', /decompresses \(Content-Encoding "gzip"\) to more than the 1 MiB allowed/],
    ['zstd', /sent with Content-Encoding "zstd", which the fetch did not ask for and does not read/],
    ['liar', /sent with Content-Encoding "gzip" but is not compressed that way/],
    ['constructor', /sent with Content-Encoding "constructor", which the fetch did not ask for and does not read/],
  ])('%s is refused with a 400 that says why, and nothing is written', async (name, why) => {
    const before = await count();
    const res = await create(`http://${packedHost}/${name}.xml`);
    expect(res.status).toBe(400);
    expect(res.body.errors[0].message).toMatch(why);
    expect(await count()).toBe(before);
  });
});

describe('refresh', () => {
  const certOf = (xml: string) => /<(?:ds:)?X509Certificate>([^<]+)</.exec(xml)?.[1] ?? '';

  test('holds an unsigned rotation to an untrusted certificate; once accepted it replicates as a change', async () => {
    const okta = fixture('okta.xml');
    idp.set('rotating.xml', okta);
    const c = (await create(idp.url('rotating.xml'))).body.result;
    const fingerprint = async () =>
      (await call(r.url, 'GET', `${PATH}/${c.id}/metadata`, { headers: slashidHeaders(org) })).body.result.metadata.signing_certificates[0].fingerprint_sha256 as string;
    const first = await fingerprint();
    const credentialVersion = (await r.region.db.samlProviderCredential.findUnique({ where: { id: c.id } }))?.version;
    const metadataVersion = (await r.region.db.samlCredentialMetadata.findUnique({ where: { credentialId: c.id } }))?.version;
    // The IdP "rotates" to another certificate (Google's, valid until 2030) in an unsigned document: held, not applied.
    idp.set('rotating.xml', okta.replace(certOf(okta), certOf(fixture('google-workspace.xml'))));
    const held = async () => (await call(r.url, 'GET', `${PATH}/${c.id}/metadata`, { headers: slashidHeaders(org) })).body.result.held_metadata !== null;
    expect(await eventually(held, 15_000, 200)).toBe(true);
    expect(await fingerprint()).toBe(first);
    // An operator accepts it (README, IdP metadata trust).
    expect((await call(r.url, 'POST', `/admin/metadata-refresh/${c.id}/accept`, { headers: adminHeaders })).status).toBe(204);
    expect(await fingerprint()).not.toBe(first);
    // The new document is a replicated change of the metadata row; the credential row users PATCH is untouched.
    expect((await r.region.db.samlCredentialMetadata.findUnique({ where: { credentialId: c.id } }))?.version).not.toBe(metadataVersion);
    expect((await r.region.db.samlProviderCredential.findUnique({ where: { id: c.id } }))?.version).toBe(credentialVersion);
  });

  test('a stored document for another URL than the credential has (a raced PATCH) is re-fetched at once', async () => {
    idp.set('raced.xml', fixture('auth0.xml'));
    const c = (await create(idp.url('raced.xml'))).body.result;
    // As if a refresh of the old URL had won over a PATCH of the URL made in another region; and not due for a day.
    await r.region.db.$executeRawUnsafe(`UPDATE saml_credential_metadata SET idp_metadata_url = 'https://old.example/md.xml' WHERE credential_id = $1::uuid`, c.id);
    await r.region.db.$executeRawUnsafe(`UPDATE metadata_refresh_state SET next_at = now() + interval '1 day' WHERE credential_id = $1::uuid`, c.id);
    const healed = async () => (await r.region.db.samlCredentialMetadata.findUnique({ where: { credentialId: c.id } }))?.idpMetadataUrl === idp.url('raced.xml');
    expect(await eventually(healed, 10_000, 100)).toBe(true);
    const md = await call(r.url, 'GET', `${PATH}/${c.id}/metadata`, { headers: slashidHeaders(org) });
    expect(md.body.result.metadata.entity_id).toBe('urn:dev-tyj7qyzz.auth0.com');
  });

  test('the metadata resource shows no document stored for another URL than the credential has, until the home region fetches it again', async () => {
    idp.set('shown.xml', fixture('auth0.xml'));
    const c = (await create(idp.url('shown.xml'))).body.result;
    // The IdP goes away, so no refresh replaces the row below while the test reads it.
    idp.remove('shown.xml');
    // As if a refresh of the old URL had won over a PATCH of the URL made in another region.
    await r.region.db.$executeRawUnsafe(`UPDATE saml_credential_metadata SET idp_metadata_url = 'https://old.example/md.xml' WHERE credential_id = $1::uuid`, c.id);
    const md = await call(r.url, 'GET', `${PATH}/${c.id}/metadata`, { headers: slashidHeaders(org) });
    expect(md.status).toBe(200);
    expect(md.body.result).toMatchObject({ idp_metadata_url: idp.url('shown.xml'), metadata: null, trusted_certificates: [], held_metadata: null });
  });

  test('a document past its validUntil by less than the clock skew is taken at create and at refresh, as a sign-in takes it; one past the skew is refused', async () => {
    // The region judges metadata at FIXTURE_DATE, with the default 60 s skew (as SSO does: metadata-expiry.ts).
    const until = (secondsBefore: number) => new Date(Date.parse(FIXTURE_DATE) - secondsBefore * 1000).toISOString();
    const serve = (name: string, validUntil: string) => idp.set(name, idpMetadata({ entityId: 'https://idp.skew.test/saml', ssoUrl: 'https://idp.skew.test/sso', certs: [signer('idp-a')], validUntil }));
    const metadataOf = async (id: string) => (await call(r.url, 'GET', `${PATH}/${id}/metadata`, { headers: slashidHeaders(org) })).body.result;

    serve('within-skew.xml', until(20));
    const within = await create(idp.url('within-skew.xml'));
    expect(within.status).toBe(201);
    expect((await metadataOf(within.body.result.id)).metadata).toMatchObject({ valid_until: until(20), expired: false });

    serve('beyond-skew.xml', until(90));
    const before = await count();
    const beyond = await create(idp.url('beyond-skew.xml'));
    expect(beyond.status).toBe(400);
    expect(beyond.body.errors[0].message).toContain(`its validUntil is ${until(90)}, which has passed (beyond the 60 s clock skew allowed)`);
    expect(await count()).toBe(before);

    // A refresh brings a document within the skew: applied, not a failure.
    serve('refreshed.xml', new Date(Date.parse(FIXTURE_DATE) + 24 * 3600_000).toISOString());
    const c = (await create(idp.url('refreshed.xml'))).body.result;
    serve('refreshed.xml', until(20));
    const applied = async () => (await metadataOf(c.id)).metadata.valid_until === until(20);
    expect(await eventually(applied, 15_000, 200)).toBe(true);
    expect(await metadataOf(c.id)).toMatchObject({ metadata: { expired: false }, refresh: { consecutive_failures: 0 } });
    // Beyond the skew: the refresh fails, saying so, and the stored document stays.
    serve('refreshed.xml', until(90));
    const failing = async () => ((await metadataOf(c.id)).refresh.consecutive_failures ?? 0) > 0;
    expect(await eventually(failing, 15_000, 200)).toBe(true);
    const md = await metadataOf(c.id);
    expect(md.refresh.last_error).toContain('beyond the 60 s clock skew allowed');
    expect(md.metadata.valid_until).toBe(until(20));
  });

  test('a failed refresh keeps the last good metadata and is visible to operators', async () => {
    idp.set('flaky.xml', fixture('keycloak.xml'));
    const c = (await create(idp.url('flaky.xml'))).body.result;
    idp.remove('flaky.xml');
    const failing = async () => {
      const s = await call(r.url, 'GET', '/admin/metadata-refresh', { headers: adminHeaders });
      return s.body.credentials.some((x: { credential_id: string; consecutive_failures: number }) => x.credential_id === c.id && x.consecutive_failures > 0);
    };
    expect(await eventually(failing, 15_000, 200)).toBe(true);
    const status = await call(r.url, 'GET', '/admin/metadata-refresh', { headers: adminHeaders });
    const mine = status.body.credentials.find((x: { credential_id: string }) => x.credential_id === c.id);
    expect(mine.last_error).toMatch(/404/);
    expect(status.body.failing).toBeGreaterThan(0);
    const md = await call(r.url, 'GET', `${PATH}/${c.id}/metadata`, { headers: slashidHeaders(org) });
    expect(md.body.result.metadata.entity_id).toBe('https://lxapocd5.transplace.com:8443/auth/realms/SpringBootKeycloak');
    expect(md.body.result.refresh.last_error).toMatch(/404/);
  });
});

test("a create's IdP fetch holds no write slot, and its write is admitted again once the fetch is done", async () => {
  const writes = async () => (await call(r.url, 'GET', '/admin/replication', { headers: adminHeaders })).body.admission.writes;
  const file = `okta.xml?outside-admission=${Date.now()}`;
  idp.slow(file, 1500);
  const before = (await writes()).admitted;
  const created = call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url(file) }, headers: slashidHeaders(org) });
  expect(await eventually(async () => idp.held() === 1, 10_000, 20)).toBe(true);
  // While the IdP holds the fetch, the request holds no write slot (a slow IdP would otherwise stop the region's writes).
  expect((await writes()).in_flight).toBe(0);
  expect((await created).status).toBe(201);
  // Admitted twice: the request, then its write after the fetch (which waited for a slot like any other).
  const after = await writes();
  expect(after.admitted - before).toBe(2);
  expect(after.in_flight).toBe(0);
});

test('a metadata fetch that outlasts the consistency timeout answers 408 at the deadline and writes nothing', async () => {
  const before = await count();
  // Only this URL is held: the refresher re-fetching okta.xml for an earlier test's credential used the
  // one-shot delay of the bare name up once, and this create then answered 201.
  const file = `okta.xml?outlasts=${Date.now()}`;
  idp.slow(file, 5000);
  const res = await call(r.url, 'POST', PATH, {
    body: { idp_metadata_url: idp.url(file) },
    headers: slashidHeaders(org, { 'SlashID-Required-Consistency-Timeout': '1' }),
  });
  // Answered while the IdP still holds the fetch: the timeout, not the IdP, decides when (it answered
  // once the IdP did, up to the fetch timeout and a wait for a fetch slot after the deadline).
  const stillHeld = idp.held();
  expect(res.status).toBe(408);
  expect(res.body.errors[0].message).toMatch(/nothing was written/);
  expect(res.body.result).toBeUndefined();
  expect(stillHeld).toBe(1);
  // Nor is it written once the IdP answers.
  expect(await eventually(async () => idp.held() === 0, 10_000)).toBe(true);
  await new Promise((resolve) => setTimeout(resolve, 500));
  expect(await count()).toBe(before);
});

test('fetches cut off by the 408 give their organization\'s fetch slots back: the retry it invites is not refused', async () => {
  const mine = await createOrg(r.url, 'slots');
  // As many slow creates as the organization has fetch slots (4), each answered 408 after 1 s.
  const slow = await Promise.all(Array.from({ length: 4 }, (_, i) => {
    const file = `okta.xml?slot=${i}-${Date.now()}`;
    idp.slow(file, 8000);
    return call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url(file) }, headers: slashidHeaders(mine, { 'SlashID-Required-Consistency-Timeout': '1' }) });
  }));
  expect(slow.map((res) => res.status)).toEqual([408, 408, 408, 408]);
  // Their fetches held those slots until the IdP answered (8 s), and the retry waited 5 s for one: 429.
  const retry = await call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url('okta.xml') }, headers: slashidHeaders(mine) });
  expect(retry.status).toBe(201);
  // (The IdP server holds the cut-off requests to their end; the next tests count what it holds.)
  expect(await eventually(async () => idp.held() === 0, 15_000)).toBe(true);
});

test('a PATCH whose new metadata URL outlasts the timeout answers 408 at the deadline and changes nothing', async () => {
  const created = await create(idp.url('okta.xml'));
  expect(created.status).toBe(201);
  const id = created.body.result.id;
  const file = `keycloak.xml?outlasts=${Date.now()}`;
  idp.slow(file, 5000);
  const res = await call(r.url, 'PATCH', `${PATH}/${id}`, {
    body: { idp_metadata_url: idp.url(file) },
    headers: slashidHeaders(org, { 'SlashID-Required-Consistency-Timeout': '1' }),
  });
  const stillHeld = idp.held();
  expect(res.status).toBe(408);
  expect(res.body.errors[0].message).toMatch(/nothing was written/);
  expect(stillHeld).toBe(1);
  expect(await eventually(async () => idp.held() === 0, 10_000)).toBe(true);
  await new Promise((resolve) => setTimeout(resolve, 500));
  const after = await call(r.url, 'GET', `${PATH}/${id}`, { headers: slashidHeaders(org) });
  expect(after.body.result.idp_metadata_url).toBe(idp.url('okta.xml'));
});

test('new pins alone, whose fetch of the URL outlasts a PATCH of the URL, are refused 409 and write nothing', async () => {
  const created = await create(idp.url('okta.xml'));
  expect(created.status).toBe(201);
  const id = created.body.result.id;
  const md = await call(r.url, 'GET', `${PATH}/${id}/metadata`, { headers: slashidHeaders(org) });
  const pem = md.body.result.metadata.signing_certificates[0].pem as string;
  // The pins are judged against okta.xml; the IdP holds that fetch while another PATCH points the credential elsewhere.
  const file = `okta.xml?pins-race=${Date.now()}`;
  await call(r.url, 'PATCH', `${PATH}/${id}`, { body: { idp_metadata_url: idp.url(file) }, headers: slashidHeaders(org) });
  // Not due for a day: the region's own refresher (every 500 ms here) must not take the held fetch first.
  await r.region.db.$executeRawUnsafe(`UPDATE metadata_refresh_state SET next_at = now() + interval '1 day' WHERE credential_id = $1::uuid`, id);
  idp.slow(file, 1500);
  const pinning = call(r.url, 'PATCH', `${PATH}/${id}`, { body: { idp_trusted_certificates: [pem] }, headers: slashidHeaders(org) });
  expect(await eventually(async () => idp.held() === 1, 10_000, 20)).toBe(true);
  const moved = await call(r.url, 'PATCH', `${PATH}/${id}`, { body: { idp_metadata_url: idp.url('keycloak.xml') }, headers: slashidHeaders(org) });
  expect(moved.status).toBe(204);
  const res = await pinning;
  expect(res.status).toBe(409);
  expect(res.body.errors[0].message).toMatch(/changed while its metadata was fetched; nothing was written/);
  // keycloak.xml's document stays the credential's, under trust on first use: okta.xml's pins went nowhere.
  const after = await call(r.url, 'GET', `${PATH}/${id}/metadata`, { headers: slashidHeaders(org) });
  expect(after.body.result.idp_metadata_url).toBe(idp.url('keycloak.xml'));
  expect(after.body.result.metadata.entity_id).toMatch(/keycloak/i);
  expect(after.body.result.trusted_certificates.map((c: { source: string }) => c.source)).not.toContain('caller');
});

test('an internationalized host name is taken (as its punycode), and no Unicode spelling of an internal host gets through', async () => {
  const before = await count();
  const refusal = async (url: string) => (await create(url)).body.errors?.[0]?.message as string;
  // Past validation (it was "must match format uri"): looked up as punycode, which does not resolve here.
  expect(await refusal('http://bücher.invalid/md.xml')).toMatch(/the host "xn--bcher-kva\.invalid" does not resolve to a public address/);
  expect(await refusal('https://例え.テスト/メタ.xml')).toMatch(/xn--r8jz45g\.xn--zckzah\/%E3%83%A1%E3%82%BF\.xml/);
  // Full-width letters and circled digits read as localhost and 127.0.0.1: refused as such.
  expect(await refusal('http://ｌｏｃａｌｈｏｓｔ:9400/x')).toMatch(/the host "localhost" does not resolve to a public address/);
  expect(await refusal('http://①②⑦.0.0.1/x')).toMatch(/loopback address 127\.0\.0\.1/);
  // White space the URL parser would drop silently is refused by validation.
  expect(await refusal('http://idp.example/a b.xml')).toMatch(/idp_metadata_url: must be an absolute URL, with no white space or control character/);
  expect(await refusal('http://idp.example/\tmd.xml')).toMatch(/with no white space or control character/);
  // Another scheme is named as what it is not, not as the regular expression it fails.
  expect(await refusal('ftp://idp.example/md.xml')).toBe('Invalid request body: idp_metadata_url: must be an absolute http or https URL.');
  expect(await count()).toBe(before);
});

test('an https sign-on endpoint listed after many plain http ones is the one kept, not refused as "only over plain http"', async () => {
  // Nine plain http endpoints (more than are stored) at a host metadataAllowedHosts does not list, then okta's https ones.
  const plain = Array.from({ length: 9 }, (_, i) => `<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="http://idp${i}.example.test/sso"/>`).join('');
  idp.set('http-first.xml', fixture('okta.xml').replace('<md:SingleSignOnService ', `${plain}<md:SingleSignOnService `));
  const res = await create(idp.url('http-first.xml'));
  expect({ status: res.status, errors: res.body.errors }).toEqual({ status: 201, errors: [] });
  const md = await call(r.url, 'GET', `${PATH}/${res.body.result.id}/metadata`, { headers: slashidHeaders(org) });
  const https = 'https://dev-599847.oktapreview.com/app/expresssaml2dev599847_esaml2sp_1/exk9u78i8aMSxvkV70h7/sso/saml';
  expect(md.body.result.metadata.sso_services).toEqual([
    { binding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST', location: https },
    { binding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect', location: https },
  ]);
});

test('a sign-on endpoint with a line break or tab (which the URL parser drops) is skipped, not stored as one URL and used as another', async () => {
  const okta = 'https://dev-599847.oktapreview.com/app/expresssaml2dev599847_esaml2sp_1/exk9u78i8aMSxvkV70h7/sso/saml';
  const broken = fixture('okta.xml').replace(`Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="${okta}"`, 'Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.exa&#10;mple.test/sso&#13;&#10;Set-Cookie: a=1"');
  expect(broken).toContain('&#10;');
  idp.set('line-break-sso.xml', broken);
  const res = await create(idp.url('line-break-sso.xml'));
  expect(res.status).toBe(201);
  const md = await call(r.url, 'GET', `${PATH}/${res.body.result.id}/metadata`, { headers: slashidHeaders(org) });
  expect(md.body.result.metadata.sso_services).toEqual([{ binding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST', location: okta }]);

  idp.set('only-line-break-sso.xml', broken.replace(`Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="${okta}"`, 'Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://idp.example.test/s&#9;so"'));
  const before = await count();
  const refused = await create(idp.url('only-line-break-sso.xml'));
  expect(refused.status).toBe(400);
  expect(refused.body.errors[0].message).toMatch(/has no usable single sign-on endpoint/);
  expect(await count()).toBe(before);
});

test('a relative or otherwise not absolute http(s) URL is one problem of idp_metadata_url, in create and patch', async () => {
  const before = await count();
  const created = await create(idp.url('okta.xml'));
  expect(created.status).toBe(201);
  const id = String(created.body.result.id);
  const patch = (url: string) => call(r.url, 'PATCH', `${PATH}/${id}`, { body: { idp_metadata_url: url }, headers: slashidHeaders(org) });
  const oneProblem = (message: string) => ({ status: 400, body: { meta: {}, errors: [{ httpcode: 400, message }] } });
  for (const send of [create, patch]) {
    // A relative URL breaks both of the field's rules (absolute http(s), an IRI without white space), as does this ftp one.
    for (const url of ['/metadata.xml', 'metadata.xml', 'ftp://idp.example/a b.xml']) {
      const res = await send(url);
      expect({ status: res.status, body: res.body }).toEqual(
        oneProblem('Invalid request body: idp_metadata_url: must be an absolute http or https URL, with no white space or control character.'),
      );
    }
  }
  expect(await count()).toBe(before + 1);
  const got = await call(r.url, 'GET', `${PATH}/${id}`, { headers: slashidHeaders(org) });
  expect(got.body.result.idp_metadata_url).toBe(idp.url('okta.xml'));
});

test('deeply nested metadata is refused with a 400, quickly', async () => {
  const depth = 5000;
  const ns = 'urn:oasis:names:tc:SAML:2.0:metadata';
  idp.set('nested.xml', `<EntitiesDescriptor xmlns="${ns}">`.repeat(depth) + '</EntitiesDescriptor>'.repeat(depth));
  const res = await create(idp.url('nested.xml'));
  expect(res.status).toBe(400);
  expect(res.body.errors[0].message).toMatch(/nested/);
});
