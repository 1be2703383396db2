/**
 * The operator routes read through a pool of their own (src/region.ts): with every connection of the main
 * pool busy, /admin/replication, /readyz and /metrics still answer.
 */
import { Client } from 'pg';
import { DB_POOL_SIZE } from '../../src/config';
import { adminHeaders, call } from '../support/harness';
import { startInProcess, type InProcessRegion } from '../support/in-process';

let r: InProcessRegion;
let holder: Client;
beforeAll(async () => {
  r = await startInProcess('admin-pool');
  holder = new Client({ connectionString: r.deployment.file.regions[0]?.databaseUrl });
  await holder.connect();
});
afterAll(async () => {
  await holder?.end();
  await r?.stop();
});

test('admin, readiness and metrics answer while every connection of the main pool is taken', async () => {
  // Every connection of the main pool waits for a lock this test holds.
  await holder.query('SELECT pg_advisory_lock(4242)');
  // (A Prisma query runs once something awaits it: then() starts each now.)
  const busy = Array.from({ length: DB_POOL_SIZE }, () => r.region.db.$executeRawUnsafe('SELECT pg_advisory_xact_lock(4242)').then(() => undefined));
  const waiting = async () =>
    (await holder.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")).rows[0]?.n;
  while ((await waiting()) !== DB_POOL_SIZE) await new Promise((res) => setTimeout(res, 20));
  try {
    const [replication, ready, metrics] = await Promise.all([
      call(r.url, 'GET', '/admin/replication', { headers: adminHeaders }),
      call(r.url, 'GET', '/readyz'),
      fetch(`${r.url}/metrics`, { headers: adminHeaders }),
    ]);
    expect(replication.status).toBe(200);
    expect(replication.body.region).toBe('us-iowa');
    expect(ready.status).toBe(200);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toMatch(/replication_outbox/);
    // The main pool is still all taken: nothing above could have borrowed from it.
    expect(await waiting()).toBe(DB_POOL_SIZE);
  } finally {
    await holder.query('SELECT pg_advisory_unlock(4242)');
    await Promise.all(busy);
  }
});
