/**
 * Parked changes in numbers (src/replication/parked.ts) against a real database and Redis: more than a
 * page of them parked at once are all retried; one change delivered twice and read in one batch is parked
 * once and both its entries settled; the admin status lists the oldest parked first.
 */
import { FailureLog, failureStatus } from '../../src/replication/parked';
import { eventually } from '../support/harness';
import { eventFor, orgEvent, REGION, startApplierRig, type ApplierRig } from '../support/applier-rig';

let rig: ApplierRig;
beforeAll(async () => {
  rig = await startApplierRig('parkedpages');
});
afterAll(async () => {
  await rig.cleanup();
});

const orgName = async (id: string) => (await rig.db.organization.findUnique({ where: { id } }))?.name ?? null;
const parkedRows = async () => Number((await rig.db.$queryRawUnsafe<{ n: bigint }[]>('SELECT count(*) AS n FROM replication_failures WHERE parked_at IS NOT NULL'))[0]?.n ?? 0);

test('more than a page of changes parked by one statement (one parked_at) are all retried and applied', async () => {
  await rig.db.$executeRawUnsafe('DELETE FROM replication_failures');
  // 150 in one park: they share the statement's now() as parked_at, so the pages (100) go on by change id.
  const events = Array.from({ length: 150 }, (_, i) => orgEvent(`parked ${i}`));
  await new FailureLog(rig.db).park(events.map((event) => ({ event, streamId: '1-0', reason: 'apply-failed' as const, error: 'test' })));
  expect(await parkedRows()).toBe(150);
  const applier = await rig.applier({ consumer: 'pages' });
  try {
    expect(await applier.retryParked()).toEqual({ applied: 150, parked: 0 });
    expect(await parkedRows()).toBe(0);
    for (const e of [events[0], events[99], events[100], events[149]]) if (e) expect(await orgName(e.orgId)).toBe(e.ops[0]?.row.name);
  } finally {
    await applier.stop();
  }
}, 60_000);

test('one change delivered twice and read in one batch (its origin delivered it again) is parked once, and both entries are settled', async () => {
  await rig.reset();
  await rig.db.$executeRawUnsafe('DELETE FROM replication_failures');
  const twice = eventFor('widgets', 'w-twice', { id: 'w-twice', color: 'blue' });
  const later = orgEvent('after the twice-delivered one');
  for (const e of [twice, twice, later]) await rig.publish(e);
  const applier = await rig.applier({ consumer: 'twice' });
  applier.start();
  try {
    expect(await eventually(async () => (await orgName(later.orgId)) === later.ops[0]?.row.name, 10_000, 50)).toBe(true);
    expect(await eventually(async () => (await rig.pendingCount()) === 0, 10_000, 50)).toBe(true);
    expect(await eventually(async () => /^parked /.test((await rig.tracker.status(twice.changeId))[REGION] ?? ''), 10_000, 50)).toBe(true);
    const rows = await rig.db.$queryRawUnsafe<{ reason: string }[]>('SELECT reason FROM replication_failures WHERE change_id = $1::uuid AND parked_at IS NOT NULL', twice.changeId);
    expect(rows).toEqual([{ reason: 'unknown-table' }]);
  } finally {
    await applier.stop();
  }
}, 60_000);

test('the admin status lists the oldest parked changes first', async () => {
  await rig.db.$executeRawUnsafe('DELETE FROM replication_failures');
  const log = new FailureLog(rig.db);
  const first = orgEvent('parked first');
  const second = orgEvent('parked second');
  await log.park([{ event: first, streamId: '1-0', reason: 'apply-failed', error: 'first' }]);
  // parked_at has millisecond precision: the second is parked in a later millisecond.
  await new Promise((r) => setTimeout(r, 20));
  await log.park([{ event: second, streamId: '2-0', reason: 'apply-failed', error: 'second' }]);
  const status = await failureStatus(rig.db, 1);
  expect(status.parked).toBe(2);
  expect(status.oldest_parked.map((p) => p.change_id)).toEqual([first.changeId]);
}, 30_000);

test("the periodic retry of one reason's parked changes leaves those of other reasons to their own", async () => {
  await rig.db.$executeRawUnsafe('DELETE FROM replication_failures');
  // Parked as apply-failed; what stopped it has gone, so any retry of it would apply it now.
  const failed = orgEvent('parked as apply-failed');
  await new FailureLog(rig.db).park([{ event: failed, streamId: '1-0', reason: 'apply-failed', error: 'test' }]);
  const applier = await rig.applier({ consumer: 'by-reason' });
  try {
    // The every-minute retry of clock-skew changes (Applier.retryDue) does not take it: apply-failed ones
    // are retried every ten minutes, by a retry of their own.
    expect(await applier.retryParked({ reason: 'clock-skew' })).toEqual({ applied: 0, parked: 0 });
    expect(await parkedRows()).toBe(1);
    expect(await orgName(failed.orgId)).toBeNull();
    expect(await applier.retryParked({ reason: 'apply-failed' })).toEqual({ applied: 1, parked: 0 });
    expect(await orgName(failed.orgId)).toBe('parked as apply-failed');
  } finally {
    await applier.stop();
  }
}, 30_000);
