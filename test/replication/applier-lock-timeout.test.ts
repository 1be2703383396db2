/**
 * A change whose apply waits on a lock some session holds for good (a row locked by a session idle in a
 * transaction) failed at each attempt with the database's lock_timeout (55P03), was taken for a collision,
 * and stayed pending for good, shown nowhere. As with the statement_timeout (applier-statement-timeout.test.ts),
 * such a failure of the change's apply alone, with other changes committed since its previous one, is
 * counted, and the change parked after MAX_FAILURES (apply-failed, with the database's message); a lock that
 * holds up every apply (a table's) counts nothing. Through real region processes, the target's database with a
 * lock_timeout of 500 ms.
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
  cluster = await startCluster('applier-lock', [ORIGIN, TARGET], {
    // Every session of the target's database (all the region's) gives up a lock wait after 500 ms.
    beforeStart: databaseSetting(TARGET, 'lock_timeout', '500ms'),
    // The tests wait for the target's applier to try a change again, not for when: a claim round every 500 ms.
    extra: { claimIntervalMs: 500 },
  });
  db = await clientWithout(cluster, TARGET, 'lock_timeout');
  hurry = hurryClaims(cluster, TARGET);
}, 120_000);
afterAll(async () => {
  await hurry?.stop();
  await db?.end();
  await cluster?.stop();
});

const status = async () => (await call(cluster.url(TARGET), 'GET', '/admin/replication', { headers: adminHeaders })).body;
const orgHere = async (id: string) => (await call(cluster.url(TARGET), 'GET', `/admin/organizations/${id}`, { headers: adminHeaders })).status === 200;
/** The org's API keys at the target, live or not. */
const keysHere = async (orgId: string) =>
  (await db.query<{ key_id: string; deleted: boolean }>('SELECT key_id, deleted_at IS NOT NULL AS deleted FROM api_keys WHERE org_id = $1 ORDER BY created_at', [orgId])).rows;

test("a change whose apply alone waits on a row locked for good, while others apply, is parked as apply-failed with the database's message", async () => {
  const org = await createOrg(cluster.url(ORIGIN), 'locked one');
  expect(await eventually(async () => (await keysHere(org.id)).length === 1, 20_000, 200)).toBe(true);
  const [key] = await keysHere(org.id);
  // A session idle in a transaction holds the org's API key row: the rotation's apply (it revokes that key) waits on it.
  const locker = new Client({ connectionString: cluster.deployment.configFor(TARGET).region.databaseUrl });
  await locker.connect();
  let locked = true;
  try {
    await locker.query('BEGIN');
    await locker.query('SELECT 1 FROM api_keys WHERE key_id = $1 FOR UPDATE', [key?.key_id]);
    const rotated = await call(cluster.url(ORIGIN), 'POST', `/admin/organizations/${org.id}/api-keys`, { headers: adminHeaders });
    expect(rotated.status).toBe(201);
    // Other changes keep coming and apply meanwhile; the rotation is tried again on each claim of it.
    const others: string[] = [];
    const parked = await eventually(async () => {
      others.push((await createOrg(cluster.url(ORIGIN), `other ${others.length}`)).id);
      return (await status()).failures.parked > 0;
    }, 120_000, 500);
    expect(parked).toBe(true);
    const f = (await status()).failures;
    expect(f).toMatchObject({ failing: 0, parked: 1, parked_by_reason: { 'apply-failed': 1 } });
    expect(f.oldest_parked[0]).toMatchObject({
      reason: 'apply-failed', failures: MAX_FAILURES,
      error: expect.stringMatching(/lock timeout.*waited for a lock past the database's lock_timeout while other changes applied/),
    });
    // The others applied here; the rotation did not.
    expect(await eventually(async () => (await Promise.all(others.map(orgHere))).every(Boolean), 20_000, 200)).toBe(true);
    expect(await keysHere(org.id)).toEqual([{ key_id: key?.key_id, deleted: false }]);
    // Once the lock is gone, the retry of parked changes applies it.
    await locker.query('ROLLBACK');
    locked = false;
    const retried = await call(cluster.url(TARGET), 'POST', '/admin/replication/parked/retry', { headers: adminHeaders });
    expect(retried.body).toMatchObject({ applied: 1 });
    expect((await keysHere(org.id)).map((k) => k.deleted)).toEqual([true, false]);
    expect((await status()).failures).toMatchObject({ failing: 0, parked: 0 });
  } finally {
    if (locked) await locker.query('ROLLBACK').catch(() => undefined);
    await locker.end();
  }
}, 180_000);

test('a lock that holds up every apply (its table locked) parks nothing and counts nothing; the changes apply once it goes', async () => {
  const locker = new Client({ connectionString: cluster.deployment.configFor(TARGET).region.databaseUrl });
  await locker.connect();
  const orgs: string[] = [];
  let locked = true;
  try {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE organizations IN SHARE MODE');
    for (let i = 0; i < 3; i++) orgs.push((await createOrg(cluster.url(ORIGIN), `held ${i}`)).id);
    // Each change tried more often than MAX_FAILURES (first read, one by one, claims), none counted: the
    // region's log says so at each of its lock timeouts.
    const seen = { failing: 0, parked: 0 };
    const uncounted = () => cluster.logs(TARGET).filter((l) => l.includes('lock_timeout') && l.includes('"counted":false')).length;
    const tried = await eventually(async () => {
      const f = (await status()).failures;
      seen.failing = Math.max(seen.failing, f.failing);
      seen.parked = Math.max(seen.parked, f.parked);
      return uncounted() >= orgs.length * MAX_FAILURES;
    }, 120_000, 500);
    expect(tried).toBe(true);
    expect(seen).toEqual({ failing: 0, parked: 0 });
    expect(await orgHere(orgs[0] as string)).toBe(false);
  } finally {
    if (locked) await locker.query('ROLLBACK').catch(() => undefined);
    locked = false;
    await locker.end();
  }
  expect(await eventually(async () => (await Promise.all(orgs.map(orgHere))).every(Boolean), 60_000, 200)).toBe(true);
  expect((await status()).failures).toMatchObject({ failing: 0, parked: 0 });
}, 180_000);
