/**
 * A change a region parked and later applied (the retry of parked changes) is acked to its origin as
 * applied; when the origin's Redis does not answer at that moment, the ack is sent again until it does. It
 * was logged ("the events stay pending and are acked on redelivery") and dropped: a retried change has no
 * inbox entry left to be read again, and the origin had confirmed the delivery on the parked ack, so nothing
 * delivered it again. The change's status then showed the region as parked (and pending) for good, though
 * it held the change. One region in the test process (real HTTP, Postgres and Redis); its origin, not
 * running, has a Redis of its own that the test pauses.
 */
import { replicationKeys } from '../../src/redis';
import { PEER_COMMAND_TIMEOUT_MS } from '../../src/replication/links';
import { removeMember } from '../../src/replication/member-record';
import { testEventAuth } from '../support/env';
import { adminHeaders, call, eventually } from '../support/harness';
import { ORIGIN, REGION, testId, eventFor } from '../support/applier-rig';
import { originRig } from '../support/origin-rig';

const SKEW_MS = 2000;
const o = originRig('parkedappliedack', { maxClockSkewMs: SKEW_MS });

/**
 * An organization's change from ORIGIN, ahead of this region's clock by more than the bound, put in this
 * region's inbox and waited for until its origin's Redis holds the parked ack (clock-skew). `retryable()`
 * waits until the clocks agree, so that the retry applies it.
 */
async function parkedChange(name: string) {
  const keys = replicationKeys(o.deployment.file.redisKeyPrefix);
  const id = testId();
  const ahead = Date.now() + SKEW_MS + 3000;
  const event = eventFor('organizations', id, { id, parent_id: null, name }, { wall: ahead });
  await o.own.xadd(keys.inbox(REGION), '*', ...testEventAuth().entryFields(event));
  const ack = async () => (await o.theirs.hget(keys.ack(event.changeId), REGION)) ?? '';
  expect(await eventually(async () => (await ack()).startsWith('parked '), 15_000, 100)).toBe(true);
  const retryable = () => new Promise((r) => setTimeout(r, Math.max(0, ahead - SKEW_MS - Date.now()) + 200));
  return { keys, id, event, ack, retryable };
}

test('a parked change applied while its origin\'s Redis does not answer is acked applied once it does, and its status no longer shows the region as parked', async () => {
  // Ahead of this region's clock by more than the bound: parked (clock-skew) until the clocks agree.
  const { id, event, ack, retryable } = await parkedChange('from the future');
  const status = async () => (await call(o.region.url, 'GET', `/admin/replication/changes/${event.changeId}`, { headers: adminHeaders })).body;
  expect(await status()).toMatchObject({ parked_regions: [REGION] });

  // Once the clocks agree, the retry (the operator's here, or the periodic one) applies it while the
  // origin's Redis does not answer, for longer than the ack's command may take.
  o.originRedis.pause();
  try {
    await retryable();
    const retried = await call(o.region.url, 'POST', '/admin/replication/parked/retry', { headers: adminHeaders });
    expect(retried.status).toBe(200);
    expect((await call(o.region.url, 'GET', `/admin/organizations/${id}`, { headers: adminHeaders })).body).toMatchObject({ name: 'from the future' });
    // Its ack could not be sent meanwhile (the origin's Redis keeps its parked ack until it answers again).
    expect(await eventually(async () => o.notSent() > 0, 15_000, 100)).toBe(true);
  } finally {
    o.originRedis.resume();
  }
  // Back: the applied ack reaches it, and the status shows the region as holding the change.
  expect(await eventually(async () => (await ack()).startsWith('applied'), 30_000, 200)).toBe(true);
  const after = await status();
  expect(after.parked_regions).toEqual([]);
  expect(after.applied_at[REGION]).toEqual(expect.any(String));
}, 90_000);

test('the ack of a parked change applied while its origin does not answer is dropped once that origin is removed from the deployment', async () => {
  const { keys, event, retryable } = await parkedChange('from a region removed later');
  const dropped = () => o.lines.filter((l) => l.msg === "the ack of a retried parked change is dropped: its origin was removed from the deployment" && l.change_id === event.changeId);
  o.originRedis.pause();
  try {
    await retryable();
    expect((await call(o.region.url, 'POST', '/admin/replication/parked/retry', { headers: adminHeaders })).status).toBe(200);
    expect(await eventually(async () => o.notSent() > 0, 15_000, 100)).toBe(true);
    // The origin leaves the deployment while its Redis does not answer (it may never again).
    await removeMember(o.own, keys, ORIGIN, true);
    expect(await eventually(async () => dropped().length === 1, 15_000, 100)).toBe(true);
    // A send begun before the drop (one every 2 s; the next does not wait for it) may still be waiting on the
    // paused Redis, and says it failed when its command's 2 s bound runs out: a try of before the drop, to be
    // counted before. (Three runs logged that failure only 40 to 120 ms before the drop's line: on a loaded
    // host it can come after it, and after a read right after it.)
    await new Promise((r) => setTimeout(r, PEER_COMMAND_TIMEOUT_MS + 500));
    const after = o.notSent();
    await new Promise((r) => setTimeout(r, 5000));
    expect(o.notSent()).toBe(after);
    expect(dropped()).toHaveLength(1);
  } finally {
    o.originRedis.resume();
  }
}, 90_000);
