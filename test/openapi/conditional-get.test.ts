/**
 * Conditional GETs: every answer with a body carries Express's ETag, and a GET whose If-None-Match matches
 * it (or is `*`) is answered 304 without a body. The answers of these tests go through the OpenAPI check
 * (test/support/openapi-setup.ts): the document must list the 304 of each GET, or the test that got it fails.
 */
import { call, createOrg, slashidHeaders, adminHeaders } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { bearer, configBody, issueToken, makeCerts, SSO } from '../infisical/support/fixtures';

const PATH = '/organizations/sso/saml/provider-credentials';
let r: InProcessRegion;
let idp: IdpServer;
/**
 * Made before any connection exists: without the run's global setup makeCerts runs openssl synchronously,
 * and on a loaded host that held the event loop past the region's 5 s keep-alive; the next request then went out on an idle connection whose
 * close was overdue (the region is in this process: its timer ran right after) and met ECONNRESET.
 */
const certs = makeCerts();

beforeAll(async () => {
  idp = await startIdpServer();
  r = await startInProcess('conditional-get', ['us-iowa'], { metadataAllowedHosts: [idp.hostPort] });
});
afterAll(async () => {
  await r?.stop();
  await idp?.close();
});

/** GETs `path` plainly, then with its ETag and with `*`; returns the ETag of the first answer. */
async function revalidates(path: string, headers: Record<string, string>): Promise<string> {
  const first = await call(r.url, 'GET', path, { headers });
  expect(first.status).toBe(200);
  const etag = first.headers.get('etag');
  expect(etag).toMatch(/^W\/"/);
  for (const condition of [etag ?? '', '*']) {
    // fetch sends `Cache-Control: no-cache` with a conditional header unless one is given, and Express
    // then answers 200 (curl and most HTTP clients send none).
    const again = await call(r.url, 'GET', path, { headers: { ...headers, 'if-none-match': condition, 'cache-control': 'max-age=0' } });
    expect({ status: again.status, body: again.body }).toEqual({ status: 304, body: null });
  }
  return etag ?? '';
}

test('the SlashID reads answer a matching If-None-Match 304, documented; a changed credential answers 200 again', async () => {
  const org = await createOrg(r.url, 'conditional');
  const created = await call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url('okta.xml'), label: 'before' }, headers: slashidHeaders(org) });
  expect(created.status).toBe(201);
  const one = `${PATH}/${created.body.result.id as string}`;
  await revalidates(PATH, slashidHeaders(org));
  const etag = await revalidates(one, slashidHeaders(org));
  await revalidates(`${one}/metadata`, slashidHeaders(org));

  expect((await call(r.url, 'PATCH', one, { body: { label: 'after' }, headers: slashidHeaders(org) })).status).toBe(204);
  const changed = await call(r.url, 'GET', one, { headers: slashidHeaders(org, { 'if-none-match': etag, 'cache-control': 'max-age=0' }) });
  expect(changed.status).toBe(200);
  expect(changed.body.result.label).toBe('after');
  expect(changed.headers.get('etag')).not.toBe(etag);
});

test('the Infisical read and the admin API answer it too', async () => {
  const org = await createOrg(r.url, 'conditional-infisical');
  const token = await issueToken(r.url, org.id);
  const created = await call(r.url, 'POST', SSO, { body: configBody(org.id, certs.pem), headers: bearer(token) });
  expect(created.status).toBe(200);
  await revalidates(`${SSO}?organizationId=${org.id}`, bearer(token));
  await revalidates(`/admin/organizations/${org.id}`, adminHeaders);
});

test('the document lists a 304 for each GET that answers 200, and for no other method', async () => {
  const doc = (await call(r.url, 'GET', '/openapi.json')).body as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };
  const listed = Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, op]) => ({ op: `${method} ${path}`, answers200: '200' in op.responses && method === 'get', has304: '304' in op.responses })),
  );
  expect(listed.filter((o) => o.answers200 !== o.has304)).toEqual([]);
  expect(listed.filter((o) => o.has304).map((o) => o.op)).toEqual(expect.arrayContaining([`get ${PATH}`, `get ${PATH}/{id}`, `get ${SSO}`]));
});

test('a write carrying If-Match (but *) or If-None-Match is a 400 in its dialect and writes nothing: the service evaluates no precondition on a write', async () => {
  const org = await createOrg(r.url, 'conditional-write');
  const created = await call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url('okta.xml'), label: 'kept' }, headers: slashidHeaders(org) });
  const one = `${PATH}/${created.body.result.id as string}`;
  const { headers: read } = await call(r.url, 'GET', one, { headers: slashidHeaders(org) });
  const etag = read.get('etag') ?? '';
  // Before, each was carried out (204): a client guarding against lost updates overwrote what it never saw.
  for (const [name, value] of [['if-match', '"stale"'], ['if-match', etag], ['if-none-match', '*'], ['if-none-match', etag]] as const) {
    const patched = await call(r.url, 'PATCH', one, { body: { label: 'overwritten' }, headers: slashidHeaders(org, { [name]: value }) });
    expect({ status: patched.status, body: patched.body }).toEqual({ status: 400, body: { meta: {}, errors: [{ httpcode: 400, message: expect.stringMatching(/^If-(None-)?Match .* is not evaluated for a write/) }] } });
  }
  expect((await call(r.url, 'DELETE', one, { headers: slashidHeaders(org, { 'if-match': '"stale"' }) })).status).toBe(400);
  expect((await call(r.url, 'GET', one, { headers: slashidHeaders(org) })).body.result.label).toBe('kept');

  const token = await issueToken(r.url, org.id);
  const refused = await call(r.url, 'POST', SSO, { body: configBody(org.id, certs.pem), headers: { ...bearer(token), 'if-none-match': '*' } });
  expect(refused.body).toMatchObject({ statusCode: 400, error: 'BadRequest', message: expect.stringContaining('If-None-Match') });
  expect((await call(r.url, 'GET', `${SSO}?organizationId=${org.id}`, { headers: bearer(token) })).status).toBe(404);
  const renamed = await call(r.url, 'POST', '/admin/organizations', { body: { name: 'x' }, headers: { ...adminHeaders, 'if-match': '"x"' } });
  expect(renamed.body).toEqual({ meta: {}, errors: [{ httpcode: 400, message: expect.stringContaining('If-Match') }] });

  // If-Match: * asks only that the resource exist: taken, and a missing one is the route's 404.
  expect((await call(r.url, 'PATCH', one, { body: { label: 'changed' }, headers: slashidHeaders(org, { 'if-match': '*' }) })).status).toBe(204);
  expect((await call(r.url, 'PATCH', `${PATH}/00000000-0000-0000-0000-000000000000`, { body: { label: 'x' }, headers: slashidHeaders(org, { 'if-match': '*' }) })).status).toBe(404);
});
