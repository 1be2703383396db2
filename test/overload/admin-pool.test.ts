/**
 * The operator routes read through a pool of their own (src/region.ts): with every connection of the main
 * pool busy, /admin/replication, /readyz and /metrics still answer. An API write that finds no connection
 * of the main pool within POOL_WAIT_MS is refused 503 in its envelope, and writes nothing.
 */
import { Client } from 'pg';
import { DB_POOL_SIZE } from '../../src/config';
import { POOL_WAIT_MS } from '../../src/db/client';
import { adminHeaders, call, createOrg, slashidHeaders } from '../support/harness';
import { startInProcess, type InProcessRegion } from '../support/in-process';

let r: InProcessRegion;
let holder: Client;
beforeAll(async () => {
  // One read at a time and one queued, held long enough for the test to fill the reads gate by hand.
  r = await startInProcess('admin-pool', ['us-iowa'], { admission: { reads: { concurrency: 1, queue: 1, queueWaitMs: 60_000 } } });
  holder = new Client({ connectionString: r.deployment.file.regions[0]?.databaseUrl });
  await holder.connect();
});
afterAll(async () => {
  await holder?.end();
  await r?.stop();
});

const waiting = async () =>
  (await holder.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")).rows[0]?.n;

/** Takes every connection of the main pool (each waits for a lock this test holds); returns the release. */
async function takeMainPool(): Promise<() => Promise<void>> {
  await holder.query('SELECT pg_advisory_lock(4242)');
  // (A Prisma query runs once something awaits it: then() starts each now.)
  const busy = Array.from({ length: DB_POOL_SIZE }, () => r.region.db.$executeRawUnsafe('SELECT pg_advisory_xact_lock(4242)').then(() => undefined));
  while ((await waiting()) !== DB_POOL_SIZE) await new Promise((res) => setTimeout(res, 20));
  return async () => {
    await holder.query('SELECT pg_advisory_unlock(4242)');
    await Promise.all(busy);
  };
}

test('admin, readiness and metrics answer while every connection of the main pool is taken', async () => {
  const org = await createOrg(r.url, 'admin-read');
  const release = await takeMainPool();
  try {
    const [replication, organization, ready, metrics] = await Promise.all([
      call(r.url, 'GET', '/admin/replication', { headers: adminHeaders }),
      // A feature's admin route, not only the replication status: it reads through the admin pool too.
      call(r.url, 'GET', `/admin/organizations/${org.id}`, { headers: adminHeaders }),
      call(r.url, 'GET', '/readyz'),
      fetch(`${r.url}/metrics`, { headers: adminHeaders }),
    ]);
    expect(replication.status).toBe(200);
    expect(replication.body.region).toBe('us-iowa');
    expect(organization.status).toBe(200);
    expect(organization.body.id).toBe(org.id);
    expect(ready.status).toBe(200);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toMatch(/replication_outbox/);
    // The main pool is still all taken: nothing above could have borrowed from it.
    expect(await waiting()).toBe(DB_POOL_SIZE);
  } finally {
    await release();
  }
});

test('an API write that gets no connection of the main pool in time answers 503 with Retry-After, and writes nothing', async () => {
  const org = await createOrg(r.url, 'pool-wait');
  // The API key is checked from memory from now on (the write below needs no connection before its own).
  expect((await call(r.url, 'GET', '/organizations/sso/saml/provider-credentials', { headers: slashidHeaders(org) })).status).toBe(200);
  const outbox = async () => (await holder.query<{ n: number }>('SELECT count(*)::int AS n FROM replication_outbox')).rows[0]?.n;
  const before = await outbox();
  const release = await takeMainPool();
  try {
    const started = Date.now();
    const res = await call(r.url, 'PATCH', '/organizations/sso/saml/provider-credentials/0190a4a8-0000-7000-8000-00000000beef', {
      body: { label: 'no connection' },
      headers: slashidHeaders(org),
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(POOL_WAIT_MS - 100);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('2');
    expect(res.body).toEqual({ meta: {}, errors: [{ httpcode: 503, message: expect.stringMatching(/at capacity/) }] });
  } finally {
    await release();
  }
  expect(await outbox()).toBe(before);
}, POOL_WAIT_MS + 20_000);

test('while the reads gate is full, health, readiness, admin, metrics and the OpenAPI document pass the front door; an API read is refused there', async () => {
  const org = await createOrg(r.url, 'gate-full');
  const gate = r.region.admission.gates.reads;
  const release = gate.tryGrant();
  // The one place in the queue, left again below (it would otherwise wait for the slot held here).
  let leave: () => void = () => undefined;
  void gate.acquire((cancel) => (leave = cancel));
  try {
    expect(release).not.toBeNull();
    expect(gate.full).toBe(true);
    const [health, ready, replication, metrics, openapi, read] = await Promise.all([
      call(r.url, 'GET', '/healthz'),
      call(r.url, 'GET', '/readyz'),
      call(r.url, 'GET', '/admin/replication', { headers: adminHeaders }),
      fetch(`${r.url}/metrics`, { headers: adminHeaders }),
      call(r.url, 'GET', '/openapi.json'),
      call(r.url, 'GET', '/organizations/sso/saml/provider-credentials', { headers: slashidHeaders(org) }),
    ]);
    expect([health.status, ready.status, replication.status, metrics.status, openapi.status]).toEqual([200, 200, 200, 200, 200]);
    await metrics.arrayBuffer();
    expect(read.status).toBe(503);
  } finally {
    leave();
    release?.();
  }
  expect(gate.full).toBe(false);
});
