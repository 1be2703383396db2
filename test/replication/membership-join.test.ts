/**
 * Membership.join() adds this region's entry only where it is absent (writeMember onlyIfAbsent, HSETNX): a
 * process that (re)starts while a re-seed of its region is under way must not rewrite the entry the re-seed
 * wrote (joining, with its token), or the re-seed could not mark it active; nor one a relay's markBehind
 * wrote just before.
 */
import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import pino from 'pino';
import { replicationKeys } from '../../src/redis';
import { RedisLinks } from '../../src/replication/links';
import { activateAfterReseed, Membership, readMembers, writeMember } from '../../src/replication/membership';
import { deleteKeys, REDIS_URL } from '../support/env';

const prefix = `test-membership-keep-${randomUUID().slice(0, 8)}:`;
const keys = replicationKeys(prefix);

test("a process joining during its region's re-seed keeps the re-seed's entry, which the re-seed then activates", async () => {
  const redis = new Redis(REDIS_URL);
  const subscriber = new Redis(REDIS_URL);
  const links = new RedisLinks({ region: 'us-iowa', own: redis, name: 'membership-keep-test', defaultUrl: REDIS_URL, configured: new Map([['us-iowa', REDIS_URL]]) });
  const m = new Membership({ links, subscriber, keys, region: 'us-iowa', configured: ['us-iowa'], ownRedisUrl: REDIS_URL, log: pino({ level: 'silent' }) });
  try {
    await writeMember(redis, keys, 'us-iowa', { state: 'joining', joined_at: '2026-12-01T00:00:00.000Z', reseed: 'copy-1' });
    const before = await redis.hget(keys.members, 'us-iowa');
    await m.join();
    expect(await redis.hget(keys.members, 'us-iowa')).toBe(before);
    expect(await activateAfterReseed(redis, keys, 'us-iowa', 'copy-1')).toBe(true);
    expect((await readMembers(redis, keys)).members.get('us-iowa')).toMatchObject({ state: 'active', joinedAt: '2026-12-01T00:00:00.000Z' });
  } finally {
    m.stop();
    links.disconnect();
    await deleteKeys(prefix);
    redis.disconnect();
    subscriber.disconnect();
  }
});
