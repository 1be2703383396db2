/**
 * A change a region parked and later applied (the retry of parked changes) is acked to its origin as
 * applied; when the origin's Redis does not answer at that moment, the ack is sent again until it does. It
 * was logged ("the events stay pending and are acked on redelivery") and dropped: a retried change has no
 * inbox entry left to be read again, and the origin had confirmed the delivery on the parked ack, so nothing
 * delivered it again. The change's status then showed the region as parked (and pending) for good, though
 * it held the change. One region in the test process (real HTTP, Postgres and Redis); its origin, not
 * running, has a Redis of its own that the test pauses.
 */
import pino from 'pino';
import { createRedis, replicationKeys, type Redis } from '../../src/redis';
import { removeMember } from '../../src/replication/member-record';
import { startRegion, type RunningRegion } from '../../src/region';
import { createDeployment, REDIS_URL, testEventAuth, type TestDeployment } from '../support/env';
import { adminHeaders, call, eventually } from '../support/harness';
import { ownRedis, type OwnRedis } from '../support/redis-server';
import { ORIGIN, REGION, testId, eventFor } from '../support/applier-rig';
import { logLines } from '../support/log-lines';

const SKEW_MS = 2000;
let deployment: TestDeployment;
let region: RunningRegion;
let originRedis: OwnRedis;
let own: Redis;
let theirs: Redis;
const { lines, sink } = logLines();
/** How often the region logged that it could not send the ack of a parked change it applied. */
const notSent = () => lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('applied (parked before), but could not ack')).length;

beforeAll(async () => {
  originRedis = await ownRedis();
  await originRedis.start();
  deployment = await createDeployment('parkedappliedack', [ORIGIN, REGION], { maxClockSkewMs: SKEW_MS }, { [ORIGIN]: { redisUrl: originRedis.url } });
  region = await startRegion(deployment.configFor(REGION), { port: 0, drainTimeoutMs: 5000, log: pino({ level: 'info', base: { region: REGION } }, sink) });
  own = createRedis(REDIS_URL, 'parked-applied-ack-test', { queueWhileOffline: true });
  theirs = createRedis(originRedis.url, 'parked-applied-ack-test', { queueWhileOffline: true });
}, 60_000);
afterAll(async () => {
  originRedis?.resume();
  await region?.stop();
  own?.disconnect();
  theirs?.disconnect();
  await originRedis?.kill();
  await deployment?.cleanup();
});

/**
 * An organization's change from ORIGIN, ahead of this region's clock by more than the bound, put in this
 * region's inbox and waited for until its origin's Redis holds the parked ack (clock-skew). `retryable()`
 * waits until the clocks agree, so that the retry applies it.
 */
async function parkedChange(name: string) {
  const keys = replicationKeys(deployment.file.redisKeyPrefix);
  const id = testId();
  const ahead = Date.now() + SKEW_MS + 3000;
  const event = eventFor('organizations', id, { id, parent_id: null, name }, { wall: ahead });
  await own.xadd(keys.inbox(REGION), '*', ...testEventAuth().entryFields(event));
  const ack = async () => (await theirs.hget(keys.ack(event.changeId), REGION)) ?? '';
  expect(await eventually(async () => (await ack()).startsWith('parked '), 15_000, 100)).toBe(true);
  const retryable = () => new Promise((r) => setTimeout(r, Math.max(0, ahead - SKEW_MS - Date.now()) + 200));
  return { keys, id, event, ack, retryable };
}

test('a parked change applied while its origin\'s Redis does not answer is acked applied once it does, and its status no longer shows the region as parked', async () => {
  // Ahead of this region's clock by more than the bound: parked (clock-skew) until the clocks agree.
  const { id, event, ack, retryable } = await parkedChange('from the future');
  const status = async () => (await call(region.url, 'GET', `/admin/replication/changes/${event.changeId}`, { headers: adminHeaders })).body;
  expect(await status()).toMatchObject({ parked_regions: [REGION] });

  // Once the clocks agree, the retry (the operator's here, or the periodic one) applies it while the
  // origin's Redis does not answer, for longer than the ack's command may take.
  originRedis.pause();
  try {
    await retryable();
    const retried = await call(region.url, 'POST', '/admin/replication/parked/retry', { headers: adminHeaders });
    expect(retried.status).toBe(200);
    expect((await call(region.url, 'GET', `/admin/organizations/${id}`, { headers: adminHeaders })).body).toMatchObject({ name: 'from the future' });
    // Its ack could not be sent meanwhile (the origin's Redis keeps its parked ack until it answers again).
    expect(await eventually(async () => notSent() > 0, 15_000, 100)).toBe(true);
  } finally {
    originRedis.resume();
  }
  // Back: the applied ack reaches it, and the status shows the region as holding the change.
  expect(await eventually(async () => (await ack()).startsWith('applied'), 30_000, 200)).toBe(true);
  const after = await status();
  expect(after.parked_regions).toEqual([]);
  expect(after.applied_at[REGION]).toEqual(expect.any(String));
}, 90_000);

test('the ack of a parked change applied while its origin does not answer is dropped once that origin is removed from the deployment', async () => {
  const { keys, event, retryable } = await parkedChange('from a region removed later');
  const dropped = () => lines.filter((l) => l.msg === "the ack of a retried parked change is dropped: its origin was removed from the deployment" && l.change_id === event.changeId);
  originRedis.pause();
  try {
    await retryable();
    expect((await call(region.url, 'POST', '/admin/replication/parked/retry', { headers: adminHeaders })).status).toBe(200);
    expect(await eventually(async () => notSent() > 0, 15_000, 100)).toBe(true);
    // The origin leaves the deployment while its Redis does not answer (it may never again).
    await removeMember(own, keys, ORIGIN, true);
    expect(await eventually(async () => dropped().length === 1, 15_000, 100)).toBe(true);
    const after = notSent();
    await new Promise((r) => setTimeout(r, 5000));
    expect(notSent()).toBe(after);
    expect(dropped()).toHaveLength(1);
  } finally {
    originRedis.resume();
  }
}, 90_000);
