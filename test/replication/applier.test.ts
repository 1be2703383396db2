/**
 * The applier against a real Postgres and Redis: when the database itself is down (the applier's probe,
 * SELECT 1, fails), events stay pending however often they are retried — no failure is counted against
 * them and nothing is parked — and they apply once the database is back.
 */
import { Client } from 'pg';
import { groupInfo } from '../../src/replication/stream';
import { eventually } from '../support/harness';
import { orgEvent, REGION, startApplierRig, type ApplierRig } from '../support/applier-rig';

let rig: ApplierRig;
let admin: Client;

afterAll(async () => {
  await admin?.end();
  await rig?.cleanup();
});

/** Refuses every connection to the region's database and ends the open ones: an outage, as the applier sees it. */
async function setDatabaseUp(up: boolean): Promise<void> {
  const name = new URL(rig.databaseUrl).pathname.slice(1);
  await admin.query(`ALTER DATABASE "${name}" WITH ALLOW_CONNECTIONS ${up}`);
  if (!up) await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
}

test('a database outage parks nothing and counts no failure; the events apply once it is back', async () => {
  rig = await startApplierRig('applier');
  const url = new URL(rig.databaseUrl);
  url.pathname = '/postgres';
  admin = new Client({ connectionString: url.toString() });
  await admin.connect();
  const applier = await rig.applier();
  const warm = orgEvent('before the outage');
  await rig.publish(warm);
  applier.start();
  expect(await eventually(async () => (await rig.db.organization.findUnique({ where: { id: warm.orgId } })) !== null, 10_000, 50)).toBe(true);

  await setDatabaseUp(false);
  const events = [orgEvent('during outage 1'), orgEvent('during outage 2')];
  for (const e of events) await rig.publish(e);
  // Many read/claim cycles (claims every 100 ms), each a failed attempt.
  await new Promise((r) => setTimeout(r, 3000));
  // Neither is acked: delivered and pending, or not delivered yet (claims of the first keep the reader busy).
  const group = (await groupInfo(rig.redis, rig.keys.inbox(REGION))).find((g) => g.name === REGION);
  expect((group?.pending ?? 0) + (group?.lag ?? 0)).toBe(2);
  expect(group?.pending).toBeGreaterThanOrEqual(1);
  expect(applier.parkedEvents).toBe(0);

  await setDatabaseUp(true);
  for (const e of events) {
    expect(await eventually(async () => (await rig.db.organization.findUnique({ where: { id: e.orgId } }))?.name === e.ops[0]?.row.name, 15_000, 100)).toBe(true);
  }
  expect(await eventually(async () => (await rig.pendingCount()) === 0, 10_000, 100)).toBe(true);
  expect(await rig.db.$queryRawUnsafe<unknown[]>('SELECT * FROM replication_failures')).toEqual([]);
  for (const e of events) expect((await rig.tracker.status(e.changeId))[REGION]).not.toMatch(/^parked /);
  expect(await rig.redis.xlen(rig.keys.deadLetter)).toBe(0);
}, 60_000);
