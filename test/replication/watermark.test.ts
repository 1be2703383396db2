/**
 * A region's watermark (tombstones.ts, report) read from a real database and posted to a real Redis: the
 * oldest version of its unsettled outbox rows and of the events it holds failing or parked, else its clock
 * less 30 s; a row confirmed long enough ago no longer holds it.
 */
import Redis from 'ioredis';
import pino from 'pino';
import type { Db } from '../../src/db/client';
import { replicationKeys } from '../../src/redis';
import { formatVersion } from '../../src/replication/hlc';
import { clockFloor, IN_FLIGHT_MS, parseWatermark } from '../../src/replication/horizon';
import { TombstoneCollector } from '../../src/replication/tombstones';
import { REDIS_URL, type TestDeployment } from '../support/env';
import { migratedDb, type MigratedDb } from '../support/migrated-db';

let m: MigratedDb;
let dep: TestDeployment;
let db: Db;
let redis: Redis;
let collector: TombstoneCollector;
const keys = () => replicationKeys(dep.file.redisKeyPrefix);

beforeAll(async () => {
  m = await migratedDb('watermark');
  ({ dep, db } = m);
  redis = new Redis(REDIS_URL);
  collector = new TombstoneCollector({
    db, links: { own: redis, to: () => redis, sharesOwn: () => true }, keys: keys(), region: 'us-iowa', regions: ['us-iowa'], store: { belowHorizon: 0 }, tables: [], log: pino({ level: 'silent' }),
    options: { enabled: true, intervalMs: 1000, minAgeMs: 0, batchSize: 10 },
  });
});
afterAll(async () => {
  redis.disconnect();
  await m.close();
});

const v = (wall: number, region: string) => formatVersion({ wall, counter: 0, region });
const event = (changeId: string, ...versions: string[]) =>
  JSON.stringify({ changeId, origin: 'us-iowa', createdAt: new Date().toISOString(), ops: versions.map((version) => ({ table: 't', key: 'k', version, row: {} })) });
const outbox = (changeId: string, confirmedSecondsAgo: number | null, ...versions: string[]) =>
  db.$executeRawUnsafe(
    `INSERT INTO replication_outbox (change_id, event, published_at, confirmed_at)
     VALUES ($1::uuid, $2::jsonb, now(), CASE WHEN $3::float8 IS NULL THEN NULL ELSE now() - make_interval(secs => $3::float8) END)`,
    changeId, event(changeId, ...versions), confirmedSecondsAgo,
  );

test('with nothing pending it is the clock less the in-flight bound, posted with Redis time', async () => {
  const before = Date.now();
  const mark = await collector.report();
  expect(mark.watermark >= clockFloor(before - IN_FLIGHT_MS)).toBe(true);
  expect(mark.watermark <= clockFloor(Date.now() - IN_FLIGHT_MS)).toBe(true);
  expect(parseWatermark(await redis.hget(keys().watermarks, 'us-iowa'))).toEqual(mark);
  // No consumer group on its inbox yet: reported, so that every region holds collection back.
  expect(mark.inbox).toEqual({ group: false, behindTrim: false });
});

test('a row confirmed long ago does not hold it; a row confirmed within the settle time, an unconfirmed one and a parked event do', async () => {
  const old = Date.now() - 3_600_000;
  const settleSeconds = collector.settleMs / 1000;
  await outbox('01a20904-0000-7000-8000-000000000001', settleSeconds + 60, v(old - 5000, 'us-iowa'));
  expect((await collector.report()).watermark > v(old, 'us-iowa')).toBe(true);

  await outbox('01a20904-0000-7000-8000-000000000002', null, v(old + 2000, 'us-iowa'), v(old + 1000, 'us-iowa'));
  expect((await collector.report()).watermark).toBe(v(old + 1000, 'us-iowa'));
  // Confirmed a moment ago: a region's report from before a park may still be in use (horizon.ts).
  await outbox('01a20904-0000-7000-8000-000000000003', 1, v(old + 500, 'us-iowa'));
  expect((await collector.report()).watermark).toBe(v(old + 500, 'us-iowa'));

  await db.$executeRawUnsafe(
    `INSERT INTO replication_failures (change_id, origin_region, event, failures, reason, last_error, parked_at)
     VALUES ('01a20904-0000-7000-8000-000000000004', 'asia-japan', $1::jsonb, 1, 'schema-ahead', 'held', now())`,
    event('01a20904-0000-7000-8000-000000000004', v(old + 100, 'asia-japan')),
  );
  expect((await collector.report()).watermark).toBe(v(old + 100, 'asia-japan'));
});

test('a row confirmed longer ago than a report may be old, but within the settle time, still holds it', async () => {
  // A peer's report used now may be up to maxAgeMs old, made before it parked this change: the row must
  // hold the watermark past that, or the change's tombstones could be collected while a region holds it.
  const older = Date.now() - 7_200_000;
  const confirmedSecondsAgo = collector.maxAgeMs / 1000 + 1;
  await outbox('01a20904-0000-7000-8000-000000000005', confirmedSecondsAgo, v(older, 'us-iowa'));
  expect((await collector.report()).watermark).toBe(v(older, 'us-iowa'));
});
