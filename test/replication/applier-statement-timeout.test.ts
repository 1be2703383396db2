/**
 * A statement the database cancels (its statement_timeout) is the database's trouble while it cancels
 * everything (overloaded): nothing is counted against the changes, they stay pending and apply once it
 * recovers (applier-refusals.test.ts). But a change whose apply alone always outlasts the timeout, while other
 * changes apply, was left pending and retried for good, shown nowhere: it is counted at each cancellation
 * with other applies committed since the previous one, and parked after MAX_FAILURES (apply-failed, with the
 * database's message), where GET /admin/replication shows it. Both through real region processes, the target's
 * database with a statement_timeout of 1 s and a trigger that sleeps past it. The target's applier takes its
 * pending entries again within ~1 s rather than 15-20 s (hurryClaims, and a claim round every 500 ms): the
 * run took ~110 s, ~35 s with hurryClaims alone (a claim round every 5 s).
 */
import { Client } from 'pg';
import { MAX_FAILURES } from '../../src/replication/parked';
import { adminHeaders, call, createOrg, eventually, startCluster, type Cluster } from '../support/harness';
import { clientWithout, databaseSetting } from '../support/database-setting';
import { hurryClaims } from '../support/hurry-claims';

const ORIGIN = 'us-iowa';
const TARGET = 'asia-japan';
let cluster: Cluster;
let db: Client;
let hurry: { stop(): Promise<void> } | undefined;

beforeAll(async () => {
  // Every session of the target's database (all the region's) cancels a statement after 1 s.
  const slowApplies = databaseSetting(TARGET, 'statement_timeout', '1s', async (admin) => {
    // Applies of an organization named slow…, or of every organization while slow_all has a row, sleep past
    // it; each such attempt is counted in a sequence (not rolled back with the canceled statement).
    await admin.query('CREATE SEQUENCE slow_attempts');
    await admin.query('CREATE TABLE slow_all (on_ boolean)');
    await admin.query(`CREATE FUNCTION slow_apply() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.name LIKE 'slow%' OR EXISTS (SELECT 1 FROM slow_all) THEN
          PERFORM nextval('slow_attempts');
          PERFORM pg_sleep(5);
        END IF;
        RETURN NEW;
      END $$`);
    await admin.query('CREATE TRIGGER slow_apply BEFORE INSERT OR UPDATE ON organizations FOR EACH ROW EXECUTE FUNCTION slow_apply()');
  });
  // The tests wait for the target's applier to try a change again, not for when: a claim round every 500 ms.
  cluster = await startCluster('applier-timeout', [ORIGIN, TARGET], { beforeStart: slowApplies, extra: { claimIntervalMs: 500 } });
  db = await clientWithout(cluster, TARGET, 'statement_timeout');
  hurry = hurryClaims(cluster, TARGET);
}, 120_000);
afterAll(async () => {
  await hurry?.stop();
  await db?.end();
  await cluster?.stop();
});

const status = async () => (await call(cluster.url(TARGET), 'GET', '/admin/replication', { headers: adminHeaders })).body;
const orgHere = async (id: string) => (await call(cluster.url(TARGET), 'GET', `/admin/organizations/${id}`, { headers: adminHeaders })).status === 200;
const attempts = async () => Number((await db.query<{ n: string }>('SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS n FROM slow_attempts')).rows[0]?.n ?? 0);

test('a change whose apply alone always outlasts the statement_timeout, while others apply, is parked as apply-failed with the database\'s message', async () => {
  const slow = await createOrg(cluster.url(ORIGIN), 'slow one');
  // Other changes keep coming and apply meanwhile; the slow one is tried again on each claim of it.
  const others: string[] = [];
  const parked = await eventually(async () => {
    others.push((await createOrg(cluster.url(ORIGIN), `other ${others.length}`)).id);
    return (await status()).failures.parked > 0;
  }, 150_000, 500);
  expect(parked).toBe(true);
  const f = (await status()).failures;
  expect(f).toMatchObject({ failing: 0, parked: 1, parked_by_reason: { 'apply-failed': 1 } });
  expect(f.oldest_parked[0]).toMatchObject({ reason: 'apply-failed', failures: MAX_FAILURES, error: expect.stringMatching(/statement timeout.*ran past the database's statement_timeout while other changes applied/) });
  // The others applied here; the slow one did not.
  expect(await eventually(async () => (await Promise.all(others.map(orgHere))).every(Boolean), 20_000, 200)).toBe(true);
  expect(await orgHere(slow.id)).toBe(false);
  // Once it applies in time again (the trigger gone), the retry of parked changes applies it.
  await db.query('DROP TRIGGER slow_apply ON organizations');
  try {
    const retried = await call(cluster.url(TARGET), 'POST', '/admin/replication/parked/retry', { headers: adminHeaders });
    expect(retried.body).toMatchObject({ applied: 1 });
    expect(await orgHere(slow.id)).toBe(true);
  } finally {
    await db.query('CREATE TRIGGER slow_apply BEFORE INSERT OR UPDATE ON organizations FOR EACH ROW EXECUTE FUNCTION slow_apply()');
  }
}, 240_000);

test('a database whose statement_timeout cancels every apply (overloaded) parks nothing and counts nothing; the changes apply once it recovers', async () => {
  await db.query('INSERT INTO slow_all VALUES (true)');
  const start = await attempts();
  const orgs: string[] = [];
  try {
    for (let i = 0; i < 3; i++) orgs.push((await createOrg(cluster.url(ORIGIN), `overloaded ${i}`)).id);
    // Each change tried more often than MAX_FAILURES (first read, one by one, claims), none counted.
    const seen = { failing: 0, parked: 0 };
    const tried = await eventually(async () => {
      const f = (await status()).failures;
      seen.failing = Math.max(seen.failing, f.failing);
      seen.parked = Math.max(seen.parked, f.parked);
      return (await attempts()) - start >= orgs.length * (MAX_FAILURES + 1);
    }, 150_000, 500);
    expect(tried).toBe(true);
    expect(seen).toEqual({ failing: 0, parked: 0 });
    expect(await orgHere(orgs[0] as string)).toBe(false);
  } finally {
    await db.query('DELETE FROM slow_all');
  }
  expect(await eventually(async () => (await Promise.all(orgs.map(orgHere))).every(Boolean), 60_000, 200)).toBe(true);
  expect((await status()).failures).toMatchObject({ failing: 0, parked: 0 });
}, 240_000);
