/**
 * /readyz reads the database on a connection of its own: the admin routes' reads (the region port's pool of
 * two, and the operator port's) must not hold every connection it could use. Before, two GET /admin/replication
 * whose reads waited on a lock (a dashboard's polls during a slow count of a large outbox would too) took both
 * connections of the pool /readyz shared with them, and /readyz answered 503 `"database":"unreachable"` after its
 * 2 s bound while the database answered and the API served: a load balancer took a healthy region out.
 */
import { Client } from 'pg';
import { adminHeaders, call, eventually } from '../support/harness';
import { startInProcess, type InProcessRegion } from '../support/in-process';

let r: InProcessRegion;
let locker: Client;
beforeAll(async () => {
  r = await startInProcess('readiness-own-connection', ['us-iowa'], {}, 'us-iowa', { operatorPort: 0 });
  locker = new Client({ connectionString: r.deployment.file.regions[0]?.databaseUrl });
  await locker.connect();
});
afterAll(async () => {
  await locker?.end();
  await r?.stop();
});

/** Reads of this database's replication_progress waiting for the lock this test holds (databases cloned from one template share its oid). */
const waitingReads = async () =>
  (
    await locker.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_locks WHERE relation = 'replication_progress'::regclass AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
  ).rows[0]?.n ?? 0;

for (const port of ['region', 'operator'] as const) {
  test(`the ${port} port's /readyz answers 200 while admin reads hold every connection of the admin pool`, async () => {
    const base = port === 'region' ? r.url : (r.region.operator?.url as string);
    expect((await call(base, 'GET', '/readyz')).status).toBe(200);
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE replication_progress IN ACCESS EXCLUSIVE MODE');
    // Two status reads, each holding a connection of the pool of two while it waits for the lock.
    const held = [call(base, 'GET', '/admin/replication', { headers: adminHeaders }), call(base, 'GET', '/admin/replication', { headers: adminHeaders })];
    try {
      expect(await eventually(async () => (await waitingReads()) === 2, 15_000, 20)).toBe(true);
      const ready = await call(base, 'GET', '/readyz');
      expect({ status: ready.status, body: ready.body }).toEqual({
        status: 200,
        body: { region: 'us-iowa', ready: true, database: 'ok', missing_migrations: [], redis: { reachable: true, status: 'ready' } },
      });
    } finally {
      await locker.query('COMMIT');
    }
    // The admin reads answer once the lock is gone.
    for (const res of await Promise.all(held)) expect(res.status).toBe(200);
  }, 60_000);
}
