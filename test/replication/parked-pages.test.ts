/**
 * Parked changes in numbers (src/replication/parked.ts) against a real database and Redis: more than a
 * page of them parked at once are all retried; one change delivered twice and read in one batch is parked
 * once and both its entries settled; the admin status lists the oldest parked first; a retry does not apply
 * a change discarded after it read its page, and two processes retrying at once apply a change once.
 */
import type { Applier } from '../../src/replication/applier';
import { discardParked, FailureLog, failureStatus } from '../../src/replication/parked';
import { eventually } from '../support/harness';
import { eventFor, orgEvent, REGION, startApplierRig, type ApplierRig } from '../support/applier-rig';

let rig: ApplierRig;
beforeAll(async () => {
  rig = await startApplierRig('parkedpages');
});
afterAll(async () => {
  await rig.cleanup();
});

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
    for (const e of [events[0], events[99], events[100], events[149]]) if (e) expect(await rig.orgName(e.orgId)).toBe(e.ops[0]?.row.name);
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
    expect(await eventually(async () => (await rig.orgName(later.orgId)) === later.ops[0]?.row.name, 10_000, 50)).toBe(true);
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
    // The every-minute retry of clock-skew changes (ParkedRetry.retryDue) does not take it: apply-failed ones
    // are retried every ten minutes, by a retry of their own.
    expect(await applier.retryParked({ reason: 'clock-skew' })).toEqual({ applied: 0, parked: 0 });
    expect(await parkedRows()).toBe(1);
    expect(await rig.orgName(failed.orgId)).toBeNull();
    expect(await applier.retryParked({ reason: 'apply-failed' })).toEqual({ applied: 1, parked: 0 });
    expect(await rig.orgName(failed.orgId)).toBe('parked as apply-failed');
  } finally {
    await applier.stop();
  }
}, 30_000);

/** Runs `between` after the applier's retry has read a page of parked changes and before it applies them. */
function afterPageRead(applier: Applier, between: () => Promise<void>): void {
  const failures = (applier as unknown as { failures: FailureLog }).failures;
  const read = failures.parked.bind(failures);
  failures.parked = async (...args: Parameters<FailureLog['parked']>) => {
    const rows = await read(...args);
    if (rows.length) await between();
    return rows;
  };
}

test("a change an operator discards after the retry read its page is not applied: the discard stands", async () => {
  await rig.db.$executeRawUnsafe('DELETE FROM replication_failures; DELETE FROM replication_discarded');
  const event = orgEvent('discarded while the retry ran');
  await new FailureLog(rig.db).park([{ event, streamId: '1-0', reason: 'apply-failed', error: 'test' }]);
  const applier = await rig.applier({ consumer: 'discard-race' });
  let discarded: string[] = [];
  afterPageRead(applier, async () => {
    discarded = (await discardParked(rig.db, [event.changeId])).discarded.map((d) => d.change_id);
  });
  try {
    expect(await applier.retryParked()).toEqual({ applied: 0, parked: 0 });
    expect(discarded).toEqual([event.changeId]);
    expect(await rig.orgName(event.orgId)).toBeNull();
    const kept = await rig.db.$queryRawUnsafe<{ n: bigint }[]>('SELECT count(*) AS n FROM replication_discarded WHERE change_id = $1::uuid', event.changeId);
    expect(Number(kept[0]?.n)).toBe(1);
  } finally {
    await applier.stop();
  }
}, 30_000);

test('two processes of a region retrying the same parked change at once apply and count it once', async () => {
  await rig.db.$executeRawUnsafe('DELETE FROM replication_failures; DELETE FROM replication_discarded');
  const event = orgEvent('retried by two processes');
  await new FailureLog(rig.db).park([{ event, streamId: '1-0', reason: 'apply-failed', error: 'test' }]);
  const [a, b] = [await rig.applier({ consumer: 'retry-a' }), await rig.applier({ consumer: 'retry-b' })] as const;
  // Each applies only once both have read the page: both hold the same parked row.
  let read = 0;
  let bothRead!: () => void;
  const both = new Promise<void>((r) => (bothRead = r));
  for (const applier of [a, b]) afterPageRead(applier, async () => {
    if (++read === 2) bothRead();
    await both;
  });
  try {
    const results = await Promise.all([a.retryParked(), b.retryParked()]);
    expect(results.reduce((n, r) => n + r.applied, 0)).toBe(1);
    expect(results.reduce((n, r) => n + r.parked, 0)).toBe(0);
    expect(await rig.orgName(event.orgId)).toBe('retried by two processes');
    expect(await parkedRows()).toBe(0);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
}, 30_000);
