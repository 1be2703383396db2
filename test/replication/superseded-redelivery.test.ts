/**
 * A change the merge rule discarded in a region (it lost to a state that outranks it there) and that is
 * delivered again (its origin's Redis lost the ack, so its relay delivers it anew) is not applied on the
 * redelivery: the row keeps the winning state, and the region acks it superseded again, naming the same
 * winner. One region in the test process (real HTTP, Postgres and Redis); the events are put on its inbox
 * as other regions' relays would.
 */
import { formatVersion } from '../../src/replication/hlc';
import { createRedis, replicationKeys, type Redis } from '../../src/redis';
import type { ChangeEvent } from '../../src/replication/tables';
import { REDIS_URL, testEventAuth } from '../support/env';
import { adminHeaders, call, eventually } from '../support/harness';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { eventFor, ORIGIN, REGION, testId } from '../support/applier-rig';

let region: InProcessRegion;
let redis: Redis;

beforeAll(async () => {
  region = await startInProcess('supersededredeliver', [ORIGIN, REGION, 'asia-japan'], {}, REGION);
  redis = createRedis(REDIS_URL, 'superseded-redelivery-test', { queueWhileOffline: true });
}, 60_000);
afterAll(async () => {
  redis?.disconnect();
  await region?.stop();
});

const keys = () => replicationKeys(region.deployment.file.redisKeyPrefix);
const deliver = async (e: ChangeEvent) => redis.xadd(keys().inbox(REGION), '*', ...testEventAuth().entryFields(e));
const ackOf = async (changeId: string) => (await redis.hget(keys().ack(changeId), REGION)) ?? null;
const nameOf = async (id: string) => (await call(region.url, 'GET', `/admin/organizations/${id}`, { headers: adminHeaders })).body?.name ?? null;

test('an update that lost to a newer write, delivered again, is acked superseded again and leaves the row as the winner made it', async () => {
  const id = testId();
  const wall = Date.now();
  const created = formatVersion({ wall, counter: 0, region: ORIGIN });
  await deliver(eventFor('organizations', id, { id, parent_id: null, name: 'created', created_version: created }, { wall }));
  expect(await eventually(async () => (await nameOf(id)) === 'created', 10_000, 50)).toBe(true);
  const newer = eventFor('organizations', id, { id, parent_id: null, name: 'newer', created_version: created }, { wall: wall + 2000, origin: 'asia-japan' });
  await deliver(newer);
  expect(await eventually(async () => (await nameOf(id)) === 'newer', 10_000, 50)).toBe(true);
  const older = eventFor('organizations', id, { id, parent_id: null, name: 'older', created_version: created }, { wall: wall + 1000 });
  await deliver(older);
  expect(await eventually(async () => (await ackOf(older.changeId)) !== null, 10_000, 50)).toBe(true);
  const first = await ackOf(older.changeId);
  expect(first).toMatch(/^superseded:organizations:/);
  expect(await nameOf(id)).toBe('newer');

  // Its origin's Redis lost the ack; its relay delivers it again (twice, as a redelivery racing a reclaim may).
  await redis.del(keys().ack(older.changeId));
  await deliver(older);
  await deliver(older);
  expect(await eventually(async () => (await ackOf(older.changeId)) !== null, 10_000, 50)).toBe(true);
  expect((await ackOf(older.changeId))?.replace(/@.*/, '')).toBe(first?.replace(/@.*/, ''));
  // Its status in the region says superseded, as it did.
  const status = await call(region.url, 'GET', `/admin/replication/changes/${older.changeId}`, { headers: adminHeaders });
  expect(status.body).toMatchObject({ state: 'superseded', superseded: [{ region: REGION }] });
  expect(await nameOf(id)).toBe('newer');
}, 60_000);

test('a create that lost to an earlier create of the same key (with an update newer than the winner), delivered again, does not replace the row', async () => {
  const id = testId();
  const wall = Date.now();
  const first = formatVersion({ wall, counter: 0, region: ORIGIN });
  const second = formatVersion({ wall: wall + 500, counter: 0, region: 'asia-japan' });
  await deliver(eventFor('organizations', id, { id, parent_id: null, name: 'first', created_version: first }, { wall }));
  expect(await eventually(async () => (await nameOf(id)) === 'first', 10_000, 50)).toBe(true);
  // A concurrent create of the same key in another region, later: the earliest create wins, even against its newer version.
  const late = eventFor('organizations', id, { id, parent_id: null, name: 'second', created_version: second }, { wall: wall + 3000, origin: 'asia-japan' });
  await deliver(late);
  expect(await eventually(async () => (await ackOf(late.changeId)) !== null, 10_000, 50)).toBe(true);
  expect(await ackOf(late.changeId)).toMatch(/^superseded:/);
  expect(await nameOf(id)).toBe('first');

  // Redelivered: still not applied.
  await redis.del(keys().ack(late.changeId));
  await deliver(late);
  expect(await eventually(async () => (await ackOf(late.changeId)) !== null, 10_000, 50)).toBe(true);
  expect(await ackOf(late.changeId)).toMatch(/^superseded:/);
  expect(await nameOf(id)).toBe('first');
}, 60_000);
