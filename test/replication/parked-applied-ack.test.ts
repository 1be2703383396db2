/**
 * A change a region parked and later applied (the retry of parked changes) is acked to its origin as
 * applied; when the origin's Redis does not answer at that moment, the ack is sent again until it does. It
 * was logged ("the events stay pending and are acked on redelivery") and dropped: a retried change has no
 * inbox entry left to be read again, and the origin had confirmed the delivery on the parked ack, so nothing
 * delivered it again. The change's status then showed the region as parked (and pending) for good, though
 * it held the change. One region in the test process (real HTTP, Postgres and Redis); its origin, not
 * running, has a Redis of its own that the test pauses.
 */
import { createRedis, replicationKeys, type Redis } from '../../src/redis';
import { startRegion, type RunningRegion } from '../../src/region';
import { createDeployment, REDIS_URL, testEventAuth, type TestDeployment } from '../support/env';
import { adminHeaders, call, eventually } from '../support/harness';
import { ownRedis, type OwnRedis } from '../support/redis-server';
import { ORIGIN, REGION, testId, eventFor } from '../support/applier-rig';

const SKEW_MS = 2000;
let deployment: TestDeployment;
let region: RunningRegion;
let originRedis: OwnRedis;
let own: Redis;
let theirs: Redis;

beforeAll(async () => {
  originRedis = await ownRedis();
  await originRedis.start();
  deployment = await createDeployment('parkedappliedack', [ORIGIN, REGION], { maxClockSkewMs: SKEW_MS }, { [ORIGIN]: { redisUrl: originRedis.url } });
  region = await startRegion(deployment.configFor(REGION), { port: 0, drainTimeoutMs: 5000 });
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

test('a parked change applied while its origin\'s Redis does not answer is acked applied once it does, and its status no longer shows the region as parked', async () => {
  const keys = replicationKeys(deployment.file.redisKeyPrefix);
  const id = testId();
  // Ahead of this region's clock by more than the bound: parked (clock-skew) until the clocks agree.
  const ahead = Date.now() + SKEW_MS + 3000;
  const event = eventFor('organizations', id, { id, parent_id: null, name: 'from the future' }, { wall: ahead });
  await own.xadd(keys.inbox(REGION), '*', ...testEventAuth().entryFields(event));
  const ack = async () => (await theirs.hget(keys.ack(event.changeId), REGION)) ?? '';
  expect(await eventually(async () => (await ack()).startsWith('parked '), 15_000, 100)).toBe(true);
  const status = async () => (await call(region.url, 'GET', `/admin/replication/changes/${event.changeId}`, { headers: adminHeaders })).body;
  expect(await status()).toMatchObject({ parked_regions: [REGION] });

  // Once the clocks agree, the retry (the operator's here, or the periodic one) applies it while the
  // origin's Redis does not answer, for longer than the ack's command may take.
  originRedis.pause();
  try {
    await new Promise((r) => setTimeout(r, Math.max(0, ahead - SKEW_MS - Date.now()) + 200));
    const retried = await call(region.url, 'POST', '/admin/replication/parked/retry', { headers: adminHeaders });
    expect(retried.status).toBe(200);
    expect((await call(region.url, 'GET', `/admin/organizations/${id}`, { headers: adminHeaders })).body).toMatchObject({ name: 'from the future' });
    await new Promise((r) => setTimeout(r, 4000));
  } finally {
    originRedis.resume();
  }
  expect(await ack()).toMatch(/^parked /);
  // Back: the applied ack reaches it, and the status shows the region as holding the change.
  expect(await eventually(async () => (await ack()).startsWith('applied'), 30_000, 200)).toBe(true);
  const after = await status();
  expect(after.parked_regions).toEqual([]);
  expect(after.applied_at[REGION]).toEqual(expect.any(String));
}, 90_000);
