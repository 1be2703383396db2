/**
 * Request logs: one JSON line per request with the request id, the organization authentication resolved,
 * the route pattern, status and duration, and no credentials. A region process that meets an unhandled
 * rejection logs it (fatal) before it exits.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { RegionProcess } from '../../src/cluster/region-process';
import { startRegion, type RunningRegion } from '../../src/region';
import { ADMIN_TOKEN, createDeployment, type TestDeployment } from '../support/env';
import { adminHeaders, assertBuilt, call, createOrg, eventually, slashidHeaders } from '../support/harness';
import { fixture, startIdpServer, type IdpServer } from '../support/idp-server';
import { logLines, type LogLine } from '../support/log-lines';

type Line = LogLine;
const { lines, sink } = logLines();

let deployment: TestDeployment;
let region: RunningRegion;
let idp: IdpServer;
beforeAll(async () => {
  idp = await startIdpServer();
  deployment = await createDeployment('request-log', ['us-iowa'], { metadataAllowedHosts: [idp.hostPort] });
  const log = pino({ level: 'info', base: { region: 'us-iowa' } }, sink);
  region = await startRegion(deployment.configFor('us-iowa'), { port: 0, drainTimeoutMs: 5000, log });
});
afterAll(async () => {
  await region?.stop();
  await deployment?.cleanup();
  await idp?.close();
});

const CREDENTIALS = '/organizations/sso/saml/provider-credentials';
/** The request line (or another line `msg`) of the request that went out with this X-Request-Id. */
async function lineOf(requestId: string, msg = 'request'): Promise<Line> {
  let found: Line | undefined;
  await eventually(async () => (found = lines.find((l) => l.msg === msg && l.requestId === requestId)) !== undefined, 5000, 20);
  if (!found) throw new Error(`no ${msg} line for ${requestId}`);
  return found;
}

test('logs one line per request with request id, organization, route pattern, status and duration', async () => {
  const org = await createOrg(region.url, 'logged');
  const missing = '0190a4a8-0000-7000-8000-000000000001';
  const res = await call(region.url, 'GET', `${CREDENTIALS}/${missing}`, { headers: slashidHeaders(org, { 'X-Request-Id': 'log-test-1' }) });
  expect(res.status).toBe(404);
  expect(res.headers.get('x-request-id')).toBe('log-test-1');
  const line = await lineOf('log-test-1');
  expect(line).toEqual({
    level: 30,
    time: expect.any(Number),
    region: 'us-iowa',
    requestId: 'log-test-1',
    msg: 'request',
    method: 'GET',
    path: `${CREDENTIALS}/${missing}`,
    route: `${CREDENTIALS}/:id`,
    status: 404,
    ms: expect.any(Number),
    orgId: org.id,
  });
  expect(lines.filter((l) => l.requestId === 'log-test-1')).toHaveLength(1);
  // No credentials in the log.
  expect(JSON.stringify(lines)).not.toContain(org.api_key);
});

test('takes the organization of an Infisical request from its access token, and omits it when unauthenticated', async () => {
  const org = await createOrg(region.url, 'infisical');
  const token = (await call(region.url, 'POST', `/admin/organizations/${org.id}/access-tokens`, { headers: adminHeaders })).body.access_token as string;
  const res = await call(region.url, 'GET', `/api/v1/sso/config?organizationId=${org.id}`, {
    headers: { authorization: `Bearer ${token}`, 'X-Request-Id': 'log-test-2' },
  });
  expect(res.status).toBe(404);
  // The whole path (it lacked the router's prefix: "/sso/config").
  expect(await lineOf('log-test-2')).toMatchObject({ path: '/api/v1/sso/config', route: '/api/v1/sso/config', status: 404, orgId: org.id });

  // Refused by a guard before a route matched: labelled with the guarded prefix, not "(unmatched)".
  await call(region.url, 'GET', CREDENTIALS, { headers: { 'SlashID-OrgID': org.id, 'X-Request-Id': 'log-test-3' } });
  const anonymous = await lineOf('log-test-3');
  expect(anonymous).toMatchObject({ path: CREDENTIALS, status: 401, route: `${CREDENTIALS}/*` });
  await call(region.url, 'GET', `/admin/organizations/${org.id}`, { headers: { 'X-Request-Id': 'log-test-3a' } });
  expect(await lineOf('log-test-3a')).toMatchObject({ path: `/admin/organizations/${org.id}`, status: 401, route: '/admin/*' });
  await call(region.url, 'GET', '/api/v1/nope', { headers: { 'X-Request-Id': 'log-test-3b' } });
  expect(await lineOf('log-test-3b')).toMatchObject({ path: '/api/v1/nope', status: 404, route: '/api/v1/*' });
  await call(region.url, 'GET', '/nope', { headers: { 'X-Request-Id': 'log-test-3c' } });
  expect(await lineOf('log-test-3c')).toMatchObject({ path: '/nope', status: 404, route: '(unmatched)' });
  expect(anonymous).not.toHaveProperty('orgId');
  expect(JSON.stringify(lines)).not.toContain(token);
});

test('an unhandled error is logged with the path and not the query (it can carry secrets or personal data), in either dialect', async () => {
  const org = await createOrg(region.url, 'unhandled');
  const token = (await call(region.url, 'POST', `/admin/organizations/${org.id}/access-tokens`, { headers: adminHeaders })).body.access_token as string;
  const missing = '0190a4a8-0000-7000-8000-000000000002';
  // A column each route reads, renamed for the while: the read fails with an error no dialect knows (a 500).
  const renamed = [['infisical_saml_configs', 'issuer'], ['saml_provider_credentials', 'label']];
  const rename = (from: string, to: string) => Promise.all(renamed.map(([t, c]) => region.db.$executeRawUnsafe(`ALTER TABLE ${t} RENAME COLUMN ${c}${from} TO ${c}${to}`)));
  await rename('', '_gone');
  try {
    const infisical = await call(region.url, 'GET', `/api/v1/sso/config?organizationId=${org.id}`, { headers: { authorization: `Bearer ${token}`, 'X-Request-Id': 'log-test-500-infisical' } });
    const slashid = await call(region.url, 'GET', `${CREDENTIALS}/${missing}?email=alice%40example.com`, { headers: slashidHeaders(org, { 'X-Request-Id': 'log-test-500-slashid' }) });
    expect([infisical.status, slashid.status]).toEqual([500, 500]);
  } finally {
    await rename('_gone', '');
  }
  expect(await lineOf('log-test-500-infisical', 'unhandled error')).toMatchObject({ level: 50, method: 'GET', path: '/api/v1/sso/config' });
  expect(await lineOf('log-test-500-slashid', 'unhandled error')).toMatchObject({ level: 50, method: 'GET', path: `${CREDENTIALS}/${missing}` });
  // Nor does any other line of theirs (the request line comes after the answer).
  for (const id of ['log-test-500-infisical', 'log-test-500-slashid']) await lineOf(id);
  expect(JSON.stringify(lines.filter((l) => String(l.requestId).startsWith('log-test-500-')))).not.toMatch(/organizationId=|alice/);
});

test('a request whose client went away before the answer is logged as aborted and not timed in the metrics', async () => {
  const org = await createOrg(region.url, 'aborted');
  // The create waits on a slow IdP; the client gives up meanwhile.
  idp.set('slow-for-abort.xml', fixture('okta.xml'));
  idp.slow('slow-for-abort.xml', 1500);
  const gone = new AbortController();
  const sent = fetch(`${region.url}${CREDENTIALS}`, {
    method: 'POST',
    headers: { ...slashidHeaders(org, { 'X-Request-Id': 'log-test-aborted' }), 'content-type': 'application/json' },
    body: JSON.stringify({ idp_metadata_url: idp.url('slow-for-abort.xml') }),
    signal: gone.signal,
  }).then(() => 'answered', (err: Error) => err.name);
  // Given up once the region is at the IdP's fetch, not after a fixed 300 ms: on a loaded host the request
  // could still be unsent then, and a request the region never received is not logged at all.
  expect(await eventually(async () => idp.held() === 1, 10_000, 10)).toBe(true);
  gone.abort();
  expect(await sent).toBe('AbortError');
  // No status: nothing was answered (it read 200, the default of a response never written).
  expect(await lineOf('log-test-aborted')).toMatchObject({ method: 'POST', route: CREDENTIALS, status: null, aborted: true, orgId: org.id });
  // The region finishes the create on its own (the fetch returns after 1.5 s); still nothing is timed for it.
  await eventually(async () => (await region.db.samlProviderCredential.count({ where: { orgId: org.id } })) === 1, 10_000, 50);
  await new Promise((r) => setTimeout(r, 200));
  const metrics = (await call(region.url, 'GET', '/metrics', { headers: adminHeaders })).body as string;
  // The organization's create is timed (the scrape shows requests); the aborted create is not.
  expect(metrics).toMatch(/http_request_duration_seconds_count\{[^}]*route="\/admin\/organizations",method="POST"/);
  expect(metrics).not.toContain(`route="${CREDENTIALS}",method="POST"`);
  expect(lines.filter((l) => l.requestId === 'log-test-aborted')).toHaveLength(1);
});

test('a region process logs an unhandled rejection as fatal before it exits', async () => {
  assertBuilt();
  // A deployment of its own: this process must not share a database with the in-process region.
  const own = await createDeployment('request-log-fatal', ['us-iowa']);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'saml-fatal-'));
  // Loaded before the service: turns SIGUSR2 into a promise rejection nobody handles.
  const preload = path.join(dir, 'reject-on-usr2.js');
  fs.writeFileSync(preload, "process.on('SIGUSR2', () => { Promise.reject(new Error('boom from the test')); });\n");
  const out: string[] = [];
  let exitCode: number | null | undefined;
  const proc = new RegionProcess({
    region: 'us-iowa',
    url: `http://127.0.0.1:${own.file.regions[0]?.port ?? 0}`,
    env: {
      REGIONS_CONFIG: own.configPath,
      ADMIN_TOKEN,
      TOKEN_SIGNING_SECRET: 'test-signing-secret-0123456789abcdef', // at least 32 bytes (config validation)
      REPLICATION_KEYS: 'test-k1:test-replication-secret-0123456789abcdef',
      LOG_LEVEL: 'info',
      NODE_OPTIONS: `--require ${preload}`,
    },
    onLine: (line) => out.push(line),
    onExit: (code) => (exitCode = code),
  });
  try {
    proc.start();
    await proc.waitReady(60_000);
    process.kill(proc.pid ?? 0, 'SIGUSR2');
    expect(await eventually(async () => exitCode !== undefined, 10_000)).toBe(true);
    expect(exitCode).toBe(1);
    const fatal = out.map((l) => (l.startsWith('{') ? (JSON.parse(l) as Line) : {})).find((l) => l.level === 60);
    expect(fatal).toMatchObject({ region: 'us-iowa', msg: 'unhandled promise rejection', err: { message: 'boom from the test' } });
  } finally {
    await proc.kill();
    await own.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
