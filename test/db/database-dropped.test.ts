/**
 * A region's database dropped under the running region, then created again empty: no retry mends either, the
 * region's operator must restart it (its start creates and migrates the database) and re-seed it. Every route
 * says so in a 503 (before: "not accepting connections right now … Retry shortly", and, once the database was
 * created again empty, a 500 on every route), /readyz says `missing`, and the console names it.
 */
import { Client } from 'pg';
import { startRegion, type RunningRegion } from '../../src/region';
import { createDeployment, PG_BASE, type TestDeployment } from '../support/env';
import { adminHeaders, call, createOrg, eventually, slashidHeaders } from '../support/harness';

const PATH = '/organizations/sso/saml/provider-credentials';
let dep: TestDeployment;
let r: RunningRegion;
let database: string;

beforeAll(async () => {
  dep = await createDeployment('dbdropped', ['us-iowa']);
  // At its configured port: the console's gathering calls the region there.
  r = await startRegion(dep.configFor('us-iowa'), { drainTimeoutMs: 5000 });
  database = new URL(dep.configFor('us-iowa').region.databaseUrl).pathname.slice(1);
});
afterAll(async () => {
  await r?.stop();
  await dep?.cleanup();
});

async function admin(sql: string): Promise<void> {
  const c = new Client({ connectionString: `${PG_BASE}/postgres` });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

const message = (res: { body: any }) => String(res.body?.errors?.[0]?.message ?? res.body?.message);

test('a dropped database, then one created again empty, is answered 503 naming it on every route, never 500', async () => {
  const org = await createOrg(r.url, 'dropped');
  await admin(`DROP DATABASE "${database}" WITH (FORCE)`);

  let ready: { status: number; body: any } = { status: 0, body: null };
  expect(await eventually(async () => (ready = await call(r.url, 'GET', '/readyz')).status === 503, 10_000)).toBe(true);
  expect(ready.body).toMatchObject({ ready: false, database: 'missing', missing_migrations: null });
  const deployment = await call(r.url, 'GET', '/admin/deployment', { headers: adminHeaders });
  expect(deployment.body.regions[0].problems[0]).toMatch(/^its database does not exist .*restart the region.*re-seed/);
  for (const [method, path, headers] of [
    ['GET', PATH, slashidHeaders(org)],
    ['GET', '/admin/replication', adminHeaders],
    ['GET', `/admin/organizations/${org.id}`, adminHeaders],
  ] as const) {
    const res = await call(r.url, method, path, { headers });
    expect({ path, status: res.status, message: message(res) }).toEqual({ path, status: 503, message: expect.stringMatching(/database does not exist .*restart it/) });
  }

  await admin(`CREATE DATABASE "${database}"`);
  expect(await eventually(async () => (ready = await call(r.url, 'GET', '/readyz')).body?.database === 'ok', 10_000)).toBe(true);
  expect(ready.status).toBe(503);
  for (const [method, path, headers, body] of [
    ['GET', PATH, slashidHeaders(org), undefined],
    ['POST', '/admin/organizations', adminHeaders, { name: 'after' }],
    ['GET', '/admin/replication', adminHeaders, undefined],
    ['GET', '/admin/replication/digest', adminHeaders, undefined],
    ['GET', '/admin/metadata-refresh', adminHeaders, undefined],
  ] as const) {
    const res = await call(r.url, method, path, { headers, ...(body ? { body } : {}) });
    expect({ path, status: res.status, message: message(res) }).toEqual({ path, status: 503, message: expect.stringMatching(/database lacks its tables .*restart it/) });
  }
});
