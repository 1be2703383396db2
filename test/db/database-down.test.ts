/**
 * While the region's database refuses connections (here: it does not allow connections, and the open ones
 * were ended), every route that needs it answers 503 with Retry-After in its dialect's envelope, saying
 * nothing was done, instead of a 500 (a helper's review: the /admin routes and the API answered 500); a
 * write asked for meanwhile is not written, and the region serves again once the database is back.
 */
import { Client } from 'pg';
import { adminHeaders, call, createOrg, eventually, slashidHeaders } from '../support/harness';
import { fixture, startIdpServer, type IdpServer } from '../support/idp-server';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { bearer, issueToken, SSO } from '../infisical/support/fixtures';

const PATH = '/organizations/sso/saml/provider-credentials';
let r: InProcessRegion;
let idp: IdpServer;
let pg: Client;
let database: string;

beforeAll(async () => {
  idp = await startIdpServer();
  idp.set('down.xml', fixture('okta.xml'));
  r = await startInProcess('dbdown', ['us-iowa'], { metadataAllowedHosts: [idp.hostPort] }, 'us-iowa', { operatorPort: 0 });
  const url = new URL(r.deployment.configFor('us-iowa').region.databaseUrl);
  database = url.pathname.slice(1);
  url.pathname = '/postgres';
  pg = new Client({ connectionString: url.toString() });
  await pg.connect();
});
afterAll(async () => {
  await pg?.query(`ALTER DATABASE "${database}" ALLOW_CONNECTIONS true`).catch(() => undefined);
  await pg?.end();
  await r?.stop();
  await idp?.close();
});

test('every route that needs the database answers 503 in its own envelope while it refuses connections, and nothing is written', async () => {
  const org = await createOrg(r.url, 'dbdown');
  const token = await issueToken(r.url, org.id);
  const created = await call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url('down.xml'), label: 'before' }, headers: slashidHeaders(org) });
  expect(created.status).toBe(201);
  const id = created.body.result.id as string;

  await pg.query(`ALTER DATABASE "${database}" ALLOW_CONNECTIONS false`);
  await pg.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [database]);
  try {
    // A read on a pooled connection ended under the region runs again on another (database-lost.test.ts),
    // which is refused: every route below answers 503 once the pool has no live connection left.
    expect(await eventually(async () => (await call(r.url, 'GET', PATH, { headers: slashidHeaders(org) })).status === 503, 10_000, 100)).toBe(true);
    const slashid: [string, string, string, Record<string, string>, unknown?][] = [
      [r.url, 'GET', PATH, slashidHeaders(org)],
      [r.url, 'GET', `${PATH}/${id}`, slashidHeaders(org)],
      [r.url, 'PATCH', `${PATH}/${id}`, slashidHeaders(org), { label: 'during' }],
      [r.url, 'POST', '/admin/organizations', adminHeaders, { name: 'during' }],
      [r.url, 'GET', '/admin/replication', adminHeaders],
      [r.url, 'GET', '/admin/metadata-refresh', adminHeaders],
      [r.region.operator?.url as string, 'GET', '/admin/replication', adminHeaders],
    ];
    for (const [base, method, path, headers, body] of slashid) {
      const res = await call(base, method, path, { headers, body });
      expect({ at: `${method} ${path}`, status: res.status, retry: res.headers.get('retry-after'), body: res.body }).toEqual({
        at: `${method} ${path}`,
        status: 503,
        retry: '2',
        body: { meta: {}, errors: [{ httpcode: 503, message: expect.stringMatching(/database is not accepting connections right now; nothing was done/) }] },
      });
    }
    // The operator's retry of parked events may have applied some before the database went away: it says so.
    const retry = await call(r.url, 'POST', '/admin/replication/parked/retry', { headers: adminHeaders });
    expect({ status: retry.status, message: retry.body.errors?.[0]?.message }).toEqual({ status: 503, message: expect.stringMatching(/during the retry; events applied before that stay applied/) });
    const infisical = await call(r.url, 'GET', `${SSO}?organizationId=${org.id}`, { headers: bearer(token) });
    expect({ status: infisical.status, retry: infisical.headers.get('retry-after') }).toEqual({ status: 503, retry: '2' });
    expect(infisical.body).toMatchObject({ statusCode: 503, error: expect.any(String), message: expect.stringMatching(/database is not accepting connections/) });
  } finally {
    await pg.query(`ALTER DATABASE "${database}" ALLOW_CONNECTIONS true`);
  }
  expect(await eventually(async () => (await call(r.url, 'GET', `${PATH}/${id}`, { headers: slashidHeaders(org) })).status === 200)).toBe(true);
  const after = await call(r.url, 'GET', `${PATH}/${id}`, { headers: slashidHeaders(org) });
  expect(after.body.result.label).toBe('before');
  expect(await r.region.db.organization.count({ where: { name: 'during' } })).toBe(0);
});
