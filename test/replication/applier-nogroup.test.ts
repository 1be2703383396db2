/**
 * An inbox that lost its consumer group while the applier runs (its Redis restarted empty during a quiet
 * moment: the origins' deliverers had no failed delivery, so they do not make the group again, see
 * Deliverer.ensured) is read again: the applier meets NOGROUP, makes the group anew and applies what
 * arrives after. Otherwise the region would apply nothing more until its processes restart.
 */
import { eventually } from '../support/harness';
import { orgEvent, REGION, startApplierRig, type ApplierRig } from '../support/applier-rig';

let rig: ApplierRig;
beforeAll(async () => {
  rig = await startApplierRig('nogroup');
});
afterAll(async () => {
  await rig.cleanup();
});


test('the applier makes its consumer group again when its inbox lost it, and applies what arrives after', async () => {
  const applier = await rig.applier();
  applier.start();
  const before = orgEvent('before the loss');
  await rig.publish(before);
  expect(await eventually(async () => (await rig.orgName(before.orgId)) === 'before the loss', 10_000, 50)).toBe(true);
  // The inbox and its group are gone (Redis restarted empty); the next delivery makes the stream, not the group.
  await rig.redis.del(rig.keys.inbox(REGION));
  const after = orgEvent('after the loss');
  await rig.publish(after);
  expect(await eventually(async () => (await rig.orgName(after.orgId)) === 'after the loss', 15_000, 50)).toBe(true);
  expect(await eventually(async () => (await rig.pendingCount()) === 0, 5000, 50)).toBe(true);
  await applier.stop();
}, 30_000);
