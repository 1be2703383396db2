/**
 * A change that arrives after a newer write of its row has been applied here loses (last writer wins) and is
 * acked to its origin as superseded, naming the winning write: an all_regions writer waiting on it is told
 * its write did not hold (409), never that it was applied while the row shows another write.
 */
import { formatVersion } from '../../src/replication/hlc';
import { eventually } from '../support/harness';
import { eventFor, ORIGIN, REGION, startApplierRig, testId, type ApplierRig } from '../support/applier-rig';

let rig: ApplierRig;
beforeAll(async () => {
  rig = await startApplierRig('superseded');
});
afterAll(async () => {
  await rig.cleanup();
});

test('an update older than the row applied here is acked superseded by the newer write, and leaves the row as it is', async () => {
  const applier = await rig.applier();
  applier.start();
  const id = testId();
  const wall = Date.now();
  const created = formatVersion({ wall, counter: 0, region: ORIGIN });
  const name = async () => (await rig.db.organization.findUnique({ where: { id } }))?.name ?? null;
  await rig.publish(eventFor('organizations', id, { id, parent_id: null, name: 'created', created_version: created }, { wall }));
  expect(await eventually(async () => (await name()) === 'created', 10_000, 20)).toBe(true);
  const newer = eventFor('organizations', id, { id, parent_id: null, name: 'newer', created_version: created }, { wall: wall + 2000, origin: 'asia-japan' });
  await rig.publish(newer);
  expect(await eventually(async () => (await name()) === 'newer', 10_000, 20)).toBe(true);
  // Written at its origin before the newer one, delivered after it.
  const older = eventFor('organizations', id, { id, parent_id: null, name: 'older', created_version: created }, { wall: wall + 1000 });
  await rig.publish(older);
  expect(await eventually(async () => (await rig.tracker.status(older.changeId))[REGION] !== undefined, 10_000, 20)).toBe(true);
  expect((await rig.tracker.status(older.changeId))[REGION]).toMatch(new RegExp(`^superseded:organizations:${id}:${newer.ops[0]!.version.replace(/\./g, '\\.')}@`));
  expect((await rig.tracker.status(newer.changeId))[REGION]).toMatch(/^applied@/);
  expect(await name()).toBe('newer');
  await applier.stop();
}, 30_000);
