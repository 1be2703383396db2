/**
 * The applier against a real Postgres and Redis: when the database cannot apply anything (an outage),
 * events stay pending however often they are retried — they are not parked as poison — and apply once
 * the database is back.
 */
import pino from 'pino';
import { Client } from 'pg';
import { createDb, type Db } from '../../src/db/client';
import { ensureDatabase, migrate } from '../../src/db/migrate';
import { FEATURES } from '../../src/features';
import { createRedis, replicationKeys, type Redis } from '../../src/redis';
import { Applier } from '../../src/replication/applier';
import { formatVersion, HybridClock } from '../../src/replication/hlc';
import { RowStore } from '../../src/replication/row-store';
import type { ChangeEvent } from '../../src/replication/tables';
import { Tracker } from '../../src/replication/tracker';
import { createDeployment, REDIS_URL, type TestDeployment } from '../support/env';
import { eventually } from '../support/harness';

let dep: TestDeployment;
let db: Db;
let pg: Client;
const conns: Redis[] = [];
let applier: Applier;

afterAll(async () => {
  await applier?.stop();
  for (const c of conns) c.disconnect();
  await pg?.end();
  await db?.$disconnect();
  await dep.cleanup();
});

test('a database outage leaves events pending instead of dead-lettering them, and they apply once it is back', async () => {
  dep = await createDeployment('applier', ['us-iowa', 'europe-belgium']);
  const url = dep.file.regions[1]?.databaseUrl ?? '';
  await ensureDatabase(url);
  await migrate(url);
  db = createDb(url);
  pg = new Client({ connectionString: url });
  await pg.connect();
  const keys = replicationKeys(dep.file.redisKeyPrefix);
  const conn = (sub = false) => {
    const c = createRedis(REDIS_URL, 'applier-test', { queueWhileOffline: sub });
    conns.push(c);
    return c;
  };
  const log = pino({ level: 'silent' });
  const redis = conn();
  await new Promise((r) => redis.once('ready', r));
  const tracker = new Tracker(redis, conn(true), keys, log);
  const store = await RowStore.load(db, FEATURES.flatMap((f) => f.tables));
  applier = new Applier({
    db, reader: conn(), redis, keys, store, clock: new HybridClock('europe-belgium'), tracker, region: 'europe-belgium',
    regions: ['us-iowa', 'europe-belgium'], consumer: 'test', log, claimIdleMs: 50, claimEveryMs: 100,
  });

  // Every apply transaction fails while the progress table is missing: to the applier, a database outage.
  await pg.query('ALTER TABLE replication_progress RENAME TO replication_progress_away');
  const id = '01a20904-0000-7000-8000-0000000000aa';
  const version = formatVersion({ wall: Date.now(), counter: 0, region: 'us-iowa' });
  const now = new Date().toISOString();
  const event: ChangeEvent = {
    changeId: '01a20904-0000-7000-8000-0000000000bb',
    origin: 'us-iowa',
    createdAt: now,
    ops: [{
      table: 'organizations', key: id, version,
      row: { id, name: 'during outage', parent_id: null, created_at: now, updated_at: now, deleted_at: null, version, origin_region: 'us-iowa' },
    }],
  };
  await redis.xgroup('CREATE', keys.stream, 'europe-belgium', '0', 'MKSTREAM').catch(() => undefined);
  await redis.xadd(keys.stream, '*', 'e', JSON.stringify(event));
  applier.start();

  // Many read/claim cycles, each a failed attempt.
  await new Promise((r) => setTimeout(r, 2500));
  expect(await redis.xlen(keys.deadLetter).catch(() => 0)).toBe(0);
  const pending = (await redis.xpending(keys.stream, 'europe-belgium')) as [number, ...unknown[]];
  expect(pending[0]).toBe(1);
  expect(await db.organization.findUnique({ where: { id } })).toBeNull();

  await pg.query('ALTER TABLE replication_progress_away RENAME TO replication_progress');
  expect(await eventually(async () => (await db.organization.findUnique({ where: { id } }))?.name === 'during outage', 10_000, 100)).toBe(true);
  expect(await eventually(async () => ((await redis.xpending(keys.stream, 'europe-belgium')) as [number])[0] === 0, 10_000, 100)).toBe(true);
  expect(Object.keys(await tracker.status(event.changeId))).toContain('europe-belgium');
  expect(await redis.xlen(keys.deadLetter).catch(() => 0)).toBe(0);
}, 60_000);
