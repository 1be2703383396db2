/**
 * The tombstone collector's reports and horizon (src/replication/tombstones.ts) against a real database and
 * real Redis servers: a report goes into every other member's Redis stamped with that Redis's clock; an
 * inbox behind its cap is reported so, and such a report holds the horizon; a member the membership
 * record shows joining holds it; and one collection deletes every tombstone below the cut-off, batch after
 * batch.
 */
import Redis from 'ioredis';
import pino from 'pino';
import type { Db } from '../../src/db/client';
import { credentialsTable } from '../../src/provider-credentials/store';
import { replicationKeys } from '../../src/redis';
import { formatVersion } from '../../src/replication/hlc';
import { clockFloor, IN_FLIGHT_MS, parseWatermark, type Watermark } from '../../src/replication/horizon';
import { ensureGroup } from '../../src/replication/stream';
import { TombstoneCollector, type CollectorDeps } from '../../src/replication/tombstones';
import { REDIS_URL, type TestDeployment } from '../support/env';
import { migratedDb, type MigratedDb } from '../support/migrated-db';
import { ownRedis, type OwnRedis } from '../support/redis-server';

const REGION = 'us-iowa';
const PEER = 'asia-japan';
/** The peer's Redis runs on a host whose clock is an hour ahead of this one's. */
const PEER_CLOCK_AHEAD_MS = 3_600_000;

let m: MigratedDb;
let dep: TestDeployment;
let db: Db;
let own: Redis;
let peerServer: OwnRedis;
let peer: Redis;
const keys = () => replicationKeys(dep.file.redisKeyPrefix);

beforeAll(async () => {
  m = await migratedDb('collectorreports');
  ({ dep, db } = m);
  own = new Redis(REDIS_URL);
  peerServer = await ownRedis();
  await peerServer.start();
  peer = new Redis(peerServer.url);
  // One host here, so one clock: the peer's Redis is made to read an hour ahead, as a Redis on another
  // host whose clock runs ahead would (the watermarks a region reads there are aged on that clock).
  const time = peer.time.bind(peer);
  (peer as unknown as { time: () => Promise<[string, string]> }).time = async () => {
    const [sec, usec] = (await time()) as unknown as [string, string];
    return [String(Number(sec) + PEER_CLOCK_AHEAD_MS / 1000), usec];
  };
}, 30_000);
afterAll(async () => {
  own?.disconnect();
  peer?.disconnect();
  await peerServer?.kill();
  await m?.close();
});

function collector(over: Partial<CollectorDeps> = {}): TombstoneCollector {
  return new TombstoneCollector({
    db, links: { own, to: (r) => (r === PEER ? (peer as never) : own), sharesOwn: (r) => r !== PEER }, keys: keys(), region: REGION,
    regions: [REGION, PEER], store: { belowHorizon: 0 }, tables: [], log: pino({ level: 'silent' }),
    options: { enabled: true, intervalMs: 1000, minAgeMs: 0, batchSize: 10 },
    ...over,
  });
}
const redisMs = async (r: Redis) => {
  const [sec, usec] = await r.time();
  return Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
};
/** A fresh report of `region` in this region's Redis, its inbox's consumer group in place and not behind the cap. */
async function fresh(region: string, watermark: string, inbox: Watermark['inbox'] = { group: true, behindTrim: false }) {
  const mark: Watermark = { watermark, at: await redisMs(own), inbox };
  await own.hset(keys().watermarks, region, JSON.stringify(mark));
}

test("a report goes into every other member's Redis too, stamped with that Redis's clock", async () => {
  const before = await redisMs(peer);
  const mark = await collector().report();
  const after = await redisMs(peer);
  const copied = parseWatermark(await peer.hget(keys().watermarks, REGION));
  expect(copied).not.toBeNull();
  expect(copied?.watermark).toBe(mark.watermark);
  expect(copied?.inbox).toEqual(mark.inbox);
  // Aged on the peer's clock: stamped with its own Redis's time, the copy would look an hour old there.
  expect(copied?.at).toBeGreaterThanOrEqual(before);
  expect(copied?.at).toBeLessThanOrEqual(after);
  expect(parseWatermark(await own.hget(keys().watermarks, REGION))?.at).toBe(mark.at);
});

test('an inbox whose cap trimmed entries its group had not read is reported behind the trim, and holds the horizon', async () => {
  const inbox = keys().inbox(REGION);
  await ensureGroup(own, inbox, REGION);
  for (let i = 0; i < 5; i++) await own.xadd(inbox, '*', 'n', String(i));
  expect((await collector().report()).inbox).toEqual({ group: true, behindTrim: false });
  // The cap takes entries the group never read: this region lacks changes and needs a re-seed.
  await own.xtrim(inbox, 'MAXLEN', 1);
  const c = collector();
  expect((await c.report()).inbox).toEqual({ group: true, behindTrim: true });
  await fresh(PEER, clockFloor(Date.now() - IN_FLIGHT_MS));
  const h = await c.horizon();
  expect(h.heldBy).toEqual([{ region: REGION, reason: 'needs-reseed' }]);
  expect(h.horizon).toBeNull();
  await own.del(inbox);
});

test('a member the membership record shows joining holds the horizon, whatever the configured regions', async () => {
  const floor = clockFloor(Date.now() - IN_FLIGHT_MS);
  await fresh(REGION, floor);
  await fresh(PEER, floor);
  const members = [{ region: REGION, state: 'active' as const }, { region: PEER, state: 'joining' as const }];
  const h = await collector({ membership: { refresh: async () => members } }).horizon();
  expect(h.heldBy).toEqual([{ region: PEER, reason: 'joining' }]);
  expect(h.horizon).toBeNull();
  // Once active it counts like the others.
  const active = await collector({ membership: { refresh: async () => members.map((x) => ({ ...x, state: 'active' as const })) } }).horizon();
  expect(active.horizon).toBe(floor);
});

test('one collection deletes every tombstone below the cut-off, batch after batch', async () => {
  const wall = Date.parse('2026-11-23T00:00:00.000Z');
  for (let i = 0; i < 7; i++) {
    const version = formatVersion({ wall: wall + i, counter: 0, region: REGION });
    await db.$executeRawUnsafe(
      `INSERT INTO saml_provider_credentials (id, org_id, label, idp_metadata_url, email_claims, enable_in_slashid_oidc_authz_server, home_region, created_at, updated_at, deleted_at, version, created_version, origin_region)
       VALUES ($1::uuid, '01a20904-0000-7000-8000-00000000000a', 'gone', 'https://idp.example.com/md', '{}', false, 'us-iowa', $2::timestamptz, $2::timestamptz, $2::timestamptz, $3, $3, 'us-iowa')`,
      `01a20904-0000-7000-8000-${String(i + 1).padStart(12, '0')}`, new Date(wall + i).toISOString(), version,
    );
  }
  const floor = clockFloor(Date.now() - IN_FLIGHT_MS);
  await fresh(REGION, floor);
  await fresh(PEER, floor);
  const c = collector({ tables: [credentialsTable], options: { enabled: true, intervalMs: 1000, minAgeMs: 0, batchSize: 2 } });
  expect(await c.collect()).toBe(7);
  expect(await db.$queryRawUnsafe('SELECT id FROM saml_provider_credentials')).toEqual([]);
});

test("a cycle that cannot reach Redis records why in Redis's terms, not ioredis' option names", async () => {
  // A connection that never connects and queues nothing, as the region's command connections are made.
  const dead = new Redis({ port: 1, lazyConnect: true, enableOfflineQueue: false, retryStrategy: () => null });
  try {
    const c = collector({ links: { own: dead, to: () => dead as never, sharesOwn: () => true } });
    await c.cycle();
    // ioredis says "Stream isn't writeable and enableOfflineQueue options is false" (an operator review read it in GET /admin/replication).
    expect(c.lastError).toBe('Redis not connected (refused, closed, or still connecting)');
  } finally {
    dead.disconnect();
  }
});
