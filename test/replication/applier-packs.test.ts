/**
 * Packs (several events in one inbox entry, see event-auth.ts and delivery.ts) on the apply side: each
 * event of a pack is applied, acked to its origin and counted as if it came alone; the entry is XACKed
 * once every event of it is settled (applied or parked), so an event that fails keeps its pack pending;
 * a pack with one unreadable event is dead-lettered whole; a pack larger than the batch goes to the
 * database in transactions of at most batchSize events.
 */
import { MAX_FAILURES } from '../../src/replication/parked';
import { eventually } from '../support/harness';
import { eventFor, orgEvent, REGION, startApplierRig, type ApplierRig } from '../support/applier-rig';

let rig: ApplierRig;
beforeAll(async () => {
  rig = await startApplierRig('packs');
});
afterAll(async () => {
  await rig.cleanup();
});

const orgName = async (id: string) => (await rig.db.organization.findUnique({ where: { id } }))?.name ?? null;
const parked = async (changeId: string) =>
  (await rig.db.$queryRawUnsafe<{ reason: string }[]>('SELECT reason FROM replication_failures WHERE change_id = $1::uuid AND parked_at IS NOT NULL', changeId))[0]?.reason ?? null;
const deadLetters = async () => (await rig.redis.xrange(rig.keys.deadLetter, '-', '+')) as [string, string[]][];

test('every event of a pack is applied and acked to its origin; the entry is XACKed once', async () => {
  const events = [orgEvent('p1'), orgEvent('p2'), orgEvent('p3')];
  const id = await rig.publishPack(events);
  const applier = await rig.applier();
  const xacks = jest.spyOn(rig.redis, 'xack');
  applier.start();
  expect(await eventually(async () => (await orgName(events[2]!.orgId)) === 'p3', 10_000, 50)).toBe(true);
  for (const e of events) expect(await orgName(e.orgId)).toBe(e.ops[0]?.row.name);
  expect(await eventually(async () => (await rig.pendingCount()) === 0, 5000, 50)).toBe(true);
  for (const e of events) expect((await rig.tracker.status(e.changeId))[REGION]).toMatch(/^applied/);
  expect(xacks.mock.calls.filter((c) => c.slice(2).includes(id))).toHaveLength(1);
  expect(applier.appliedEvents).toBe(3);
  xacks.mockRestore();
  await applier.stop();
}, 30_000);

test('an event of a pack that cannot apply keeps its pack pending until it is parked; the others apply at once; an unknown table is parked at once', async () => {
  const good = [orgEvent('q1'), orgEvent('q2')];
  const failing = orgEvent(undefined); // no name: NOT NULL violation, parked after MAX_FAILURES attempts
  const unknownTable = eventFor('widgets', 'w-pack', { id: 'w-pack' });
  await rig.publishPack([good[0]!, failing, unknownTable, good[1]!]);
  const applier = await rig.applier();
  applier.start();
  expect(await eventually(async () => (await orgName(good[1]!.orgId)) === 'q2', 10_000, 50)).toBe(true);
  expect(await orgName(good[0]!.orgId)).toBe('q1');
  expect(await eventually(async () => (await parked(unknownTable.changeId)) === 'unknown-table', 5000, 50)).toBe(true);
  // The failing event is not settled: its pack is still pending (re-read whole; the others apply again as no-ops).
  expect(await parked(failing.changeId)).toBeNull();
  expect(await rig.pendingCount()).toBe(1);
  expect(await eventually(async () => (await parked(failing.changeId)) === 'apply-failed', 20_000, 50)).toBe(true);
  expect(await eventually(async () => (await rig.pendingCount()) === 0, 5000, 50)).toBe(true);
  expect((await rig.tracker.status(failing.changeId))[REGION]).toMatch(/^parked /);
  expect((await rig.tracker.status(good[0]!.changeId))[REGION]).toMatch(/^applied/);
  expect(MAX_FAILURES).toBeGreaterThan(1);
  await applier.stop();
}, 60_000);

test('a pack with one unreadable event is dead-lettered whole: none of its events is applied', async () => {
  const fine = orgEvent('r1');
  const before = (await deadLetters()).length;
  const { ops: _ops, ...noOps } = orgEvent('r2');
  const auth = (await import('../support/env')).testEventAuth();
  const id = await rig.publishPack([], `[${auth.eventBytes(fine)},${JSON.stringify(noOps)}]`);
  const after = orgEvent('r3');
  await rig.publish(after);
  const applier = await rig.applier();
  applier.start();
  expect(await eventually(async () => (await orgName(after.orgId)) === 'r3', 10_000, 50)).toBe(true);
  expect(await eventually(async () => (await deadLetters()).length === before + 1, 5000, 50)).toBe(true);
  expect(await orgName(fine.orgId)).toBeNull();
  const dead = (await deadLetters()).at(-1)?.[1] ?? [];
  expect(dead.slice(0, 4)).toEqual(['region', REGION, 'id', id]);
  expect(dead[4]).toBe('p');
  expect(await eventually(async () => (await rig.pendingCount()) === 0, 5000, 50)).toBe(true);
  await applier.stop();
}, 30_000);

test('a pack with more events than batchSize is applied in transactions of at most batchSize events', async () => {
  const events = Array.from({ length: 5 }, (_, i) => orgEvent(`s${i}`));
  await rig.publishPack(events);
  const applier = await rig.applier({ batchSize: 2 });
  const apply = jest.spyOn(applier as unknown as { apply: (b: unknown[]) => Promise<void> }, 'apply');
  applier.start();
  expect(await eventually(async () => (await Promise.all(events.map((e) => orgName(e.orgId)))).every((n) => n !== null), 10_000, 50)).toBe(true);
  // (Calls before the pack's are the retry of the events parked above, one at a time, at start.)
  expect(apply.mock.calls.map(([batch]) => batch.length).slice(-3)).toEqual([2, 2, 1]);
  expect(await eventually(async () => (await rig.pendingCount()) === 0, 5000, 50)).toBe(true);
  await applier.stop();
}, 30_000);
