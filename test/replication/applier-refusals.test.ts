/**
 * A database that cancels the applier's statements (its statement_timeout under a lock or load, an
 * administrator's pg_cancel_backend) says nothing about the change being applied: like a read-only or full
 * database, it is the database's state (src/db/pg-errors.ts, databaseRefusal). The applier counts nothing
 * against the change (MAX_FAILURES of them parked good changes as apply-failed, for 10 minutes at a time),
 * leaves it pending, and applies it once the database lets it.
 */
import { Client } from 'pg';
import { adminHeaders, call, createOrg, eventually, startCluster, type Cluster } from '../support/harness';

const ORIGIN = 'us-iowa';
const TARGET = 'asia-japan';
let cluster: Cluster;
let db: Client;

beforeAll(async () => {
  cluster = await startCluster('applier-refusals', [ORIGIN, TARGET]);
  const dbUrl = new URL(cluster.deployment.configFor(TARGET).region.databaseUrl);
  db = new Client({ connectionString: dbUrl.toString() });
  await db.connect();
}, 90_000);
afterAll(async () => {
  await db?.end();
  await cluster?.stop();
});

const failures = async () => (await call(cluster.url(TARGET), 'GET', '/admin/replication', { headers: adminHeaders })).body.failures;

test('a change whose apply the database cancels is not counted as failing nor parked, and applies once the database lets it', async () => {
  // Every write of the applier into organizations is canceled, as a statement_timeout under a lock would.
  await db.query(`CREATE FUNCTION refusals_cancel() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'canceling statement due to statement timeout' USING ERRCODE = 'query_canceled'; END $$`);
  await db.query('CREATE TRIGGER refusals_cancel BEFORE INSERT OR UPDATE ON organizations FOR EACH ROW EXECUTE FUNCTION refusals_cancel()');
  const seen = { failing: 0, parked: 0 };
  let org: { id: string };
  try {
    org = await createOrg(cluster.url(ORIGIN), 'canceled-apply');
    // Long enough for the batch, its events one by one, and claims of them (every 5 s) to be canceled.
    const until = Date.now() + 14_000;
    while (Date.now() < until) {
      const f = await failures();
      seen.failing = Math.max(seen.failing, f.failing);
      seen.parked = Math.max(seen.parked, f.parked);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    await db.query('DROP TRIGGER refusals_cancel ON organizations');
    await db.query('DROP FUNCTION refusals_cancel()');
  }
  expect(seen).toEqual({ failing: 0, parked: 0 });
  expect(await eventually(async () => (await call(cluster.url(TARGET), 'GET', `/admin/organizations/${org.id}`, { headers: adminHeaders })).status === 200, 20_000, 200)).toBe(true);
  expect(await failures()).toMatchObject({ failing: 0, parked: 0 });
}, 120_000);
