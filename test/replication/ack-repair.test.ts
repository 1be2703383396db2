/**
 * A value planted in a region's ack field (a Redis writer without the replication key) before the region
 * judges the change: a first judgement stands, so the ack script and HSETNX keep it; a signing region
 * replaces it, when it does not verify, with its own signed judgement. One region in the test process
 * (`ackSignatures: 'sign'`; real HTTP, Postgres and Redis); the events are put on its inbox as other
 * regions' relays would.
 */
import { formatVersion } from '../../src/replication/hlc';
import { createRedis, replicationKeys, type Redis } from '../../src/redis';
import type { ChangeEvent } from '../../src/replication/tables';
import { checkAck } from '../../src/replication/ack-auth';
import { REDIS_URL, testEventAuth } from '../support/env';
import { adminHeaders, call, eventually } from '../support/harness';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { eventFor, ORIGIN, REGION, testId } from '../support/applier-rig';
import { scrape } from '../observability/support';

let region: InProcessRegion;
let redis: Redis;

beforeAll(async () => {
  region = await startInProcess('ackrepair', [ORIGIN, REGION, 'asia-japan'], { ackSignatures: 'sign' }, REGION);
  redis = createRedis(REDIS_URL, 'ack-repair-test', { queueWhileOffline: true });
}, 60_000);
afterAll(async () => {
  redis?.disconnect();
  await region?.stop();
});

const auth = testEventAuth();
const keys = () => replicationKeys(region.deployment.file.redisKeyPrefix);
const deliver = async (e: ChangeEvent) => redis.xadd(keys().inbox(REGION), '*', ...auth.entryFields(e));
const ackOf = async (changeId: string) => (await redis.hget(keys().ack(changeId), REGION)) ?? '';
const nameOf = async (id: string) => (await call(region.url, 'GET', `/admin/organizations/${id}`, { headers: adminHeaders })).body?.name ?? null;
/** An applied ack under a tag that does not hold. */
const PLANTED = 'applied@2026-12-01T00:00:00.000Z#test-k1:AAAAAAAAAAAAAAAAAAAAAA';

test('a planted applied in the field of a region that judges the change superseded is replaced by its signed superseded ack', async () => {
  const id = testId();
  const wall = Date.now();
  const created = formatVersion({ wall, counter: 0, region: ORIGIN });
  await deliver(eventFor('organizations', id, { id, parent_id: null, name: 'created', created_version: created }, { wall }));
  await deliver(eventFor('organizations', id, { id, parent_id: null, name: 'newer', created_version: created }, { wall: wall + 2000, origin: 'asia-japan' }));
  expect(await eventually(async () => (await nameOf(id)) === 'newer', 10_000, 50)).toBe(true);
  const older = eventFor('organizations', id, { id, parent_id: null, name: 'older', created_version: created }, { wall: wall + 1000 });
  await redis.hset(keys().ack(older.changeId), REGION, PLANTED);
  await deliver(older);
  expect(await eventually(async () => (await ackOf(older.changeId)) !== PLANTED, 10_000, 50)).toBe(true);
  expect(checkAck(auth, older.changeId, REGION, await ackOf(older.changeId))).toMatchObject({ value: expect.stringMatching(/^superseded:organizations:/), verdict: 'signed' });
  expect(await nameOf(id)).toBe('newer');
}, 30_000);

test('a planted applied in the field of a region that parks the change is replaced by its signed parked ack, and counted', async () => {
  const before = (await scrape(region.url)).value('replication_acks_repaired_total') ?? 0;
  const unknownTable = eventFor('widgets', 'w1', { id: 'w1', color: 'blue' });
  await redis.hset(keys().ack(unknownTable.changeId), REGION, PLANTED);
  await deliver(unknownTable);
  expect(await eventually(async () => (await ackOf(unknownTable.changeId)) !== PLANTED, 10_000, 50)).toBe(true);
  expect(checkAck(auth, unknownTable.changeId, REGION, await ackOf(unknownTable.changeId))).toMatchObject({ value: expect.stringMatching(/^parked /), verdict: 'signed' });
  expect((await scrape(region.url)).value('replication_acks_repaired_total')).toBe(before + 1);
}, 30_000);
