/**
 * Membership.join() adds this region's entry only where it is absent (writeMember onlyIfAbsent, HSETNX): a
 * process that (re)starts while a re-seed of its region is under way must not rewrite the entry the re-seed
 * wrote (joining, with its token), or the re-seed could not mark it active; nor one a relay's markBehind
 * wrote just before.
 */
import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import pino from 'pino';
import { replicationKeys, type ReplicationKeys } from '../../src/redis';
import { RedisLinks } from '../../src/replication/links';
import { activateAfterReseed, readMembers, writeMember } from '../../src/replication/member-record';
import { Membership } from '../../src/replication/membership';
import { deleteKeys, REDIS_URL } from '../support/env';

const prefix = `test-membership-keep-${randomUUID().slice(0, 8)}:`;
const keys = replicationKeys(prefix);
const redis = new Redis(REDIS_URL);
const subscriber = new Redis(REDIS_URL);
const started: { m: Membership; links: RedisLinks }[] = [];
afterEach(async () => {
  for (const s of started.splice(0)) {
    s.m.stop();
    s.links.disconnect();
  }
  await deleteKeys(prefix);
});
afterAll(() => {
  redis.disconnect();
  subscriber.disconnect();
});

/** A process of `region` with `configured` in its config, over one Redis (stopped after the test). */
function member(region: string, configured: string[], k: ReplicationKeys = keys): Membership {
  const links = new RedisLinks({ region, own: redis, name: `membership-test-${region}`, defaultUrl: REDIS_URL, configured: new Map(configured.map((r) => [r, REDIS_URL])) });
  const m = new Membership({ links, subscriber, keys: k, region, configured, ownRedisUrl: REDIS_URL, log: pino({ level: 'silent' }) });
  started.push({ m, links });
  return m;
}

test("a process joining during its region's re-seed keeps the re-seed's entry, which the re-seed then activates", async () => {
  const m = member('us-iowa', ['us-iowa']);
  await writeMember(redis, keys, 'us-iowa', { state: 'joining', joined_at: '2026-12-01T00:00:00.000Z', reseed: 'copy-1' });
  const before = await redis.hget(keys.members, 'us-iowa');
  await m.join();
  expect(await redis.hget(keys.members, 'us-iowa')).toBe(before);
  expect(await activateAfterReseed(redis, keys, 'us-iowa', 'copy-1')).toBe(true);
  expect((await readMembers(redis, keys)).members.get('us-iowa')).toMatchObject({ state: 'active', joinedAt: '2026-12-01T00:00:00.000Z' });
});

test('at the first start of a deployment every region registers as active; one new to a deployment whose inboxes received changes registers as joining', async () => {
  const first = replicationKeys(`${prefix}first:`);
  const regions = ['us-iowa', 'europe-belgium', 'asia-japan'];
  // A fresh deployment: its regions start one after another (each applier joins before it makes its consumer
  // group); no inbox has received a change yet, so the ones that find others registered are not joining a
  // running deployment (nothing to re-seed them from).
  for (const r of regions.slice(0, 2)) await member(r, regions.slice(0, 2), first).join();
  const states = async () => Object.fromEntries([...(await readMembers(redis, first)).members].map(([r, m]) => [r, m.state]));
  expect(await states()).toEqual({ 'us-iowa': 'active', 'europe-belgium': 'active' });
  // Once a change was delivered, a region added to the deployment has missed it: joining, until re-seeded.
  await redis.xadd(first.inbox('us-iowa'), '*', 'e', 'a change');
  await member('asia-japan', regions, first).join();
  expect(await states()).toEqual({ 'us-iowa': 'active', 'europe-belgium': 'active', 'asia-japan': 'joining' });
});

test('a process new to a running deployment whose membership refresh runs before its applier joins still registers as joining', async () => {
  const early = replicationKeys(`${prefix}early:`);
  const m = member('south-brazil', ['us-iowa', 'south-brazil'], early);
  // A running deployment: us-iowa registered, its inbox has received changes.
  await writeMember(redis, early, 'us-iowa', { state: 'active', redis_url: REDIS_URL });
  await redis.xadd(early.inbox('us-iowa'), '*', 'e', 'a change');
  // The process starts its membership refresh first (replication start(): membership, then the applier,
  // which joins): a refresh before the join registers nothing, so the join finds the region new.
  await m.refresh();
  await m.join();
  expect((await readMembers(redis, early)).members.get('south-brazil')?.state).toBe('joining');
});
