/**
 * Hostile tenants and hostile IdPs against one region (real Postgres, Redis and HTTP): documents built to stall
 * the parser, text Postgres cannot store (in requests and in fetched metadata), one tenant's failing metadata
 * next to everyone else's in the refresher, secrets in answers, and what error messages quote of a document.
 */
import { hostile, padded } from '../../bench/metadata-documents';
import { sharedParsePool } from '../../src/metadata/parse-pool';
import { isStorableText } from '../../src/http/storable-text';
import { MetadataRefresher } from '../../src/provider-credentials/metadata-refresh';
import { adminHeaders, call, createOrg, slashidHeaders } from '../support/harness';
import { fixture, startIdpServer, type IdpServer } from '../support/idp-server';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { bearer, issueToken } from '../infisical/support/fixtures';

const PATH = '/organizations/sso/saml/provider-credentials';
const SSO = '/api/v1/sso/config';
let r: InProcessRegion;
let idp: IdpServer;
let org: { id: string; api_key: string };

beforeAll(async () => {
  idp = await startIdpServer();
  // A long refresh period: the tests run the refresher themselves.
  r = await startInProcess('hostile', ['us-iowa'], { metadataAllowedHosts: [idp.hostPort], metadataRefreshIntervalSeconds: 3600 });
  org = await createOrg(r.url, 'hostile');
});
afterAll(async () => {
  await r.stop();
  await idp.close();
});

const credentials = () => r.region.db.samlProviderCredential.count({ where: { deletedAt: null } });
const create = (url: string, extra: object = {}) => call(r.url, 'POST', PATH, { body: { idp_metadata_url: url, ...extra }, headers: slashidHeaders(org) });
const okta = fixture('okta.xml');

function expectSlashIdError(res: { status: number; body: any }, status: number, message: RegExp) {
  expect(res.status).toBe(status);
  expect(res.body).toEqual({ meta: {}, errors: [{ httpcode: status, message: expect.stringMatching(message) }] });
}

describe('no tenant can stall the region', () => {
  test.each(Object.entries(hostile()))('%s: refused with a 400, the region still answering', async (name, xml) => {
    const file = `hostile-${name.replace(/[^a-z]+/gi, '-').toLowerCase()}.xml`;
    idp.set(file, xml);
    const before = await credentials();
    const health = call(r.url, 'GET', '/healthz');
    const res = await create(idp.url(file));
    expectSlashIdError(res, 400, /^idp_metadata_url was refused: /);
    expect((await health).status).toBe(200);
    expect(await credentials()).toBe(before);
  });

  test('documents are parsed in a worker thread, off the event loop', async () => {
    const before = sharedParsePool().stats.inWorker;
    idp.set('padded.xml', padded({ elements: 500, chars: 200_000 }));
    expect((await create(idp.url('padded.xml'))).status).toBe(201);
    expect(sharedParsePool().stats.inWorker).toBe(before + 1);
  });
});

describe('text Postgres cannot store is refused at the edge with a 400', () => {
  test.each([
    ['NUL', '&#0;'],
    ['a lone surrogate', '&#xD800;'],
    ['a raw NUL', '\u0000'],
  ])('fetched metadata with %s: 400, nothing stored', async (_name, bad) => {
    idp.set('unstorable.xml', okta.replace('entityID="', `entityID="${bad}`));
    const before = await credentials();
    expectSlashIdError(await create(idp.url('unstorable.xml')), 400, /not well-formed XML/);
    expect(await credentials()).toBe(before);
  });

  test.each([
    ['a label with NUL', { label: 'a\u0000b' }, /^The field label of the request body contains text that cannot be stored/],
    ['a label with a lone surrogate', { label: 'a\ud800' }, /^The field label of the request body/],
    ['an email claim with a lone low surrogate', { email_claims: ['\udc00'] }, /^The field email_claims\.0 of the request body/],
    ['a field name with NUL', { label: 'x', 'bad\u0000': 1 }, /^A field name in the request body contains text that cannot be stored/],
  ])('SlashID create with %s', async (_name, extra, message) => {
    const before = await credentials();
    expectSlashIdError(await create(idp.url('okta.xml'), extra), 400, message);
    expect(await credentials()).toBe(before);
  });

  test('a long field path is cut between characters: the refusal of text that cannot be stored is itself storable', async () => {
    // Longer than the 120 characters shown, and cut at 120 UTF-16 units it would fall inside a pair.
    const name = `a${'\u{1F600}'.repeat(130)}`;
    const before = await credentials();
    const res = await create(idp.url('okta.xml'), { [name]: 'x\u0000' });
    expectSlashIdError(res, 400, /^The field \["a(\u{1F600})+… of the request body contains text that cannot be stored/u);
    expect(isStorableText(res.body.errors[0].message as string)).toBe(true);
    expect(await credentials()).toBe(before);
  });

  test('SlashID PATCH, path and query', async () => {
    const created = await create(idp.url('okta.xml'));
    expect(created.status).toBe(201);
    const id = created.body.result.id as string;
    expectSlashIdError(await call(r.url, 'PATCH', `${PATH}/${id}`, { body: { label: '\u0000' }, headers: slashidHeaders(org) }), 400, /^The field label of the request body/);
    expectSlashIdError(await call(r.url, 'GET', `${PATH}/%00`, { headers: slashidHeaders(org) }), 400, /URL path contains text that cannot be stored/);
    expectSlashIdError(await call(r.url, 'GET', `${PATH}/%ED%A0%80`, { headers: slashidHeaders(org) }), 400, /malformed %-escape/);
    expectSlashIdError(await call(r.url, 'GET', `${PATH}?limit=%00`, { headers: slashidHeaders(org) }), 400, /query parameter limit/);
  });

  test('a body nested deeper than 32 levels is a 400 that says so (it said "a NUL character"), in both dialects, nothing stored', async () => {
    let deep: unknown = 'x';
    for (let i = 0; i < 40; i++) deep = [deep];
    const before = await credentials();
    expectSlashIdError(await create(idp.url('okta.xml'), { label: 'deep', x: deep }), 400, /^The field x\.0\.0\.0.* of the request body is nested more than 32 levels deep; no field of this API is\.$/);
    expect(await credentials()).toBe(before);
    const token = await issueToken(r.url, org.id);
    const infisical = await call(r.url, 'POST', SSO, { body: { organizationId: org.id, x: deep }, headers: bearer(token) });
    expect(infisical.body).toEqual({ reqId: expect.any(String), statusCode: 400, message: expect.stringMatching(/nested more than 32 levels deep/), error: 'BadRequest' });
    expect(infisical.body.message).not.toMatch(/NUL/);
    // The bound exactly: 32 levels of nesting under the body are refused as too deep, 31 reach the schema.
    const nested = (levels: number) => Array.from({ length: levels }).reduce<unknown>((inner) => [inner], 'x');
    expectSlashIdError(await create(idp.url('okta.xml'), { label: 'deep', x: nested(32) }), 400, /nested more than 32 levels deep/);
    expectSlashIdError(await create(idp.url('okta.xml'), { label: 'deep', x: nested(31) }), 400, /unknown field 'x'/);
    expect(await credentials()).toBe(before);
  });

  test('Infisical body and query: 400 in the Infisical envelope', async () => {
    const token = await issueToken(r.url, org.id);
    const body = await call(r.url, 'POST', SSO, { body: { organizationId: org.id, authProvider: 'okta-saml', issuer: 'a\u0000' }, headers: bearer(token) });
    expect(body.status).toBe(400);
    expect(body.body).toEqual({ reqId: expect.any(String), statusCode: 400, message: expect.stringMatching(/^The field issuer of the request body contains text that cannot be stored/), error: 'BadRequest' });
    const query = await call(r.url, 'GET', `${SSO}?organizationId=%00`, { headers: bearer(token) });
    expect(query.status).toBe(400);
    expect(query.body).toMatchObject({ statusCode: 400, error: 'BadRequest', message: expect.stringMatching(/query parameter organizationId/) });
  });

  test('admin API: body and path', async () => {
    expectSlashIdError(await call(r.url, 'POST', '/admin/organizations', { body: { name: 'x\u0000' }, headers: adminHeaders }), 400, /^The field name of the request body contains/);
    expectSlashIdError(await call(r.url, 'GET', '/admin/organizations/%E0%A4%A', { headers: adminHeaders }), 400, /malformed %-escape/);
  });
});

describe('the metadata refresher isolates each credential', () => {
  test('one credential whose IdP turns hostile is recorded, backed off and shown; the others are refreshed', async () => {
    const own = await createOrg(r.url, 'refresh');
    const ids: string[] = [];
    for (const name of ['first', 'second', 'third']) {
      idp.set(`refresh-${name}.xml`, okta);
      const res = await call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url(`refresh-${name}.xml`) }, headers: slashidHeaders(own) });
      expect(res.status).toBe(201);
      ids.push(res.body.result.id);
    }
    // The hostile one comes first in the cycle; the others change (their entity id; the certificate stays, a
    // change of it without a trusted signature would be held), so their refresh writes.
    idp.set('refresh-first.xml', okta.replace('entityID="', 'entityID="&#0;'));
    idp.set('refresh-second.xml', okta.replace(/entityID="[^"]*"/, 'entityID="https://accounts.google.com/o/saml2?idpid=C03ddq7te"'));
    idp.set('refresh-third.xml', okta.replace(/entityID="[^"]*"/, 'entityID="urn:dev-tyj7qyzz.auth0.com"'));
    await r.region.db.$executeRawUnsafe(`UPDATE metadata_refresh_state SET next_at = now() - interval '1 hour' WHERE credential_id = $1::uuid`, ids[0]);
    await r.region.db.$executeRawUnsafe(`UPDATE metadata_refresh_state SET next_at = now() - interval '1 minute' WHERE credential_id = ANY($1::uuid[])`, ids.slice(1));

    const refresher = new MetadataRefresher({ db: r.region.db, repl: r.region.replication.repl, redis: r.region.replication.redis, config: r.deployment.configFor('us-iowa'), log: r.region.log });
    expect(await refresher.runOnce()).toBeGreaterThanOrEqual(3);
    expect(refresher.failed).toBe(1);

    const entity = async (id: string) => (await call(r.url, 'GET', `${PATH}/${id}/metadata`, { headers: slashidHeaders(own) })).body.result;
    expect((await entity(ids[1] ?? '')).metadata.entity_id).toBe('https://accounts.google.com/o/saml2?idpid=C03ddq7te');
    expect((await entity(ids[2] ?? '')).metadata.entity_id).toBe('urn:dev-tyj7qyzz.auth0.com');
    const failed = await entity(ids[0] ?? '');
    expect(failed.metadata.entity_id).toBe('http://www.okta.com/exk9u78i8aMSxvkV70h7'); // the last good document is kept
    expect(failed.refresh.consecutive_failures).toBe(1);
    expect(Date.parse(failed.refresh.next_at)).toBeGreaterThan(Date.now() + 30_000); // backed off

    const admin = await call(r.url, 'GET', '/admin/metadata-refresh', { headers: adminHeaders });
    expect(admin.body.failing).toBe(1);
    expect(admin.body.credentials[0]).toMatchObject({ credential_id: ids[0], consecutive_failures: 1, last_error_code: 'idp_metadata_not_xml' });
    // Nothing is due any more: the failing credential does not come first on every tick.
    expect(await refresher.runOnce()).toBe(0);
  });
});

describe('secrets', () => {
  test('answers carrying an API key or an access token say Cache-Control: no-store', async () => {
    const created = await call(r.url, 'POST', '/admin/organizations', { body: { name: 'secret' }, headers: adminHeaders });
    expect(created.status).toBe(201);
    expect(created.headers.get('cache-control')).toBe('no-store');
    const rotated = await call(r.url, 'POST', `/admin/organizations/${created.body.id}/api-keys`, { headers: adminHeaders });
    expect(rotated.status).toBe(201);
    expect(rotated.body.api_key).toMatch(/^sidk_/);
    expect(rotated.headers.get('cache-control')).toBe('no-store');
    const token = await call(r.url, 'POST', `/admin/organizations/${created.body.id}/access-tokens`, { headers: adminHeaders });
    expect(token.status).toBe(201);
    expect(token.headers.get('cache-control')).toBe('no-store');
  });

  test("every tenant's answer says Cache-Control: no-store: the organization is in the headers, not the URL", async () => {
    const made = await create(idp.url('okta.xml'));
    const token = await issueToken(r.url, org.id);
    expect(made.status).toBe(201);
    const answers = [
      made,
      await call(r.url, 'GET', `${PATH}/${made.body.result.id}`, { headers: slashidHeaders(org) }),
      await call(r.url, 'GET', PATH, { headers: slashidHeaders(org) }),
      await call(r.url, 'GET', `${PATH}/${made.body.result.id}/metadata`, { headers: slashidHeaders(org) }),
      await call(r.url, 'GET', `${PATH}/00000000-0000-4000-8000-000000000000`, { headers: slashidHeaders(org) }),
      await call(r.url, 'GET', `${SSO}?organizationId=${org.id}`, { headers: bearer(token) }),
      await call(r.url, 'GET', '/healthz'),
    ];
    expect(answers.map((a) => a.status)).toEqual([201, 200, 200, 200, 404, 404, 200]);
    for (const a of answers) expect(a.headers.get('cache-control')).toBe('no-store');
    // What may be kept says so itself.
    expect((await call(r.url, 'GET', '/sso/saml/jwks.json')).headers.get('cache-control')).toBe('public, max-age=3600');
  });

  test('errors quote a short, printable excerpt of what the IdP served', async () => {
    idp.set('long-title.html', `<!DOCTYPE html><html><head><title>Log in\u0007${'x'.repeat(190)}</title></head><body>${'y'.repeat(50_000)}</body></html>`);
    const page = await create(idp.url('long-title.html'));
    expectSlashIdError(page, 400, /HTML page titled "Log in\?x+…"/);
    const longEntity = 'urn:'.padEnd(5000, 'z');
    idp.set('long-entity.xml', fixture('sp-metadata-not-idp.xml').replace(/entityID="[^"]*"/, `entityID="${longEntity}"`));
    const sp = await create(idp.url('long-entity.xml'));
    expectSlashIdError(sp, 400, /service-provider \(SP\) metadata for "urn:z+…"/);
    expect(sp.body.errors[0].message.length).toBeLessThan(600);
  });
});
