/**
 * Edges of the request surface a review found (each answered wrongly before): body charsets other than
 * UTF-8, an empty chunked body, an upper-case parent id, OPTIONS, unstorable text on the change and SSO
 * paths, and a certificate field carrying more than its one certificate. One region in process.
 */
import http from 'node:http';
import zlib from 'node:zlib';
import { adminHeaders, call, createOrg } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { bearer, configBody, issueToken, makeCerts, SSO, type TestCerts } from '../infisical/support/fixtures';

const P = '/organizations/sso/saml/provider-credentials';
let r: InProcessRegion;
let idp: IdpServer;
let org: { id: string; api_key: string };
let headers: Record<string, string>;
let credentialId: string;
let certs: TestCerts;

beforeAll(async () => {
  certs = makeCerts();
  idp = await startIdpServer();
  r = await startInProcess('request-edges', ['us-iowa'], { metadataAllowedHosts: [idp.hostPort] });
  org = await createOrg(r.url, 'edges');
  headers = { 'SlashID-OrgID': org.id, 'SlashID-API-Key': org.api_key };
  const created = await call(r.url, 'POST', P, { body: { idp_metadata_url: idp.url('okta.xml'), label: 'before' }, headers });
  credentialId = created.body.result.id;
});
afterAll(async () => {
  await r.stop();
  await idp.close();
});

/** A raw request: `body` undefined sends none; `chunked` sends it with Transfer-Encoding: chunked. */
function raw(method: string, path: string, hdrs: Record<string, string>, body?: Buffer, chunked = false): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${r.url}${path}`, { method, headers: { ...hdrs, ...(chunked ? { 'transfer-encoding': 'chunked' } : body ? { 'content-length': String(body.length) } : {}) } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body: Buffer.concat(parts).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const label = async () => (await call(r.url, 'GET', `${P}/${credentialId}`, { headers })).body.result.label;

test('a JSON body in any charset but UTF-8 is a 400, and nothing is written (UTF-7 "+ADw-" would have been "<")', async () => {
  for (const charset of ['utf-7', 'utf-16', 'UTF-16LE', 'utf-32', 'latin1']) {
    const body = charset.toLowerCase().startsWith('utf-16') ? Buffer.from('{"label":"x"}', 'utf16le') : Buffer.from('{"label":"+ADw-script+AD4-x"}');
    const res = await raw('PATCH', `${P}/${credentialId}`, { ...headers, 'content-type': `application/json; charset=${charset}` }, body);
    expect({ charset, status: res.status, body: JSON.parse(res.body) }).toEqual({ charset, status: 400, body: { meta: {}, errors: [{ httpcode: 400, message: 'The request body must be UTF-8 encoded JSON.' }] } });
  }
  // A "charset=utf-8" inside another parameter's quoted value is that value: the charset is utf-7.
  const hidden = await raw('PATCH', `${P}/${credentialId}`, { ...headers, 'content-type': 'application/json; x="; charset=utf-8"; charset=utf-7' }, Buffer.from('{"label":"+ADw-script+AD4-x"}'));
  expect(hidden.status).toBe(400);
  expect(await label()).toBe('before');
  for (const charset of ['utf-8', 'UTF-8', 'utf8', '"utf-8"']) {
    const res = await raw('PATCH', `${P}/${credentialId}`, { ...headers, 'content-type': `application/json; charset=${charset}` }, Buffer.from(`{"label":"${charset.replace(/"/g, '')}"}`));
    expect({ charset, status: res.status, body: res.body }).toEqual({ charset, status: 204, body: "" });
  }
});

test('a Content-Type naming charset twice is a 400 in either dialect, and nothing is written (which one counts depends on the parser)', async () => {
  const twice = (type: string) => `The Content-Type names charset more than once (got '${type}'); send it once (parsers differ on which one counts).`;
  const before = await label();
  for (const type of ['application/json; charset=utf-8; charset=utf-16', 'application/json; charset="utf-8"; CHARSET=utf-8']) {
    const res = await raw('PATCH', `${P}/${credentialId}`, { ...headers, 'content-type': type }, Buffer.from('{"label":"twice"}'));
    expect({ status: res.status, body: JSON.parse(res.body) }).toEqual({ status: 400, body: { meta: {}, errors: [{ httpcode: 400, message: twice(type) }] } });
  }
  expect(await label()).toBe(before);
  const token = await issueToken(r.url, org.id);
  const type = 'application/json; charset=utf-8; charset=utf-8';
  const infisical = await raw('POST', SSO, { ...bearer(token), 'content-type': type }, Buffer.from(JSON.stringify(configBody(org.id, certs.pem))));
  expect({ status: infisical.status, message: JSON.parse(infisical.body).message }).toEqual({ status: 400, message: twice(type) });
  expect((await call(r.url, 'GET', `${SSO}?organizationId=${org.id}`, { headers: bearer(token) })).status).toBe(404);
  // A "charset=" inside a quoted value is that value's text, not a second charset.
  const quoted = await raw('PATCH', `${P}/${credentialId}`, { ...headers, 'content-type': 'application/json; x="; charset=utf-16"; charset=utf-8' }, Buffer.from('{"label":"quoted"}'));
  expect(quoted.status).toBe(204);
});

test('a compressed body is taken; an unsupported Content-Encoding or one that does not decompress says so, not "must be UTF-8"', async () => {
  const json = Buffer.from('{"label":"compressed"}');
  const patch = (encoding: string, body: Buffer) => raw('PATCH', `${P}/${credentialId}`, { ...headers, 'content-type': 'application/json', 'content-encoding': encoding }, body);
  const unsupported = (encoding: string) => `Content-Encoding '${encoding}' is not supported: send the body uncompressed, or compressed with gzip, deflate or br.`;
  const corrupt = 'The request body could not be decompressed as its Content-Encoding says (corrupt or cut off, or not compressed at all).';
  const before = await label();
  const cases: [string, Buffer, string][] = [
    ['zstd', json, unsupported('zstd')],
    ['gzip, br', zlib.brotliCompressSync(zlib.gzipSync(json)), unsupported('gzip, br')],
    ['gzip', json, corrupt],
    ['gzip', zlib.gzipSync(json).subarray(0, 12), corrupt],
    ['br', json, corrupt],
  ];
  for (const [encoding, body, message] of cases) {
    const res = await patch(encoding, body);
    expect({ encoding, status: res.status, body: JSON.parse(res.body) }).toEqual({ encoding, status: 400, body: { meta: {}, errors: [{ httpcode: 400, message }] } });
  }
  expect(await label()).toBe(before);
  for (const [encoding, body] of [['gzip', zlib.gzipSync(json)], ['br', zlib.brotliCompressSync(json)]] as const) {
    expect({ encoding, status: (await patch(encoding, body)).status }).toEqual({ encoding, status: 204 });
  }
  expect(await label()).toBe('compressed');
  await call(r.url, 'PATCH', `${P}/${credentialId}`, { body: { label: before }, headers });
});

test('an empty body sent chunked is "a JSON request body is required", as with Content-Length: 0', async () => {
  const token = await issueToken(r.url, org.id);
  for (const [path, method, h] of [[SSO, 'POST', bearer(token)], [`${P}/${credentialId}`, 'PATCH', headers]] as const) {
    for (const chunked of [true, false]) {
      const res = await raw(method, path, { ...h, 'content-type': 'application/json' }, chunked ? Buffer.alloc(0) : Buffer.alloc(0), chunked);
      expect({ path, chunked, status: res.status, message: res.body.includes('A JSON request body is required.') }).toEqual({ path, chunked, status: 400, message: true });
    }
  }
});

test('a parent id given in upper case is stored, answered and replicated in lower case', async () => {
  const parent = await createOrg(r.url, 'parent');
  const child = await call(r.url, 'POST', '/admin/organizations', { body: { name: 'child', parent_id: parent.id.toUpperCase() }, headers: adminHeaders });
  expect(child.status).toBe(201);
  expect(child.body.parent_id).toBe(parent.id);
  expect((await call(r.url, 'GET', `/admin/organizations/${child.body.id}`, { headers: adminHeaders })).body.parent_id).toBe(parent.id);
});

test('OPTIONS is answered like any method a path does not take, in the dialect\'s envelope', async () => {
  for (const [path, allow] of [[P, 'GET, HEAD, POST'], [`${P}/${credentialId}`, 'DELETE, GET, HEAD, PATCH'], ['/organizations/replication/changes/x', 'GET, HEAD'], ['/admin/organizations', 'GET, HEAD, POST'], ['/sso/saml/jwks.json', 'GET, HEAD']]) {
    const res = await fetch(`${r.url}${path}`, { method: 'OPTIONS', headers });
    expect({ path, status: res.status, allow: res.headers.get('allow'), body: await res.json() }).toEqual({
      path, status: 405, allow, body: { meta: {}, errors: [{ httpcode: 405, message: `This path does not take OPTIONS; it takes ${allow}.` }] },
    });
  }
  // Infisical's paths answer 404, as Infisical's own server does.
  const infisical = await raw('OPTIONS', SSO, {});
  expect({ status: infisical.status, error: JSON.parse(infisical.body).error }).toEqual({ status: 404, error: 'NotFound' });
});

test('a CORS preflight is refused like any OPTIONS, with no Access-Control-Allow-* header: the API keys are for back ends, never a browser (README, API)', async () => {
  const preflight = { Origin: 'https://app.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'slashid-api-key, slashid-orgid, content-type' };
  for (const path of [P, SSO, '/sso/saml/jwks.json']) {
    const res = await fetch(`${r.url}${path}`, { method: 'OPTIONS', headers: preflight });
    const cors = [...res.headers.keys()].filter((h) => h.startsWith('access-control-'));
    expect({ path, status: res.status, cors }).toEqual({ path, status: path === SSO ? 404 : 405, cors: [] });
    await res.arrayBuffer();
  }
});

test('a method a path does not take is a 405 naming those it takes (Allow), once authenticated; a path the service does not have stays a 404', async () => {
  const cases: [string, string, string, Record<string, string>][] = [
    ['PUT', `${P}/${credentialId}`, 'DELETE, GET, HEAD, PATCH', headers],
    ['DELETE', P, 'GET, HEAD, POST', headers],
    ['POST', `${P.toUpperCase()}/${credentialId}/`, 'DELETE, GET, HEAD, PATCH', headers],
    ['PUT', '/admin/organizations/x', 'DELETE, GET, HEAD', adminHeaders],
  ];
  for (const [method, path, allow, hdrs] of cases) {
    const res = await fetch(`${r.url}${path}`, { method, headers: hdrs });
    expect({ method, path, status: res.status, allow: res.headers.get('allow'), body: await res.json() }).toEqual({
      method, path, status: 405, allow, body: { meta: {}, errors: [{ httpcode: 405, message: `This path does not take ${method}; it takes ${allow}.` }] },
    });
  }
  for (const [method, path] of [['PUT', `${P}/${credentialId}/more`], ['GET', '/no/such/path']]) {
    const res = await fetch(`${r.url}${path}`, { method, headers });
    expect({ method, path, status: res.status, allow: res.headers.get('allow') }).toEqual({ method, path, status: 404, allow: null });
    await res.arrayBuffer();
  }
  // Infisical's: 404 as Infisical answers.
  const infisical = await fetch(`${r.url}${SSO}`, { method: 'DELETE' });
  expect({ status: infisical.status, error: ((await infisical.json()) as { error: string }).error }).toEqual({ status: 404, error: 'NotFound' });
});

test('without valid credentials a method a path does not take is a 401 on the SlashID and admin paths (credentials first); OPTIONS a 405 either way', async () => {
  const cases: [string, string, Record<string, string>, number][] = [
    ['PUT', `${P}/${credentialId}`, {}, 401],
    ['PUT', `${P}/${credentialId}`, { ...headers, 'SlashID-API-Key': 'not-a-key' }, 401],
    // The change path looked at the method first: a 405 naming GET, HEAD to a caller without a key.
    ['PUT', '/organizations/replication/changes/x', {}, 401],
    ['PUT', '/organizations/replication/changes/x', headers, 405],
    ['PUT', '/admin/organizations/x', {}, 401],
    ['OPTIONS', `${P}/${credentialId}`, {}, 405],
    ['OPTIONS', '/organizations/replication/changes/x', {}, 405],
    // The public paths have no credentials to check.
    ['PUT', '/sso/saml/jwks.json', {}, 405],
  ];
  for (const [method, path, hdrs, status] of cases) {
    const res = await fetch(`${r.url}${path}`, { method, headers: hdrs });
    const body = (await res.json()) as { errors: { httpcode: number }[] };
    expect({ method, path, status: res.status, httpcode: body.errors[0]?.httpcode }).toEqual({ method, path, status, httpcode: status });
  }
  // Infisical's paths: 404 with or without a token, as Infisical's own server answers a route it does not have.
  const token = await issueToken(r.url, org.id);
  for (const hdrs of [{}, bearer(token)]) {
    const res = await fetch(`${r.url}${SSO}`, { method: 'DELETE', headers: hdrs });
    expect({ status: res.status, error: ((await res.json()) as { error: string }).error }).toEqual({ status: 404, error: 'NotFound' });
  }
});

test('no answer names the framework that serves it (X-Powered-By), whichever route or error gives it', async () => {
  for (const [method, path, hdrs] of [['GET', '/healthz', {}], ['GET', P, headers], ['GET', '/no/such/path', {}], ['OPTIONS', P, headers]] as const) {
    const res = await fetch(`${r.url}${path}`, { method, headers: hdrs });
    await res.arrayBuffer();
    expect({ path, method, poweredBy: res.headers.get('x-powered-by') }).toEqual({ path, method, poweredBy: null });
  }
});

test('text Postgres cannot store is a 400 on the change and SSO paths too', async () => {
  for (const path of ['/organizations/replication/changes/%00', '/sso/saml/%00/metadata', '/sso/saml/%ED%A0%80/login']) {
    const res = await raw('GET', path, headers);
    expect({ path, status: res.status, body: res.body }).toEqual({ path, status: 400, body: expect.stringMatching(/cannot be stored|malformed %-escape/) });
  }
});

test('a certificate field with anything beside its one certificate is refused, and nothing is stored', async () => {
  const token = await issueToken(r.url, (await createOrg(r.url, 'certs')).id);
  const orgId = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')).sub as string;
  for (const cert of [`${certs.pem}${certs.expiredPem}`, `not a certificate\n${certs.pem}`, `${certs.pem}trailing`]) {
    const res = await call(r.url, 'POST', SSO, { body: configBody(orgId, cert), headers: bearer(token) });
    expect(res.status).toBe(422);
    expect(JSON.stringify(res.body.message)).toMatch(/text outside its one \\"BEGIN CERTIFICATE\\" block/);
  }
  // The same inside one block: the base64 of two certificates' bytes, or of one with junk after it.
  const derOf = (pem: string) => Buffer.from(pem.replace(/-----[A-Z ]+-----|\s+/g, ''), 'base64');
  const block = (bytes: Buffer) => `-----BEGIN CERTIFICATE-----\n${bytes.toString('base64').match(/.{1,64}/g)?.join('\n')}\n-----END CERTIFICATE-----\n`;
  for (const bytes of [Buffer.concat([derOf(certs.pem), derOf(certs.expiredPem)]), Buffer.concat([derOf(certs.pem), Buffer.from('JUNKJUNKJUNK')])]) {
    for (const cert of [block(bytes), bytes.toString('base64')]) {
      const res = await call(r.url, 'POST', SSO, { body: configBody(orgId, cert), headers: bearer(token) });
      expect({ status: res.status, message: JSON.stringify(res.body.message) }).toEqual({ status: 422, message: expect.stringMatching(/byte\(s\) after the certificate/) });
    }
  }
  expect((await call(r.url, 'GET', `${SSO}?organizationId=${orgId}`, { headers: bearer(token) })).status).toBe(404);
  expect((await call(r.url, 'POST', SSO, { body: configBody(orgId, `\n${certs.pem}\n`), headers: bearer(token) })).status).toBe(200);
});

test('a 404 for an id that is no UUID quotes at most its first 64 characters (a 5,000-character id was echoed whole)', async () => {
  const long = 'a'.repeat(5000);
  const token = await issueToken(r.url, org.id);
  for (const [path, hdrs] of [
    [`${P}/${long}`, headers],
    [`/admin/organizations/${long}`, adminHeaders],
    [`/admin/organizations/${long}/access-tokens`, adminHeaders],
    [`/admin/replication/changes/${long}`, adminHeaders],
    [`/api/v1/${long}`, bearer(token)],
  ] as const) {
    const res = await raw(path.includes('access-tokens') ? 'POST' : 'GET', path, hdrs);
    expect({ path: path.slice(0, 40), status: res.status }).toEqual({ path: path.slice(0, 40), status: 404 });
    expect(res.body.length).toBeLessThan(600);
  }
});

test('an id with anything after its UUID is no UUID: a 404 (a 400 for the organization header), not a query that fails in the database', async () => {
  const before = await label();
  for (const method of ['GET', 'PATCH', 'DELETE']) {
    const res = await raw(method, `${P}/${credentialId}0`, { ...headers, 'content-type': 'application/json' }, method === 'PATCH' ? Buffer.from('{"label":"x"}') : undefined);
    expect({ method, status: res.status }).toEqual({ method, status: 404 });
  }
  const res = await call(r.url, 'GET', P, { headers: { ...headers, 'SlashID-OrgID': `${org.id}0` } });
  expect({ status: res.status, message: res.body.errors[0].message }).toEqual({ status: 400, message: expect.stringContaining('must be an organization ID') });
  expect(await label()).toBe(before);
});

test('a metadata URL with white space inside is refused, not fetched and stored as the URL parser reads it without', async () => {
  const before = await label();
  for (const url of [idp.url('okta.xml').replace('okta', 'ok\tta'), idp.url('okta.xml').replace('okta', 'ok\nta')]) {
    const res = await call(r.url, 'PATCH', `${P}/${credentialId}`, { body: { idp_metadata_url: url, label: 'tab' }, headers });
    expect({ url, status: res.status, message: res.body.errors[0].message }).toEqual({ url, status: 400, message: expect.stringContaining('idp_metadata_url') });
  }
  expect(await label()).toBe(before);
});

test('a header value an error quotes shows invisible and control characters as "?" (a right-to-left override could disguise the message)', async () => {
  const before = await label();
  // Node reads header bytes as latin-1: the UTF-8 bytes of U+202E, sent as they are.
  const rtl = Buffer.from('all\u202eregions', 'utf8').toString('latin1');
  for (const [sent, shown] of [[rtl, "'all?regions'"], ['all\tregions', "'all?regions'"]] as const) {
    const res = await raw('PATCH', `${P}/${credentialId}`, { ...headers, 'content-type': 'application/json', 'SlashID-Required-Consistency': sent }, Buffer.from('{"label":"x"}'));
    expect({ status: res.status, message: JSON.parse(res.body).errors[0].message }).toEqual({ status: 400, message: `SlashID-Required-Consistency must be 'local_region' or 'all_regions' (got ${shown}).` });
  }
  expect(await label()).toBe(before);
});

test('a sane X-Request-Id is echoed; any other is replaced by one of the region\'s own', async () => {
  expect((await call(r.url, 'GET', P, { headers: { ...headers, 'X-Request-Id': 'client.trace-1:a_b' } })).headers.get('x-request-id')).toBe('client.trace-1:a_b');
  for (const given of ['r'.repeat(101), '../../etc', 'a b', '<script>']) {
    const echoed = (await call(r.url, 'GET', P, { headers: { ...headers, 'X-Request-Id': given } })).headers.get('x-request-id');
    expect({ given, echoed }).toEqual({ given, echoed: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/) });
  }
});
