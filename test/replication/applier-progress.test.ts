/**
 * replication_progress (the status's `applied` and lag, the console's "behind"): a batch of one origin's
 * events is counted whole and records its newest event (the latest createdAt), whatever their order in the
 * batch. Recording an older one would show the region behind by the batch's span (a backlog applied after
 * an outage: hours) until the origin's next change arrives.
 */
import type { ChangeEvent } from '../../src/replication/tables';
import { eventually } from '../support/harness';
import { ORIGIN, orgEvent, startApplierRig, type ApplierRig } from '../support/applier-rig';

let rig: ApplierRig;
beforeAll(async () => {
  rig = await startApplierRig('progress');
});
afterAll(async () => {
  await rig.cleanup();
});

type Progress = { applied_count: number; last_change_id: string; last_event_at: Date };
const progress = async () =>
  (await rig.db.$queryRawUnsafe<Progress[]>(
    'SELECT applied_count::int AS applied_count, last_change_id::text AS last_change_id, last_event_at FROM replication_progress WHERE origin_region = $1',
    ORIGIN,
  ))[0] ?? null;
const createdAt = (e: ChangeEvent, at: number): ChangeEvent => ({ ...e, createdAt: new Date(at).toISOString() });

test('a batch of events records its newest event, not its first or last in order', async () => {
  const t = Date.now() - 3_600_000;
  // Created an hour apart, the newest in the middle of the pack.
  const events = [createdAt(orgEvent('oldest'), t), createdAt(orgEvent('newest'), t + 3_600_000), createdAt(orgEvent('middle'), t + 1_800_000)];
  await rig.publishPack(events);
  const applier = await rig.applier();
  applier.start();
  expect(await eventually(async () => (await progress())?.applied_count === 3, 10_000, 50)).toBe(true);
  const p = await progress();
  expect(p?.last_change_id).toBe(events[1]!.changeId);
  expect(p?.last_event_at.toISOString()).toBe(events[1]!.createdAt);
  await applier.stop();
}, 30_000);
