/**
 * The tombstone collector's watermark reports under config `ackSignatures` (src/replication/ack-auth.ts,
 * tombstones.ts) against a real database and a real Redis. A Redis writer without the replication key plants
 * reports as an attacker would, to advance the horizon past a tombstone the genuine reports hold: in `require`
 * mode neither an unsigned report, one under a bad tag, nor a genuine report of another region copied into the
 * field counts (the member holds the horizon, `unverified`, and is counted); genuine signed reports collect as
 * before; `sign` still takes unsigned ones (a rolling upgrade); `off` writes the JSON as before, byte for byte.
 */
import { createHmac } from 'node:crypto';
import Redis from 'ioredis';
import pino from 'pino';
import type { Db } from '../../src/db/client';
import { credentialsTable } from '../../src/provider-credentials/store';
import { replicationKeys } from '../../src/redis';
import { AckSigning, signReport, WATERMARK_REPORT_MAC_CONTEXT, type AckSignatures } from '../../src/replication/ack-auth';
import type { RefusalReason } from '../../src/replication/event-auth';
import { formatVersion } from '../../src/replication/hlc';
import { clockFloor, parseWatermark } from '../../src/replication/horizon';
import { ensureGroup } from '../../src/replication/stream';
import { TombstoneCollector } from '../../src/replication/tombstones';
import { REDIS_URL, TEST_REPLICATION_KEYS, testEventAuth, type TestDeployment, forgerOf } from '../support/env';
import { migratedDb, type MigratedDb } from '../support/migrated-db';

const [A, B, C] = ['us-iowa', 'europe-belgium', 'asia-japan'];
const HOUR = 3_600_000;
const TOMBSTONE_ID = '01a20904-0000-7000-8000-0000000000e1';
const PENDING_ID = '01a20904-0000-7000-8000-0000000000e2';
/** The regions' key; and the attacker's guess: the same key id under another secret. */
const auth = testEventAuth();
const forger = forgerOf(auth);

let m: MigratedDb;
let dep: TestDeployment;
let db: Db;
let redis: Redis;
const keys = () => replicationKeys(dep.file.redisKeyPrefix);

beforeAll(async () => {
  m = await migratedDb('reportsignatures');
  ({ dep, db } = m);
  redis = new Redis(REDIS_URL);
  // Every region's inbox has its consumer group (a region without one holds the horizon).
  for (const r of [A, B, C]) await ensureGroup(redis, keys().inbox(r), r);
});
afterAll(async () => {
  await redis?.del(...[A, B, C].map((r) => keys().inbox(r)));
  redis?.disconnect();
  await m?.close();
});
afterEach(async () => {
  await redis.del(keys().watermarks);
  await db.$executeRawUnsafe('DELETE FROM saml_provider_credentials');
  await db.$executeRawUnsafe('DELETE FROM replication_outbox');
});

/** `region`'s collector (every region on the one Redis), signing and judging as `mode` says. */
function collector(region: string, mode: AckSignatures) {
  const signing = new AckSigning(auth, mode);
  const c = new TombstoneCollector({
    db, links: { own: redis, to: () => redis as never, sharesOwn: () => true }, keys: keys(), region, regions: [A, B, C],
    store: { belowHorizon: 0 }, tables: [credentialsTable], log: pino({ level: 'silent' }), signing,
    options: { enabled: true, intervalMs: 60_000, minAgeMs: 0, batchSize: 10 },
  });
  return { c, signing };
}

/** A credential's tombstone, deleted `agoMs` ago. */
async function tombstone(agoMs: number) {
  const wall = Date.now() - agoMs;
  await db.$executeRawUnsafe(
    `INSERT INTO saml_provider_credentials (id, org_id, label, idp_metadata_url, email_claims, enable_in_slashid_oidc_authz_server, home_region, created_at, updated_at, deleted_at, version, created_version, origin_region)
     VALUES ($1::uuid, '01a20904-0000-7000-8000-00000000000a', 'gone', 'https://idp.example.com/md', '{}', false, 'us-iowa', $2::timestamptz, $2::timestamptz, $2::timestamptz, $3, $3, 'us-iowa')`,
    TOMBSTONE_ID, new Date(wall).toISOString(), formatVersion({ wall, counter: 0, region: A }),
  );
}
const tombstones = async () => (await db.$queryRawUnsafe<unknown[]>('SELECT id FROM saml_provider_credentials')).length;

/**
 * Genuine reports of every region under `mode`, C's held 2 h back by a change it has not delivered (as a
 * region cut off from the others reports): a tombstone of an hour ago is not below the horizon.
 */
async function reportWithCBehind(mode: AckSignatures) {
  await db.$executeRawUnsafe(
    `INSERT INTO replication_outbox (change_id, event, published_at) VALUES ($1::uuid, $2::jsonb, now())`,
    PENDING_ID, JSON.stringify({ changeId: PENDING_ID, origin: C, createdAt: new Date().toISOString(), ops: [{ table: 't', key: 'k', version: formatVersion({ wall: Date.now() - 2 * HOUR, counter: 0, region: C }), row: {} }] }),
  );
  await collector(C, mode).c.report();
  await db.$executeRawUnsafe('DELETE FROM replication_outbox');
  await collector(A, mode).c.report();
  await collector(B, mode).c.report();
}

/** A report a day ahead, fresh on this Redis's clock, as an attacker writes it. */
async function farAhead(): Promise<string> {
  const [sec] = await redis.time();
  return JSON.stringify({ watermark: clockFloor(Date.now() + 24 * HOUR), at: Number(sec) * 1000, inbox: { group: true, behindTrim: false } });
}

const plants: [string, RefusalReason, () => Promise<string>][] = [
  ['an unsigned far-ahead report', 'unsigned', farAhead],
  ['a far-ahead report under a bad tag', 'bad-signature', async () => signReport(forger, C, await farAhead())],
  ["a genuine signed report of another region (A's)", 'bad-signature', async () => (await redis.hget(keys().watermarks, A)) ?? ''],
];

describe('ackSignatures: require', () => {
  test.each(plants)("%s planted in C's field counts as none: C holds the horizon and the tombstone stays", async (_name, reason, plant) => {
    await tombstone(HOUR);
    await reportWithCBehind('require');
    const { c, signing } = collector(A, 'require');
    expect(await c.collect()).toBe(0);
    await redis.hset(keys().watermarks, C, await plant());
    expect(await c.collect()).toBe(0);
    expect(c.last?.result.heldBy).toEqual([{ region: C, reason: 'unverified' }]);
    expect(c.last?.result.horizon).toBeNull();
    expect(signing.unverified[reason]).toBe(1);
    expect(await tombstones()).toBe(1);
  });

  test("a report in the field of a region that is no member (one removed, or planted) is not judged: the figure that says require is safe stays 0", async () => {
    await tombstone(HOUR);
    for (const r of [A, B, C]) await collector(r, 'require').c.report();
    await redis.hset(keys().watermarks, 'removed-region', await farAhead());
    const { c, signing } = collector(A, 'require');
    expect(await c.collect()).toBe(1);
    expect(signing.unverified).toEqual({ unsigned: 0, 'bad-signature': 0, 'unknown-key': 0 });
  });

  test('genuine signed reports collect as before, and an older collector reads them as unreadable (it holds its horizon)', async () => {
    await tombstone(HOUR);
    for (const r of [A, B, C]) await collector(r, 'require').c.report();
    const { c, signing } = collector(A, 'require');
    expect(await c.collect()).toBe(1);
    expect(signing.unverified).toEqual({ unsigned: 0, 'bad-signature': 0, 'unknown-key': 0 });
    // Today's parser is what a version before signed reports runs: a signed report is no JSON to it.
    const stored = await redis.hgetall(keys().watermarks);
    for (const r of [A, B, C]) expect(parseWatermark(stored[r])).toBeNull();
  });
});

test('sign mode still takes an unsigned report (a region not signing yet) and counts it', async () => {
  await tombstone(HOUR);
  for (const r of [A, B]) await collector(r, 'sign').c.report();
  await collector(C, 'off').c.report();
  const { c, signing } = collector(A, 'sign');
  expect(await c.collect()).toBe(1);
  expect(signing.unverified.unsigned).toBe(1);
});

test('off writes the report as JSON, byte for byte as before; sign appends #<kid>:<mac> over the region and the JSON', async () => {
  const plain = await collector(A, 'off').c.report();
  expect(await redis.hget(keys().watermarks, A)).toBe(JSON.stringify({ watermark: plain.watermark, at: plain.at, inbox: plain.inbox }));
  const signed = await collector(A, 'sign').c.report();
  const json = JSON.stringify(signed);
  const secret = TEST_REPLICATION_KEYS.slice(TEST_REPLICATION_KEYS.indexOf(':') + 1);
  const mac = createHmac('sha256', secret)
    .update(`${WATERMARK_REPORT_MAC_CONTEXT}${auth.signingKid}\n${A}\n${json}`).digest().subarray(0, 16).toString('base64url');
  expect(await redis.hget(keys().watermarks, A)).toBe(`${json}#${auth.signingKid}:${mac}`);
});
