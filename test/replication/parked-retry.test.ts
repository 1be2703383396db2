/**
 * A parked event is reported in /admin/replication and re-applied after an upgrade: at start, and on
 * POST /admin/replication/parked/retry. One region in the test process (real HTTP, Postgres and Redis);
 * the event is put on the stream as another region, one version ahead, would.
 */
import { Client } from 'pg';
import { FEATURES } from '../../src/features';
import { createRedis, replicationKeys, type Redis } from '../../src/redis';
import { startRegion, type RunningRegion } from '../../src/region';
import { defineTable } from '../../src/replication/tables';
import { REDIS_URL, testEventAuth } from '../support/env';
import { adminHeaders, call, eventually } from '../support/harness';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { eventFor, REGION } from '../support/applier-rig';

let first: InProcessRegion;
let upgraded: RunningRegion | null = null;
let redis: Redis;
let pg: Client;

afterAll(async () => {
  await upgraded?.stop();
  redis?.disconnect();
  await pg?.end();
  await first?.stop();
});

const status = async (url: string) => (await call(url, 'GET', '/admin/replication', { headers: adminHeaders })).body;

test('an event for a table this version lacks is parked, reported, and applied once the region is upgraded', async () => {
  first = await startInProcess('parkedretry', ['us-iowa', REGION], {}, REGION);
  redis = createRedis(REDIS_URL, 'parked-retry-test');
  await new Promise((r) => redis.once('ready', r));
  const keys = replicationKeys(first.deployment.file.redisKeyPrefix);
  const event = eventFor('widgets', 'w1', { id: 'w1', color: 'blue' });
  await redis.xadd(keys.inbox(REGION), '*', ...testEventAuth().entryFields(event));

  expect(await eventually(async () => (await status(first.url)).failures?.parked === 1, 10_000)).toBe(true);
  expect((await status(first.url)).failures.oldest_parked[0]).toMatchObject({
    change_id: event.changeId, origin_region: 'us-iowa', tables: ['widgets'], reason: 'unknown-table',
  });
  // The parked ack goes to the origin's Redis after the change is parked in the database (set-aside.ts park),
  // which the count above reads: waited for.
  expect(await eventually(async () => /^parked /.test((await redis.hgetall(keys.ack(event.changeId)))[REGION] ?? ''), 10_000)).toBe(true);
  expect((await redis.hgetall(keys.ack(event.changeId)))[REGION]).toMatch(/^parked /);

  // The upgrade, step 1: the table arrives, but with a NOT NULL column the event does not carry.
  pg = new Client({ connectionString: first.deployment.configFor(REGION).region.databaseUrl });
  await pg.connect();
  await pg.query(`CREATE TABLE widgets (id text PRIMARY KEY, color text, size int NOT NULL, created_at timestamptz(3), updated_at timestamptz(3),
    deleted_at timestamptz(3), version text COLLATE "C" NOT NULL, created_version text COLLATE "C", origin_region text NOT NULL)`);
  await first.region.stop();
  const widgets = { name: 'widgets', tables: [defineTable('widgets', 'id')] };
  upgraded = await startRegion(first.deployment.configFor(REGION), { port: 0, drainTimeoutMs: 5000, features: [...FEATURES, widgets] });
  const url = upgraded.url;
  // Retried at start: it now fails on the NOT NULL column and stays parked, with that error.
  expect(await eventually(async () => (await status(url)).failures?.oldest_parked?.[0]?.reason === 'apply-failed', 10_000)).toBe(true);
  expect((await status(url)).failures.oldest_parked[0].error).toMatch(/size/);

  // Step 2: the column is relaxed; the operator retries.
  await pg.query('ALTER TABLE widgets ALTER COLUMN size DROP NOT NULL');
  const retry = await call(url, 'POST', '/admin/replication/parked/retry', { headers: adminHeaders });
  expect(retry.status).toBe(200);
  expect(retry.body).toMatchObject({ region: REGION, applied: 1, parked: 0 });
  expect((await pg.query('SELECT color FROM widgets WHERE id = $1', ['w1'])).rows).toEqual([{ color: 'blue' }]);
  expect((await status(url)).failures).toMatchObject({ parked: 0, failing: 0 });
  expect((await redis.hgetall(keys.ack(event.changeId)))[REGION]).not.toMatch(/^parked /);
}, 90_000);
