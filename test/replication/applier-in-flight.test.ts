/**
 * The applier applies two batches at once; XAUTOCLAIM must not hand it the entries of a batch it is still
 * applying (an apply that outlasts claimIdleMs: here, one waiting for a row lock held from outside).
 */
import { Client } from 'pg';
import { eventually } from '../support/harness';
import { orgEvent, REGION, startApplierRig, type ApplierRig } from '../support/applier-rig';

let rig: ApplierRig;
let holder: Client;
beforeAll(async () => {
  rig = await startApplierRig('inflight');
  holder = new Client({ connectionString: rig.databaseUrl });
  await holder.connect();
});
afterAll(async () => {
  await holder?.end();
  await rig?.cleanup();
});

// Waiters on this test's database only (pg_locks lists the whole server: other suites' applies wait too).
const lockWaiters = async () =>
  Number((await holder.query(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)).rows[0].n);

test('an entry whose apply waits on a lock past claimIdleMs is applied once, not claimed and applied again beside it', async () => {
  const applier = await rig.applier({ claimIdleMs: 50, claimEveryMs: 50 });
  applier.start();
  const e = orgEvent('held');
  // The row's per-key lock, as a local write of it would hold it.
  await holder.query('BEGIN');
  await holder.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`organizations:${e.orgId}`]);
  await rig.publish(e);
  expect(await eventually(async () => (await lockWaiters()) >= 1, 10_000, 20)).toBe(true);
  // Many claim rounds pass meanwhile; none takes the entry a second time.
  await new Promise((r) => setTimeout(r, 2500));
  expect(await lockWaiters()).toBe(1);
  await holder.query('COMMIT');
  expect(await eventually(async () => (await rig.db.organization.findUnique({ where: { id: e.orgId } }))?.name === 'held', 10_000, 50)).toBe(true);
  expect(await eventually(async () => (await rig.pendingCount()) === 0, 10_000, 50)).toBe(true);
  // Counted once (the count is written a moment after the apply).
  const counted = async () =>
    Number((await rig.db.$queryRawUnsafe<{ applied_count: bigint }[]>(`SELECT applied_count FROM replication_progress WHERE origin_region = 'us-iowa'`))[0]?.applied_count ?? 0);
  expect(await eventually(async () => (await counted()) > 0, 10_000, 50)).toBe(true);
  await new Promise((r) => setTimeout(r, 500));
  expect(await counted()).toBe(1);
  expect((await rig.tracker.status(e.changeId))[REGION]).toMatch(/^applied@/);
});
