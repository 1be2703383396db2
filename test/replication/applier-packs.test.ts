/**
 * Packs (several events in one inbox entry, see event-auth.ts and delivery.ts) on the apply side: each
 * event of a pack is applied, acked to its origin and counted as if it came alone; the entry is XACKed
 * once every event of it is settled (applied or parked), so an event that fails keeps its pack pending;
 * an unreadable event of a pack is dead-lettered alone and the rest applies; a pack larger than the batch
 * goes to the database in transactions of at most batchSize events, and a transaction that fails is
 * retried event by event without applying again what committed before it.
 */
import { PACK_MAX_EVENTS } from '../../src/replication/delivery';
import { MAX_FAILURES } from '../../src/replication/parked';
import type { ChangeEvent } from '../../src/replication/tables';
import { testEventAuth } from '../support/env';
import { eventually } from '../support/harness';
import { eventFor, ORIGIN, orgEvent, REGION, startApplierRig, type ApplierRig } from '../support/applier-rig';

let rig: ApplierRig;
beforeAll(async () => {
  rig = await startApplierRig('packs');
});
afterEach(async () => {
  jest.restoreAllMocks();
  await rig.reset();
});
afterAll(async () => {
  await rig.cleanup();
});

const parked = async (changeId: string) =>
  (await rig.db.$queryRawUnsafe<{ reason: string }[]>('SELECT reason FROM replication_failures WHERE change_id = $1::uuid AND parked_at IS NOT NULL', changeId))[0]?.reason ?? null;
const deadLetters = async () => (await rig.redis.xrange(rig.keys.deadLetter, '-', '+')) as [string, string[]][];
const auth = testEventAuth();
/** The batches the applier sent to the database that hold any of `events`, as their sizes. */
const spyApply = (applier: object, events: ChangeEvent[]) => {
  const spy = jest.spyOn(applier as unknown as { apply: (b: { event: ChangeEvent }[]) => Promise<void> }, 'apply');
  const mine = new Set(events.map((e) => e.changeId));
  return () => spy.mock.calls.filter(([batch]) => batch.some((p) => mine.has(p.event.changeId))).map(([batch]) => batch.map((p) => p.event.changeId));
};

test('every event of a pack is applied and acked to its origin; the entry is XACKed once', async () => {
  const events = [orgEvent('p1'), orgEvent('p2'), orgEvent('p3')];
  const id = await rig.publishPack(events);
  const applier = await rig.applier();
  const xacks = jest.spyOn(rig.redis, 'xack');
  applier.start();
  expect(await eventually(async () => (await rig.orgName(events[2]!.orgId)) === 'p3', 10_000, 50)).toBe(true);
  for (const e of events) expect(await rig.orgName(e.orgId)).toBe(e.ops[0]?.row.name);
  expect(await eventually(async () => (await rig.pendingCount()) === 0, 5000, 50)).toBe(true);
  for (const e of events) expect((await rig.tracker.status(e.changeId))[REGION]).toMatch(/^applied/);
  expect(xacks.mock.calls.filter((c) => c.slice(2).includes(id))).toHaveLength(1);
  expect(applier.appliedEvents).toBe(3);
  await applier.stop();
}, 30_000);

test('an event of a pack that cannot apply keeps its pack pending until it is parked; the others apply at once; an unknown table is parked at once, and counted once', async () => {
  const good = [orgEvent('q1'), orgEvent('q2')];
  const failing = orgEvent(undefined); // no name: NOT NULL violation, parked after MAX_FAILURES attempts
  const unknownTable = eventFor('widgets', 'w-pack', { id: 'w-pack' });
  await rig.publishPack([good[0]!, failing, unknownTable, good[1]!]);
  // The pack is taken over again 1.5 s after each failed attempt: slow enough to look at it in between.
  const applier = await rig.applier({ claimIdleMs: 1500, claimEveryMs: 200 });
  applier.start();
  expect(await eventually(async () => (await rig.orgName(good[1]!.orgId)) === 'q2', 10_000, 50)).toBe(true);
  expect(await rig.orgName(good[0]!.orgId)).toBe('q1');
  expect(await eventually(async () => (await parked(unknownTable.changeId)) === 'unknown-table', 5000, 50)).toBe(true);
  // The failing event is not settled: its pack is still pending (re-read whole; the others apply again as no-ops).
  expect(await parked(failing.changeId)).toBeNull();
  expect(await rig.pendingCount()).toBe(1);
  expect(await eventually(async () => (await parked(failing.changeId)) === 'apply-failed', 30_000, 50)).toBe(true);
  expect(await eventually(async () => (await rig.pendingCount()) === 0, 5000, 50)).toBe(true);
  expect((await rig.tracker.status(failing.changeId))[REGION]).toMatch(/^parked /);
  expect((await rig.tracker.status(good[0]!.changeId))[REGION]).toMatch(/^applied/);
  // The unknown table's event came round with its pack MAX_FAILURES times and was parked each time: counted once.
  expect(MAX_FAILURES).toBeGreaterThan(1);
  expect(applier.parkedEvents).toBe(2);
  await applier.stop();
}, 60_000);

test('an event parked before whose ack did not reach its origin is acked as parked when its pack is read again, not parked again', async () => {
  const good = orgEvent('y1');
  const unknownTable = eventFor('widgets', 'w-again', { id: 'w-again' });
  await rig.publishPack([unknownTable, good]);
  const applier = await rig.applier();
  // The first ack to the origin (the park's) fails: the pack stays pending with the parked event unsettled.
  const links = (applier as unknown as { d: { links: { to: (r: string) => unknown } } }).d.links;
  const to = links.to.bind(links);
  jest.spyOn(links, 'to').mockImplementationOnce(() => {
    throw new Error('origin Redis unreachable');
  }).mockImplementation(to);
  applier.start();
  expect(await eventually(async () => (await rig.orgName(good.orgId)) === 'y1', 10_000, 50)).toBe(true);
  expect(await parked(unknownTable.changeId)).toBe('unknown-table');
  // Read again (taken over after claimIdleMs): the parked event is acked as parked; the pack is XACKed.
  expect(await eventually(async () => /^parked /.test((await rig.tracker.status(unknownTable.changeId))[REGION] ?? ''), 10_000, 50)).toBe(true);
  expect(await eventually(async () => (await rig.pendingCount()) === 0, 5000, 50)).toBe(true);
  expect(applier.parkedEvents).toBe(1);
  await applier.stop();
}, 30_000);

test('an unreadable event of a pack is dead-lettered alone (with its pack\'s id and index), once, and acked to its origin as parked; the rest applies; a pack with nothing readable is dead-lettered whole', async () => {
  const [fine, alsoFine] = [orgEvent('r1'), orgEvent('r2')];
  const failing = orgEvent(undefined); // keeps the pack pending for MAX_FAILURES reads
  const before = (await deadLetters()).length;
  const { ops: _ops, ...noOps } = orgEvent('r0');
  const id = await rig.publishPack([], `[${auth.eventBytes(fine)},${JSON.stringify(noOps)},${auth.eventBytes(failing)},${auth.eventBytes(alsoFine)}]`);
  const notAList = await rig.publishPack([], JSON.stringify(noOps));
  const after = orgEvent('r3');
  await rig.publish(after);
  const applier = await rig.applier();
  applier.start();
  expect(await eventually(async () => (await rig.orgName(after.orgId)) === 'r3', 10_000, 50)).toBe(true);
  expect(await rig.orgName(fine.orgId)).toBe('r1');
  expect(await rig.orgName(alsoFine.orgId)).toBe('r2');
  expect(await eventually(async () => (await parked(failing.changeId)) === 'apply-failed', 20_000, 50)).toBe(true);
  expect(await eventually(async () => (await rig.pendingCount()) === 0, 5000, 50)).toBe(true);
  // Read MAX_FAILURES times, dead-lettered once.
  const dead = (await deadLetters()).slice(before).map(([, f]) => f);
  expect(dead.filter((f) => f[3] === id)).toEqual([['region', REGION, 'id', id, 'index', '1', 'e', JSON.stringify(noOps)]]);
  expect(dead.filter((f) => f[3] === notAList).map((f) => f.slice(0, 5))).toEqual([['region', REGION, 'id', notAList, 'p']]);
  expect(dead).toHaveLength(2);
  // It names its change and origin: acked there as parked, so the origin's relay confirms it.
  expect((await rig.tracker.status(noOps.changeId))[REGION]).toMatch(/^parked /);
  await applier.stop();
}, 30_000);

test('a refused pack is listed with the origin its first event claims', async () => {
  const e = orgEvent('t1');
  const [p, body, k, kid, s, mac] = auth.packFields(`[${auth.eventBytes(e)},${auth.eventBytes(orgEvent('t2'))}]`) as string[];
  await rig.redis.xadd(rig.keys.inbox(REGION), '*', p!, body!.replace('t1', 'tX'), k!, kid!, s!, mac!);
  const applier = await rig.applier();
  applier.start();
  expect(await eventually(async () => applier.recentRefused.length === 1, 10_000, 50)).toBe(true);
  expect(applier.recentRefused[0]).toMatchObject({ origin: ORIGIN, reason: 'bad-signature' });
  expect(await rig.orgName(e.orgId)).toBeNull();
  await applier.stop();
}, 30_000);

test('a pack with more events than batchSize is applied in transactions of at most batchSize events', async () => {
  const events = Array.from({ length: 5 }, (_, i) => orgEvent(`s${i}`));
  await rig.publishPack(events);
  const applier = await rig.applier({ batchSize: 2 });
  const batches = spyApply(applier, events);
  applier.start();
  expect(await eventually(async () => (await Promise.all(events.map((e) => rig.orgName(e.orgId)))).every((n) => n !== null), 10_000, 50)).toBe(true);
  expect(batches().map((b) => b.length)).toEqual([2, 2, 1]);
  expect(await eventually(async () => (await rig.pendingCount()) === 0, 5000, 50)).toBe(true);
  await applier.stop();
}, 30_000);

test('a transaction of a pack that fails is retried event by event; what committed before it is not applied again', async () => {
  const ok = [orgEvent('u1'), orgEvent('u2')];
  const bad = orgEvent(undefined);
  const rest = [orgEvent('u3'), orgEvent('u4')];
  await rig.publishPack([...ok, bad, rest[0]!, rest[1]!]);
  const applier = await rig.applier({ batchSize: 2, claimIdleMs: 600_000, claimEveryMs: 600_000 });
  const batches = spyApply(applier, [...ok, bad, ...rest]);
  applier.start();
  expect(await eventually(async () => (await rig.orgName(rest[1]!.orgId)) === 'u4', 10_000, 50)).toBe(true);
  const id = (e: ChangeEvent) => e.changeId;
  expect(batches()).toEqual([[id(ok[0]!), id(ok[1]!)], [id(bad), id(rest[0]!)], [id(bad)], [id(rest[0]!)], [id(rest[1]!)]]);
  for (const e of [...ok, ...rest]) expect(await rig.orgName(e.orgId)).toBe(e.ops[0]?.row.name);
  expect(await rig.pendingCount()).toBe(1); // the bad event keeps its pack pending
  await applier.stop();
}, 30_000);

test('reads take batchSize / events-per-entry entries: few at start (packs may be full), then more as the entries prove single', async () => {
  const events = Array.from({ length: 300 }, (_, i) => orgEvent(`v${i}`));
  for (const e of events) await rig.publish(e);
  const applier = await rig.applier({ batchSize: 64 });
  const reader = (applier as unknown as { d: { reader: { call: (...a: unknown[]) => Promise<unknown> } } }).d.reader;
  const call = reader.call.bind(reader);
  const counts: number[] = [];
  reader.call = (...args: unknown[]) => {
    if (args[0] === 'XREADGROUP') counts.push(Number(args[args.indexOf('COUNT') + 1]));
    return call(...args);
  };
  applier.start();
  expect(await eventually(async () => (await rig.orgName(events[299]!.orgId)) === 'v299', 20_000, 50)).toBe(true);
  await applier.stop();
  expect(counts[0]).toBe(Math.max(1, Math.floor(64 / PACK_MAX_EVENTS)));
  expect(counts).toContain(64);
  expect(counts.indexOf(64)).toBeLessThan(10);
}, 60_000);

test('the database going away in the middle of a pack: the transactions committed before are acked at once, the rest stays pending and applies later, one XACK', async () => {
  const events = Array.from({ length: 4 }, (_, i) => orgEvent(`w${i}`));
  const id = await rig.publishPack(events);
  const applier = await rig.applier({ batchSize: 2, claimIdleMs: 3000, claimEveryMs: 100 });
  const inner = applier as unknown as { apply: (b: unknown[], o: unknown) => Promise<void>; databaseUp: () => Promise<boolean> };
  const apply = inner.apply.bind(applier);
  // The pack's second transaction fails once, and the database then reports itself down (once).
  const second = events[2]!.changeId;
  let failed = false;
  let sent = false;
  const up = jest.spyOn(inner, 'databaseUp');
  jest.spyOn(inner, 'apply').mockImplementation(async (b, o) => {
    sent = true;
    if (!failed && (b as { event: ChangeEvent }[]).some((p) => p.event.changeId === second)) {
      failed = true;
      up.mockResolvedValueOnce(false);
      throw new Error('Connection terminated unexpectedly');
    }
    return apply(b, o);
  });
  const xacks = jest.spyOn(rig.redis, 'xack');
  applier.start();
  // The first transaction's two changes are acked as applied at once, while the pack stays pending (it is
  // taken over again only 3 s after it was read). The bound counts from the read (the first transaction
  // sent), not from start(): on a loaded host an applier's start takes a good part of 2.5 s (the whole of the
  // first test above, start to XACK, took 1.4 s at load 16).
  expect(await eventually(async () => sent, 10_000, 10)).toBe(true);
  expect(await eventually(async () => /^applied/.test((await rig.tracker.status(events[1]!.changeId))[REGION] ?? ''), 2500, 20)).toBe(true);
  expect(await rig.pendingCount()).toBe(1);
  expect((await rig.tracker.status(events[2]!.changeId))[REGION]).toBeUndefined();
  expect(await eventually(async () => (await Promise.all(events.map((e) => rig.orgName(e.orgId)))).every((n) => n !== null), 10_000, 50)).toBe(true);
  expect(await eventually(async () => (await rig.pendingCount()) === 0, 5000, 50)).toBe(true);
  for (const e of events) expect((await rig.tracker.status(e.changeId))[REGION]).toMatch(/^applied/);
  expect(xacks.mock.calls.filter((c) => c.slice(2).includes(id))).toHaveLength(1);
  await applier.stop();
}, 30_000);
