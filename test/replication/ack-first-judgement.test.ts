/**
 * A region's first judgement of a change stands. An update applied (and acked "applied") is applied again
 * when its pack is read again (another event of the pack failed, so the entry stayed pending); by then a
 * newer update of the same row has arrived, and the second judgement is "superseded". That must neither
 * replace the recorded ack nor be announced as lost: a waiter or a status read would take a write that was
 * answered 2xx, and held, for one that lost (an all_regions Idempotency-Key replay would answer 409).
 */
import type { Redis } from 'ioredis';
import { formatVersion } from '../../src/replication/hlc';
import { eventually } from '../support/harness';
import { eventFor, ORIGIN, orgEvent, REGION, startApplierRig, testId, type ApplierRig } from '../support/applier-rig';

let rig: ApplierRig;
const subs: Redis[] = [];
beforeAll(async () => {
  rig = await startApplierRig('ackfirst');
});
afterAll(async () => {
  for (const s of subs) s.disconnect();
  await rig.cleanup();
});

test('an update acked applied stays applied after a newer update of its row arrives and the update is applied again', async () => {
  const applier = await rig.applier({ claimIdleMs: 1000, claimEveryMs: 1500 });
  const id = testId();
  const wall = Date.now();
  const created = formatVersion({ wall, counter: 0, region: ORIGIN });
  const create = eventFor('organizations', id, { id, parent_id: null, name: 'created', created_version: created }, { wall });
  const first = eventFor('organizations', id, { id, parent_id: null, name: 'first', created_version: created }, { wall: wall + 1000 });
  const newer = eventFor('organizations', id, { id, parent_id: null, name: 'newer', created_version: created }, { wall: wall + 2000, origin: 'asia-japan' });
  applier.start();
  await rig.publish(create);
  expect(await eventually(async () => (await rig.db.organization.findUnique({ where: { id } }))?.name === 'created', 10_000, 20)).toBe(true);
  // The update shares a pack with an event that cannot be applied (NOT NULL): the entry stays pending.
  await rig.publishPack([first, orgEvent(undefined)]);
  expect(await eventually(async () => ((await rig.tracker.status(first.changeId))[REGION] ?? '').startsWith('applied@'), 10_000, 20)).toBe(true);
  const announced: string[] = [];
  const sub = rig.redis.duplicate();
  subs.push(sub);
  sub.on('message', (_channel: string, message: string) => announced.push(message));
  await new Promise((r) => sub.once('ready', r));
  await sub.subscribe(rig.keys.ackChannel(ORIGIN));
  await rig.publish(newer);
  expect(await eventually(async () => (await rig.db.organization.findUnique({ where: { id } }))?.name === 'newer', 10_000, 20)).toBe(true);
  // The pending pack is claimed again (claimIdleMs) and its update judged again, against the newer row.
  const reread = await eventually(async () => announced.some((m) => m.includes(first.changeId)), 15_000, 100);
  expect(reread).toBe(true);
  expect((await rig.tracker.status(first.changeId))[REGION]).toMatch(/^applied@/);
  for (const m of announced.filter((x) => x.includes(first.changeId))) expect((JSON.parse(m) as { lost?: Record<string, string> }).lost?.[first.changeId]).toBeUndefined();
});

test('a change acked applied by one process of the region is not turned back into parked by another that parked it before', async () => {
  const changeId = testId();
  await rig.tracker.ack(REGION, [changeId]);
  expect((await rig.tracker.status(changeId))[REGION]).toMatch(/^applied@/);
  // The other process re-reads an entry holding the change it parked earlier, and acks it as parked again.
  await rig.tracker.parked(REGION, [changeId]);
  expect((await rig.tracker.status(changeId))[REGION]).toMatch(/^applied@/);
  // A change parked first is recorded as parked, and an apply later (the retry of parked events) replaces it.
  const later = testId();
  await rig.tracker.parked(REGION, [later]);
  expect((await rig.tracker.status(later))[REGION]).toMatch(/^parked /);
  await rig.tracker.ack(REGION, [later]);
  expect((await rig.tracker.status(later))[REGION]).toMatch(/^applied@/);
});
