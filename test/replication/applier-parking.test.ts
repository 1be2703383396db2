/**
 * The applier never wedges (issue G, item 4): an event it cannot apply is passed over (its failures are
 * counted in Postgres) and parked after a few, acknowledged to its origin as parked; later events apply
 * meanwhile; a restart with such an entry pending walks the pending list once instead of looping.
 */
import { FailureLog, MAX_FAILURES } from '../../src/replication/parked';
import { testEventAuth } from '../support/env';
import { eventually } from '../support/harness';
import { eventFor, orgEvent, REGION, startApplierRig, type ApplierRig } from '../support/applier-rig';

let rig: ApplierRig;
beforeAll(async () => {
  rig = await startApplierRig('parking');
});
afterAll(async () => {
  await rig.cleanup();
});

const orgName = async (id: string) => (await rig.db.organization.findUnique({ where: { id } }))?.name ?? null;
const failureRow = async (changeId: string) =>
  (await rig.db.$queryRawUnsafe<{ failures: number; reason: string; parked: boolean; last_error: string }[]>(
    'SELECT failures, reason, parked_at IS NOT NULL AS parked, last_error FROM replication_failures WHERE change_id = $1::uuid',
    changeId,
  ))[0] ?? null;

test('an event for an unknown table and one missing a NOT NULL column do not stop later events; both are parked and acked as parked', async () => {
  const before = orgEvent('before');
  const unknownTable = eventFor('widgets', 'w1', { id: 'w1', color: 'blue' });
  const missingName = orgEvent(undefined);
  const after = orgEvent('after');
  for (const e of [before, unknownTable, missingName, after]) await rig.publish(e);
  const applier = await rig.applier();
  applier.start();

  // Two batches are applied at once and their order is not kept (the merge rule is a maximum): "after" may
  // land before the batch holding "before" has retried its events one by one.
  expect(await eventually(async () => (await orgName(after.orgId)) === 'after' && (await orgName(before.orgId)) === 'before', 10_000, 50)).toBe(true);
  // The unknown table is parked at once; the NOT NULL violation after MAX_FAILURES failed attempts.
  expect(await failureRow(unknownTable.changeId)).toMatchObject({ reason: 'unknown-table', parked: true });
  expect(await eventually(async () => (await failureRow(missingName.changeId))?.parked === true, 15_000, 50)).toBe(true);
  expect(await failureRow(missingName.changeId)).toMatchObject({ reason: 'apply-failed', failures: MAX_FAILURES });
  expect((await failureRow(missingName.changeId))?.last_error).toMatch(/null value in column "name"|23502/);
  expect(await rig.pendingCount()).toBe(0);
  // Acked to the origin as parked: its relay can confirm the change, but no waiter counts it as applied.
  expect((await rig.tracker.status(missingName.changeId))[REGION]).toMatch(/^parked /);
  expect((await rig.tracker.status(unknownTable.changeId))[REGION]).toMatch(/^parked /);
  expect((await rig.tracker.status(after.changeId))[REGION]).not.toMatch(/^parked /);
  expect(await rig.tracker.wait(missingName.changeId, [REGION], [], Date.now() + 300)).toMatchObject({ complete: false });
  expect(applier.parkedEvents).toBe(2);
  await applier.stop();
}, 60_000);

test('a restart with a failing entry pending walks the pending list once, applies the rest, and keeps counting its failures', async () => {
  const bad = orgEvent(undefined);
  const good = [orgEvent('g1'), orgEvent('g2'), orgEvent('g3')];
  for (const e of [good[0], bad, good[1], good[2]]) if (e) await rig.publish(e);
  // A consumer read them and died before acking: they are its pending entries.
  await rig.redis.xreadgroup('GROUP', REGION, 'crashed', 'COUNT', 100, 'STREAMS', rig.keys.inbox(REGION), '>');

  const rereads = async () => {
    // No claims during this phase: only the walk of our own pending entries reads them.
    const applier = await rig.applier({ consumer: 'crashed', claimIdleMs: 600_000, claimEveryMs: 600_000 });
    const reader = (applier as unknown as { d: { reader: { call: (...a: unknown[]) => Promise<unknown> } } }).d.reader;
    const call = reader.call.bind(reader);
    let pendingReads = 0;
    reader.call = (...args: unknown[]) => {
      if (args[0] === 'XREADGROUP' && args[args.length - 1] !== '>') pendingReads += 1;
      return call(...args);
    };
    applier.start();
    await new Promise((r) => setTimeout(r, 2000));
    await applier.stop();
    return pendingReads;
  };

  // Before: the applier re-read its pending entries from 0 until the read came back empty, forever.
  expect(await rereads()).toBeLessThanOrEqual(3);
  for (const g of good) expect(await orgName(g.orgId)).toBe(g.ops[0]?.row.name);
  expect(await failureRow(bad.changeId)).toMatchObject({ failures: 1, parked: false });
  expect(await rig.pendingCount()).toBe(1);

  // A second restart: the count is durable, it goes on from 1.
  expect(await rereads()).toBeLessThanOrEqual(3);
  expect(await failureRow(bad.changeId)).toMatchObject({ failures: 2, parked: false });
}, 60_000);

test('a failure recorded by another process of the region is cleared when this one applies the event it claimed', async () => {
  // This applier has started (its failures loaded: none) before the other process's failure.
  const applier = await rig.applier({ consumer: 'survivor', claimIdleMs: 300, claimEveryMs: 200 });
  applier.start();
  try {
    const warm = orgEvent('warm-up');
    await rig.publish(warm);
    expect(await eventually(async () => (await orgName(warm.orgId)) === 'warm-up', 10_000, 50)).toBe(true);
    // Another process read the entry, failed to apply it (its failure row written as it writes it), and left
    // it pending: it stopped, or moved on.
    const event = orgEvent('failed elsewhere');
    const failures = new FailureLog(rig.db);
    // Added and read by the other consumer in one transaction: this applier's blocked read gets nothing.
    const inbox = rig.keys.inbox(REGION);
    const [[, added], [, stolen]] = ((await rig.redis.multi().xadd(inbox, '*', ...testEventAuth().entryFields(event)).xreadgroup('GROUP', REGION, 'other', 'COUNT', 100, 'STREAMS', inbox, '>').exec()) ?? []) as [unknown, unknown][];
    const streamId = String(added);
    expect(JSON.stringify(stolen)).toContain(streamId);
    await failures.record(event, streamId, new Error('connection terminated'));
    expect(await failureRow(event.changeId)).toMatchObject({ failures: 1, parked: false });
    // This process claims it, applies it, and clears the failure.
    expect(await eventually(async () => (await orgName(event.orgId)) === 'failed elsewhere', 10_000, 50)).toBe(true);
    expect(await eventually(async () => (await failureRow(event.changeId)) === null, 5_000, 50)).toBe(true);
  } finally {
    await applier.stop();
  }
}, 60_000);

test('a change an operator discarded here, delivered again, is acked as parked at its first failure and leaves no row; a row of one left by a race goes at the next claim round', async () => {
  const discardedRow = (changeId: string) => rig.db.$executeRawUnsafe(
    `INSERT INTO replication_discarded (change_id, origin_region, event, failures, reason, last_error, first_failed_at, parked_at)
     VALUES ($1::uuid, 'us-iowa', '{}'::jsonb, 3, 'apply-failed', 'test', now(), now())`,
    changeId,
  );
  const bad = orgEvent(undefined);
  await discardedRow(bad.changeId);
  await rig.publish(bad);
  // No claims: without the discard check the entry would stay pending, its failure counted, until claimed.
  const applier = await rig.applier({ consumer: 'after-discard', claimIdleMs: 600_000, claimEveryMs: 600_000 });
  applier.start();
  try {
    expect(await eventually(async () => /^parked /.test((await rig.tracker.status(bad.changeId))[REGION] ?? ''), 10_000, 50)).toBe(true);
    expect(await failureRow(bad.changeId)).toBeNull();
    expect(await rig.pendingCount()).toBe(0);
  } finally {
    await applier.stop();
  }
  // A park or a failure count that ran at the moment of the discard left a row: the next load removes it.
  const raced = orgEvent(undefined);
  await discardedRow(raced.changeId);
  await new FailureLog(rig.db).park([{ event: raced, streamId: '1-0', reason: 'apply-failed', error: 'test' }]);
  expect(await failureRow(raced.changeId)).toBeNull();
  await rig.db.$executeRawUnsafe(
    `INSERT INTO replication_failures (change_id, origin_region, event, failures, reason, last_error, parked_at) VALUES ($1::uuid, 'us-iowa', '{}'::jsonb, 3, 'apply-failed', 'race', now())`,
    raced.changeId,
  );
  await new FailureLog(rig.db).load();
  expect(await failureRow(raced.changeId)).toBeNull();
}, 60_000);
