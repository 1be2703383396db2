/**
 * Departures (src/replication/departures.ts): when a region may take over the work of regions removed from
 * the deployment. Against a real Redis (the region's inbox and its consumer group) and a migrated
 * database (replication_failures); the membership and the clock are the test's, so the grace is told by
 * the answer, not by waiting.
 */
import { randomUUID } from 'node:crypto';
import { createRedis, type Redis } from '../../src/redis';
import { Departures } from '../../src/replication/departures';
import type { Member } from '../../src/replication/member-record';
import { REDIS_URL } from '../support/env';
import { migratedDb, type MigratedDb } from '../support/migrated-db';

let m: MigratedDb;
let redis: Redis;
const base = `departures-test-${randomUUID()}`;
/** The inbox of the test of inbox entries; the others have none (no stream: nothing waits in it). */
const inbox = `${base}:changes:us-iowa`;

beforeAll(async () => {
  m = await migratedDb('departures');
  redis = createRedis(REDIS_URL, 'departures-test');
  // The client does not queue commands while it connects.
  if (redis.status !== 'ready') await new Promise((res) => redis.once('ready', res));
}, 60_000);
afterAll(async () => {
  await redis.del(inbox, `${base}:race`, `${base}:unread-inbox`, `${base}:two-entries`).catch(() => 0);
  redis.disconnect();
  await m?.close();
});

const member = (region: string, state: Member['state'] = 'active'): Member => ({ region, state, joinedAt: null, redisUrl: null, registered: true, reseed: null, rev: null, raw: null, verified: null });

function rig(members: Member[], stream = `${base}:no-inbox`, departed = ['asia-japan']) {
  let now = 1_000_000;
  // Every member knows of every removal unless a test says otherwise.
  const departedKnown = new Map<string, string[]>(['us-iowa', 'europe-belgium', 'eu-north'].map((r) => [r, [...departed]]));
  const membership = { members: () => members, departed, departedKnown, readAt: now };
  const departures = new Departures({ db: m.db, redis, inbox: stream, region: 'us-iowa', membership, graceMs: 60_000, now: () => now });
  return {
    departures,
    members,
    membership,
    /** Moves the clock (and the membership's last read with it: the record is read every second). */
    at(ms: number) {
      now = ms;
      membership.readAt = ms;
    },
  };
}

test('ready once the members and removals stayed unchanged for the grace; any change starts it again; adopters are the active members', async () => {
  const r = rig([member('us-iowa'), member('europe-belgium'), member('eu-north', 'joining')], undefined, ['asia-japan', 'eu-north']);
  const first = await r.departures.state();
  // A region recorded as removed that is a member again is not departed.
  expect(first).toMatchObject({ ready: false, adopters: [], departed: ['asia-japan'] });
  expect(first.waiting).toMatch(/the members changed 0 s ago; nothing is adopted until they have been unchanged for 60 s/);
  r.at(1_059_000);
  expect((await r.departures.state()).ready).toBe(false);
  r.at(1_060_000);
  expect(await r.departures.state()).toEqual({ ready: true, waiting: null, adopters: ['europe-belgium', 'us-iowa'], departed: ['asia-japan'] });

  // eu-north becomes active: the members changed.
  r.members[2] = member('eu-north');
  expect((await r.departures.state()).ready).toBe(false);
  r.at(1_120_000);
  expect((await r.departures.state()).adopters).toEqual(['eu-north', 'europe-belgium', 'us-iowa']);

  // One is removed (and recorded so).
  r.members.pop();
  expect((await r.departures.state()).ready).toBe(false);
  r.at(1_180_000);
  expect(await r.departures.state()).toEqual({ ready: true, waiting: null, adopters: ['europe-belgium', 'us-iowa'], departed: ['asia-japan', 'eu-north'] });
});

test('a member whose entry does not verify under ackSignatures require (Membership marks it unverified) adopts nothing, whatever state it says', async () => {
  const r = rig([member('us-iowa'), { ...member('europe-belgium'), verified: 'unsigned', unverified: true }, member('eu-north')]);
  expect((await r.departures.state()).ready).toBe(false);
  r.at(1_060_000);
  expect(await r.departures.state()).toEqual({ ready: true, waiting: null, adopters: ['eu-north', 'us-iowa'], departed: ['asia-japan'] });
});

test('adopters are only the members that recorded they know of every removal; a change of that starts the grace again', async () => {
  const r = rig([member('us-iowa'), member('europe-belgium'), member('eu-north')], undefined, ['asia-japan', 'sa-east']);
  // eu-north runs a version that records nothing; europe-belgium knows of one removal only.
  r.membership.departedKnown.delete('eu-north');
  r.membership.departedKnown.set('europe-belgium', ['asia-japan']);
  await r.departures.state();
  r.at(7_000_000);
  expect(await r.departures.state()).toEqual({ ready: true, waiting: null, adopters: ['us-iowa'], departed: ['asia-japan', 'sa-east'] });
  // europe-belgium hears of the other one: the adopters change, and so the grace starts again.
  r.membership.departedKnown.set('europe-belgium', ['asia-japan', 'sa-east']);
  expect((await r.departures.state()).ready).toBe(false);
  r.at(7_060_000);
  expect((await r.departures.state()).adopters).toEqual(['europe-belgium', 'us-iowa']);
  // This region itself has not recorded it yet (its own record is written as it reads the removal).
  r.membership.departedKnown.set('us-iowa', ['asia-japan']);
  r.at(7_200_000);
  await r.departures.state();
  r.at(7_300_000);
  expect(await r.departures.state()).toMatchObject({ ready: false, waiting: 'this region has not yet recorded that it knows of every removal' });
});

test('a home region that is not a member is not taken for gone unless its removal is recorded; with none recorded there is nothing to check', async () => {
  // us-iowa knows only itself (a region added at runtime is missing from its view): nothing departed.
  const r = rig([member('us-iowa')], `${base}:unread-inbox`, []);
  await redis.xadd(`${base}:unread-inbox`, '*', 'e', 'never read');
  expect(await r.departures.state()).toEqual({ ready: true, waiting: null, adopters: [], departed: [] });
});

test('calls at the same moment share one check: one that waited on Redis does not mark the inbox caught up for members that changed meanwhile', async () => {
  const stream = `${base}:race`;
  await redis.xgroup('CREATE', stream, 'us-iowa', '0', 'MKSTREAM');
  const r = rig([member('us-iowa'), member('europe-belgium')], stream);
  await r.departures.state();
  r.at(6_000_000);
  // A check starts (the inbox is empty: caught up) and, while it waits on Redis, the members change.
  const during = r.departures.state();
  r.members.pop();
  const meanwhile = r.departures.state();
  expect(meanwhile).toBe(during);
  expect((await during).ready).toBe(true);
  // For the new members the inbox is checked again: an entry added since, unread, holds them.
  await redis.xadd(stream, '*', 'e', 'delivered after the first check');
  expect((await r.departures.state()).ready).toBe(false);
  r.at(6_060_000);
  expect((await r.departures.state()).waiting).toMatch(/has not yet applied every change delivered to it/);
});

test('not ready while the membership record has not been read lately (only the config is known then)', async () => {
  const r = rig([member('us-iowa')]);
  await r.departures.state();
  r.at(2_000_000);
  expect((await r.departures.state()).ready).toBe(true);
  r.membership.readAt = 2_000_000 - 16_000;
  expect(await r.departures.state()).toMatchObject({ ready: false, adopters: [], waiting: expect.stringMatching(/could not be read from Redis lately/) });
});

test('waits until every inbox entry added before the grace ended was read and acknowledged; later entries do not hold it', async () => {
  await redis.xgroup('CREATE', inbox, 'us-iowa', '0', 'MKSTREAM');
  const before = String(await redis.xadd(inbox, '*', 'e', 'from the departed region'));
  const r = rig([member('us-iowa')], inbox);
  await r.departures.state();
  r.at(3_000_000);
  // Not read yet.
  expect((await r.departures.state()).waiting).toMatch(/has not yet applied every change delivered to it/);
  // Read, not acknowledged (an applier at work on it).
  await redis.xreadgroup('GROUP', 'us-iowa', 'applier', 'COUNT', 1, 'STREAMS', inbox, '>');
  expect((await r.departures.state()).ready).toBe(false);
  // An entry added after the mark, unread: not what the departed region sent.
  await redis.xadd(inbox, '*', 'e', 'from a member, later');
  await redis.xack(inbox, 'us-iowa', before);
  expect((await r.departures.state()).ready).toBe(true);
});

test('the mark is the inbox\'s last entry, not its first: an earlier entry applied does not stand for a later one not read yet', async () => {
  const stream = `${base}:two-entries`;
  await redis.xgroup('CREATE', stream, 'us-iowa', '0', 'MKSTREAM');
  const first = String(await redis.xadd(stream, '*', 'e', 'from the departed region, first'));
  const last = String(await redis.xadd(stream, '*', 'e', 'from the departed region, last'));
  // The first is read and acknowledged; the last is not read yet.
  await redis.xreadgroup('GROUP', 'us-iowa', 'applier', 'COUNT', 1, 'STREAMS', stream, '>');
  await redis.xack(stream, 'us-iowa', first);
  const r = rig([member('us-iowa')], stream);
  await r.departures.state();
  r.at(3_700_000);
  expect((await r.departures.state()).waiting).toMatch(/has not yet applied every change delivered to it/);
  // Read and acknowledged too: nothing the departed region sent waits any more.
  await redis.xreadgroup('GROUP', 'us-iowa', 'applier', 'COUNT', 1, 'STREAMS', stream, '>');
  await redis.xack(stream, 'us-iowa', last);
  expect(await r.departures.state()).toEqual({ ready: true, waiting: null, adopters: ['us-iowa'], departed: ['asia-japan'] });
});

test('an inbox holding entries but no consumer group yet (an applier not started) is not caught up', async () => {
  const unread = `${base}:unread-inbox`;
  await redis.del(unread);
  await redis.xadd(unread, '*', 'e', 'from the departed region');
  const r = rig([member('us-iowa')], unread);
  await r.departures.state();
  r.at(3_500_000);
  expect(await r.departures.state()).toMatchObject({ ready: false, waiting: expect.stringMatching(/no consumer group yet/) });
});

test('not ready while a change from a region that is no longer a member is failing or parked here', async () => {
  const r = rig([member('us-iowa'), member('europe-belgium')]);
  await r.departures.state();
  r.at(4_000_000);
  const failure = async (id: string, origin: string, parked: boolean) =>
    m.db.$executeRawUnsafe(
      `INSERT INTO replication_failures (change_id, origin_region, event, failures, reason, last_error, parked_at)
       VALUES ($1::uuid, $2, '{}'::jsonb, 1, 'apply-failed', 'test', ${parked ? 'now()' : 'NULL'})`,
      id,
      origin,
    );
  // A member's failing change is not a removed region's.
  await failure('01a2a000-0000-7000-8000-000000000001', 'europe-belgium', false);
  expect((await r.departures.state()).ready).toBe(true);
  await failure('01a2a000-0000-7000-8000-000000000002', 'asia-japan', true);
  expect((await r.departures.state()).waiting).toMatch(/^1 change from removed regions is failing or parked here/);
  await failure('01a2a000-0000-7000-8000-000000000003', 'asia-japan', false);
  expect((await r.departures.state()).waiting).toMatch(/^2 changes from removed regions are failing or parked here/);
  await m.db.$executeRawUnsafe(`DELETE FROM replication_failures WHERE origin_region = 'asia-japan'`);
  expect((await r.departures.state()).ready).toBe(true);
});

test('a Redis error is an answer (not ready, and why), not a thrown error', async () => {
  const broken = createRedis('redis://127.0.0.1:1', 'departures-test-broken');
  try {
    const membership = { members: () => [member('us-iowa')], departed: ['asia-japan'], departedKnown: new Map([['us-iowa', ['asia-japan']]]), readAt: 5_000_000 };
    let now = 5_000_000;
    const d = new Departures({ db: m.db, redis: broken, inbox, region: 'us-iowa', membership, graceMs: 1, now: () => now });
    await d.state();
    now += 10;
    membership.readAt = now;
    expect(await d.state()).toMatchObject({ ready: false, waiting: expect.stringMatching(/^could not check that this region applied what removed regions sent it: its Redis or its database did not answer \(see the region log\)$/) });
  } finally {
    broken.disconnect();
  }
});
