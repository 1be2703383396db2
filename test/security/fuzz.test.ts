/**
 * Malformed requests over every route of both dialects, the SAML SP endpoints (/sso/saml/*) and the admin API, sent as raw bytes on a socket (so
 * nothing in a client library tidies them up): bad %-escapes, NUL and lone surrogates, odd content types and
 * encodings, broken and hostile JSON, huge and invalid headers. Deterministic (seeded); one region in process.
 * Every answer must be below 500 and quote no stack trace, SQL or file path.
 */
import net from 'node:net';
import zlib from 'node:zlib';
import { PROJECT_ROOT } from '../../src/paths';
import { adminHeaders, call, createOrg } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { issueToken } from '../infisical/support/fixtures';

const SEED = 20261130;
const REQUESTS = 720;
const P = '/organizations/sso/saml/provider-credentials';

let r: InProcessRegion;
let idp: IdpServer;
let port: number;
let org: { id: string; api_key: string };
let credentialId: string;
let token: string;

beforeAll(async () => {
  idp = await startIdpServer();
  r = await startInProcess('fuzz', ['us-iowa'], { metadataAllowedHosts: [idp.hostPort] });
  port = r.region.port;
  org = await createOrg(r.url, 'fuzz');
  const created = await call(r.url, 'POST', P, { body: { idp_metadata_url: idp.url('okta.xml') }, headers: { 'SlashID-OrgID': org.id, 'SlashID-API-Key': org.api_key } });
  credentialId = created.body.result.id;
  token = await issueToken(r.url, org.id);
});
afterAll(async () => {
  await r.stop();
  await idp.close();
});

/** mulberry32: a small seeded generator, so a failure can be replayed. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Route {
  method: string;
  path: (id: string) => string;
  dialect: 'slashid' | 'infisical' | 'admin' | 'sso';
  body: boolean;
  /** Posted as an HTML form (the ACS): the body is one of FORM_BODIES. */
  form?: boolean;
}

const ROUTES: Route[] = [
  { method: 'POST', path: () => P, dialect: 'slashid', body: true },
  { method: 'GET', path: () => P, dialect: 'slashid', body: false },
  { method: 'GET', path: (id) => `${P}/${id}`, dialect: 'slashid', body: false },
  { method: 'PATCH', path: (id) => `${P}/${id}`, dialect: 'slashid', body: true },
  { method: 'DELETE', path: (id) => `${P}/${id}`, dialect: 'slashid', body: false },
  { method: 'GET', path: (id) => `${P}/${id}/metadata`, dialect: 'slashid', body: false },
  { method: 'POST', path: () => '/api/v1/sso/config', dialect: 'infisical', body: true },
  { method: 'GET', path: (id) => `/api/v1/sso/config?organizationId=${id}`, dialect: 'infisical', body: false },
  { method: 'PATCH', path: () => '/api/v1/sso/config', dialect: 'infisical', body: true },
  { method: 'POST', path: () => '/admin/organizations', dialect: 'admin', body: true },
  { method: 'GET', path: (id) => `/admin/organizations/${id}`, dialect: 'admin', body: false },
  { method: 'POST', path: (id) => `/admin/organizations/${id}/api-keys`, dialect: 'admin', body: false },
  { method: 'POST', path: (id) => `/admin/organizations/${id}/access-tokens`, dialect: 'admin', body: true },
  { method: 'GET', path: () => '/admin/replication', dialect: 'admin', body: false },
  { method: 'GET', path: (id) => `/admin/replication/changes/${id}`, dialect: 'admin', body: false },
  { method: 'GET', path: () => '/admin/replication/digest', dialect: 'admin', body: false },
  { method: 'GET', path: () => '/admin/metadata-refresh', dialect: 'admin', body: false },
  { method: 'GET', path: () => '/healthz', dialect: 'admin', body: false },
  { method: 'GET', path: (id) => `${P}/${id}/sso-settings`, dialect: 'slashid', body: false },
  { method: 'PATCH', path: (id) => `${P}/${id}/sso-settings`, dialect: 'slashid', body: true },
  // The SAML SP endpoints: browsers and IdPs call them, without an API key.
  { method: 'GET', path: (id) => `/sso/saml/${id}/metadata`, dialect: 'sso', body: false },
  { method: 'GET', path: (id) => `/sso/saml/${id}/login`, dialect: 'sso', body: false },
  { method: 'POST', path: (id) => `/sso/saml/${id}/acs`, dialect: 'sso', body: true, form: true },
];

const BAD_IDS = ['%', '%zz', '%ED%A0%80', '%00', '%C0%AF', '%FF', '%E0%A4%A', '..%2F..%2Fx', 'a'.repeat(3000), '%F0%9F%98%80', ';x=1', '%2500', '%uD800', '00000000-0000-0000-0000-00000000000g', 'urn:uuid:00000000-0000-0000-0000-000000000000'];
const BAD_QUERIES = ['?relay_state=%00', '?relay_state=%ED%A0%80', `?relay_state=${'r'.repeat(300)}`, '?relay_state[]=1', '?relay_state=a&relay_state=b', '?limit=%00', '?limit=-1', '?limit=1e3', '?limit[]=1', '?limit=1&limit=2', '?offset=%ED%A0%80', '?organizationId=%00', '?organizationId[a]=1', '?%=1', '?a=%', `?a=${'b'.repeat(6000)}`, '?organizationId=%ED%B0%80', '?__proto__[x]=1', '?offset=99999999999999999999'];
const CONTENT_TYPES = ['application/json', 'application/json; charset=utf-16', 'application/json; charset=latin1', 'application/json; charset=x-unknown', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json; charset="', '*/*', 'application/json; =', 'application/merge-patch+json'];
const ENCODINGS = ['gzip', 'deflate', 'br', 'x-unknown', 'gzip, gzip', 'identity', 'compress'];
const S = (s: string) => JSON.stringify(s);

function bodies(): string[] {
  const url = S(idp.url('okta.xml'));
  return [
    '{',
    '{"label":"\\u0000"}',
    `{"idp_metadata_url":${url},"label":"\\ud800"}`,
    `{"idp_metadata_url":${url},"email_claims":["\\udfff"]}`,
    `{"idp_metadata_url":${url},"label":"a"}`,
    `{"idp_metadata_url":"http://127.0.0.1:1/x"}`,
    '{"idp_metadata_url":"http://[::1"}',
    '{"idp_metadata_url":"file:///etc/hosts"}',
    `${'['.repeat(5000)}${']'.repeat(5000)}`,
    `{"label":${'['.repeat(3000)}1${']'.repeat(3000)}}`,
    '{"__proto__":{"admin":true}}',
    '{"constructor":{"prototype":{"x":1}}}',
    '{"expires_in_seconds":1e400}',
    '{"expires_in_seconds":-0}',
    'null',
    '"just a string"',
    '[]',
    '{"name":{}}',
    '{"name":"x","name":"\\u0000"}',
    `{"name":"${'n'.repeat(70_000)}"}`,
    '\ufeff{"name":"bom"}',
    `{"organizationId":"${org.id}","authProvider":"okta-saml","issuer":"\\u0000","entryPoint":"https://x","cert":"x"}`,
    `{"organizationId":"${org.id}","cert":"${'-----BEGIN A-----'.repeat(1500)}"}`,
    `{"organizationId":"%00","isActive":"yes"}`,
    '{"organizationId":null}',
    '\u0000',
    '{"a":1}garbage',
  ];
}

const b64 = (s: string) => encodeURIComponent(Buffer.from(s, 'utf8').toString('base64'));
/** Bodies for the ACS: broken forms, and SAMLResponse values that are not base64, not XML, or hostile XML. */
function formBodies(): string[] {
  const samlp = 'xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"';
  return [
    '',
    'SAMLResponse=',
    'SAMLResponse=%',
    'SAMLResponse=%ZZ&RelayState=%',
    'SAMLResponse=%00',
    'SAMLResponse=!!!not-base64!!!',
    'SAMLResponse=PHg%2B&SAMLResponse=PHk%2B',
    'SAMLResponse[a]=1',
    'RelayState=only',
    `SAMLResponse=${b64('<x/>')}&RelayState=%ED%A0%80`,
    `SAMLResponse=${b64('not xml at all')}`,
    `SAMLResponse=${b64('\u0000<samlp:Response/>')}`,
    `SAMLResponse=${b64(`<samlp:Response ${samlp} ID="_1" Version="2.0"><saml:Issuer>x</saml:Issuer></samlp:Response>`)}`,
    `SAMLResponse=${b64('<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]><r>&c;&c;&c;</r>')}`,
    `SAMLResponse=${b64('<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>')}`,
    `SAMLResponse=${b64('<a>'.repeat(20_000) + '</a>'.repeat(20_000))}`,
    `SAMLResponse=${b64(`<samlp:Response ${samlp}>${'<saml:Assertion/>'.repeat(3000)}</samlp:Response>`)}`,
    `SAMLResponse=${b64(`<samlp:Response ${samlp} ${Array.from({ length: 500 }, (_, i) => `a${i}="v"`).join(' ')}/>`)}`,
    `SAMLResponse=${b64('<title' .repeat(20_000))}`,
    `SAMLResponse=${'A'.repeat(200_000)}`,
    '{"SAMLResponse":"PHg+"}',
  ];
}

const ORG_IDS = () => [org.id, org.id.toUpperCase(), '00000000-0000-0000-0000-000000000000', 'not-a-uuid', ''];

interface Sent {
  description: string;
  bytes: Buffer;
}

function pick<T>(rnd: () => number, items: readonly T[]): T {
  return items[Math.floor(rnd() * items.length)] as T;
}

/** One malformed request: a route, then two or three things wrong with it. */
function generate(rnd: () => number, route: Route): Sent {
  const notes: string[] = [`${route.method} ${route.dialect}`];
  let id = rnd() < 0.3 ? (route.dialect === 'slashid' || route.dialect === 'sso' ? credentialId : org.id) : pick(rnd, BAD_IDS);
  if (route.dialect === 'infisical' && rnd() < 0.3) id = pick(rnd, ORG_IDS());
  let path = route.path(id);
  if (rnd() < 0.35) path += (path.includes('?') ? '&' : '') + pick(rnd, BAD_QUERIES).replace(/^\?/, path.includes('?') ? '' : '?');
  const headers: [string, string][] = [];
  // Mostly authenticated, so the request reaches the handler.
  if (rnd() < 0.8) {
    if (route.dialect === 'slashid') headers.push(['SlashID-OrgID', rnd() < 0.8 ? org.id : pick(rnd, ORG_IDS())], ['SlashID-API-Key', rnd() < 0.85 ? org.api_key : pick(rnd, ['sidk_\xff\xfe', 'x'.repeat(9000), 'sidk_aaaaaaaaaaaaaaaa.' + 'b'.repeat(43)])]);
    if (route.dialect === 'infisical') headers.push(['Authorization', rnd() < 0.85 ? `Bearer ${token}` : pick(rnd, ['Bearer a.b.c', 'Bearer ' + ' '.repeat(100), 'Basic eDp5', `Bearer ${token}x`, 'Bearer \xe9\xe9'])]);
    if (route.dialect === 'admin') headers.push(['Authorization', rnd() < 0.85 ? adminHeaders.authorization : 'Bearer \xff']);
  }
  let body = route.body || rnd() < 0.15 ? pick(rnd, route.form ? formBodies() : bodies()) : null;
  let encoded: Buffer | null = body === null ? null : Buffer.from(body, 'utf8');
  if (encoded !== null) {
    headers.push(['Content-Type', rnd() < 0.6 ? (route.form ? 'application/x-www-form-urlencoded' : 'application/json') : pick(rnd, CONTENT_TYPES)]);
    const roll = rnd();
    if (roll < 0.1) {
      headers.push(['Content-Encoding', pick(rnd, ENCODINGS)]);
      notes.push('bad content-encoding');
    } else if (roll < 0.15) {
      headers.push(['Content-Encoding', 'gzip']);
      encoded = zlib.gzipSync(encoded);
      notes.push('gzip body');
    } else if (roll < 0.2) {
      encoded = Buffer.concat([encoded, Buffer.from([0xff, 0xfe, 0xc0, 0x80])]);
      notes.push('invalid UTF-8');
    }
    notes.push(`body ${(body ?? '').slice(0, 60)}`);
  }
  const extra = rnd();
  if (extra < 0.08) headers.push(['X-Big', 'h'.repeat(20_000)]);
  else if (extra < 0.14) for (let i = 0; i < 120; i++) headers.push([`X-Many-${i}`, 'v']);
  else if (extra < 0.24) headers.push(['Idempotency-Key', pick(rnd, ['\xe9t\xe9', 'k'.repeat(300), ' ', 'ok-key'])]);
  else if (extra < 0.34) headers.push(['SlashID-Required-Consistency', pick(rnd, ['all_regions', 'x', '', 'local_region\xff'])], ['SlashID-Required-Consistency-Timeout', pick(rnd, ['0', '999', '1e2', '-1', '1'])]);
  else if (extra < 0.4) headers.push(['X-Request-Id', pick(rnd, ['\xff', 'r'.repeat(500), '../../x'])]);
  else if (extra < 0.44) headers.push(['Content-Length', '5'], ['Content-Length', '6']);
  else if (extra < 0.47) headers.push(['Transfer-Encoding', 'chunked, gzip']);
  notes.push(path.slice(0, 80));
  const head = [`${route.method} ${path} HTTP/1.1`, `Host: 127.0.0.1:${port}`, 'Connection: close', ...headers.map(([k, v]) => `${k}: ${v}`)];
  if (encoded !== null && !headers.some(([k]) => k === 'Content-Length' || k === 'Transfer-Encoding')) head.push(`Content-Length: ${encoded.length}`);
  body = null;
  return { description: notes.join(' | '), bytes: Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`, 'latin1'), encoded ?? Buffer.alloc(0)]) };
}

function send(bytes: Buffer): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    // Written, not ended: a client that half-closes may get no answer at all, and that says nothing about the server.
    const socket = net.connect(port, '127.0.0.1', () => socket.write(bytes));
    socket.setTimeout(20_000, () => socket.destroy(new Error('no answer within 20 s')));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (err) => (chunks.length > 0 ? undefined : reject(err)));
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      resolve({ status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0), text });
    });
  });
}

const LEAK = new RegExp(
  [String.raw`\n\s+at\s`, 'node_modules', PROJECT_ROOT.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), String.raw`\.(ts|js):\d+`, String.raw`\bSELECT\b`, String.raw`\bINSERT INTO\b`, 'prisma', 'invalid input syntax', 'violates', 'syntax error at', 'Error:', 'stack'].join('|'),
  'i',
);

test(`${REQUESTS} malformed requests over every route: no 5xx, no stack, SQL or path in any answer`, async () => {
  const rnd = random(SEED);
  const failures: string[] = [];
  const statuses = new Map<number, number>();
  const perRoute = new Map<string, number>();
  for (let i = 0; i < REQUESTS; i++) {
    const route = ROUTES[i % ROUTES.length] as Route;
    const sent = generate(rnd, route);
    const res = await send(sent.bytes);
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    perRoute.set(`${route.method} ${route.path(':id')}`, (perRoute.get(`${route.method} ${route.path(':id')}`) ?? 0) + 1);
    const body = res.text.slice(res.text.indexOf('\r\n\r\n') + 4);
    if (res.status === 0 || res.status >= 500) failures.push(`#${i} ${res.status}: ${sent.description} -> ${body.slice(0, 200)}`);
    else if (LEAK.test(body)) failures.push(`#${i} leaks: ${sent.description} -> ${body.slice(0, 300)}`);
  }
  expect(failures).toEqual([]);
  expect([...perRoute.values()].every((n) => n >= 30)).toBe(true);
  // The requests got past the front door: many were answered by the handlers, not only by Node or auth.
  expect(statuses.get(400) ?? 0).toBeGreaterThan(REQUESTS / 4);
  expect((statuses.get(200) ?? 0) + (statuses.get(201) ?? 0) + (statuses.get(204) ?? 0)).toBeGreaterThan(20);
  // And the region still serves.
  expect((await call(r.url, 'GET', '/healthz')).status).toBe(200);
});
