/**
 * A region's membership state survives its Redis losing the record: a region marked joining (it missed
 * changes and needs a re-seed; tombstone collection waits for it) registers itself again as joining, never
 * as active; and the members it knew, a region added at runtime included, are put back.
 */
import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import pino from 'pino';
import { replicationKeys } from '../../src/redis';
import { RedisLinks } from '../../src/replication/links';
import { activateAfterReseed, Membership, readMembers, removeMember, updateMember, writeMember } from '../../src/replication/membership';
import { deleteKeys, REDIS_URL } from '../support/env';

const prefix = `test-membership-${randomUUID().slice(0, 8)}:`;
const keys = replicationKeys(prefix);
const regions = ['us-iowa', 'europe-belgium'];
let redis: Redis;
let subscriber: Redis;
let membership: Membership;
let links: RedisLinks;

beforeAll(() => {
  redis = new Redis(REDIS_URL);
  subscriber = new Redis(REDIS_URL);
  links = new RedisLinks({ region: 'us-iowa', own: redis, name: 'membership-test', defaultUrl: REDIS_URL, configured: new Map(regions.map((r) => [r, REDIS_URL])) });
  membership = new Membership({ links, subscriber, keys, region: 'us-iowa', configured: regions, ownRedisUrl: REDIS_URL, log: pino({ level: 'silent' }) });
});
afterAll(async () => {
  membership.stop();
  links.disconnect();
  await deleteKeys(prefix);
  redis.disconnect();
  subscriber.disconnect();
});

/** The shared Redis server's database `n` (a peer's Redis of its own for these tests). */
const inDb = (n: number) => {
  const u = new URL(REDIS_URL);
  u.pathname = `/${n}`;
  return u.toString();
};

const stateIn = async (region: string) => (await readMembers(redis, keys)).members.get(region)?.state;

test('a region marked joining registers again as joining when its Redis lost the record', async () => {
  await writeMember(redis, keys, 'us-iowa', { state: 'joining' });
  await membership.join();
  expect(await stateIn('us-iowa')).toBe('joining');
  await membership.refresh();
  expect(membership.members().find((m) => m.region === 'us-iowa')?.state).toBe('joining');
  await redis.del(keys.members);
  await membership.refresh();
  expect(await stateIn('us-iowa')).toBe('joining');
});

test('an active region registers again as active', async () => {
  expect(await updateMember(redis, keys, 'us-iowa', { state: 'active' })).toBe(true);
  await membership.refresh();
  await redis.del(keys.members);
  await membership.refresh();
  expect(await stateIn('us-iowa')).toBe('active');
});

test('a region added at runtime (in no config here) stays a member when this region\'s Redis lost the record', async () => {
  await writeMember(redis, keys, 'south-brazil', { state: 'active', redis_url: REDIS_URL });
  await membership.refresh();
  expect(membership.regions()).toContain('south-brazil');
  await redis.del(keys.members);
  await membership.refresh();
  expect(membership.regions()).toContain('south-brazil');
  const restored = (await readMembers(redis, keys)).members.get('south-brazil');
  expect(restored).toMatchObject({ state: 'active', redisUrl: REDIS_URL });
});

test('a region added at runtime stays a member when this region\'s Redis lost the record and an applier joins again (NOGROUP) before the next refresh', async () => {
  await writeMember(redis, keys, 'south-chile', { state: 'active', redis_url: REDIS_URL });
  await membership.refresh();
  expect(membership.regions()).toContain('south-chile');
  await redis.del(keys.members);
  // The applier meets NOGROUP and registers again first: its own entry back, refresh() sees no loss.
  await membership.join();
  await membership.refresh();
  expect(membership.regions()).toContain('south-chile');
  expect((await readMembers(redis, keys)).members.get('south-chile')).toMatchObject({ state: 'active', redisUrl: REDIS_URL });
});

/**
 * A Membership of us-iowa as a process starting now would make it, whose peers' copies of the record live
 * in Redis databases of their own (`urls`, by region); runs `fn` with it and the peers' connections, then
 * cleans up.
 */
async function withPeers(urls: Record<string, string>, fn: (fresh: Membership, peers: Redis[]) => Promise<void>): Promise<void> {
  const peers = Object.values(urls).map((u) => new Redis(u));
  const peerLinks = new RedisLinks({
    region: 'us-iowa',
    own: redis,
    name: 'membership-test-peers',
    defaultUrl: REDIS_URL,
    configured: new Map([['us-iowa', REDIS_URL], ...Object.entries(urls)]),
  });
  const configured = ['us-iowa', ...Object.keys(urls)];
  const fresh = new Membership({ links: peerLinks, subscriber, keys, region: 'us-iowa', configured, ownRedisUrl: REDIS_URL, log: pino({ level: 'silent' }) });
  try {
    await fn(fresh, peers);
  } finally {
    fresh.stop();
    peerLinks.disconnect();
    for (const p of peers) {
      await p.del(keys.members);
      p.disconnect();
    }
  }
}

test('a process that starts after its Redis lost the record takes the members a peer\'s copy holds, a region added at runtime included', async () => {
  // europe-belgium's copy lives in a Redis of its own (another database of the shared server).
  const peerUrl = inDb(7);
  await withPeers({ 'europe-belgium': peerUrl }, async (fresh, [peer]) => {
    await writeMember(peer as Redis, keys, 'europe-belgium', { state: 'active', redis_url: peerUrl });
    await writeMember(peer as Redis, keys, 'us-iowa', { state: 'active', redis_url: REDIS_URL });
    await writeMember(peer as Redis, keys, 'south-peru', { state: 'joining', redis_url: REDIS_URL });
    await redis.del(keys.members);
    await fresh.join();
    expect(fresh.regions()).toContain('south-peru');
    expect((await readMembers(redis, keys)).members.get('south-peru')).toMatchObject({ state: 'joining' });
  });
});

test('of two peers\' copies that disagree on a member this region lost, the one saying joining wins', async () => {
  await withPeers({ 'europe-belgium': inDb(7), 'asia-japan': inDb(8) }, async (fresh, [europe, asia]) => {
    // europe-belgium's copy lags: asia-japan's says the runtime region was marked behind since.
    await writeMember(europe as Redis, keys, 'south-ecuador', { state: 'active', redis_url: REDIS_URL });
    await writeMember(asia as Redis, keys, 'south-ecuador', { state: 'joining', redis_url: REDIS_URL });
    await redis.del(keys.members);
    await fresh.join();
    expect((await readMembers(redis, keys)).members.get('south-ecuador')).toMatchObject({ state: 'joining' });
  });
});

test('a re-seed marks its target active only if nothing marked it behind again while it copied', async () => {
  await writeMember(redis, keys, 'asia-japan', { state: 'active' });
  await updateMember(redis, keys, 'asia-japan', { state: 'joining', reseed: 'copy-1' });
  expect(await activateAfterReseed(redis, keys, 'asia-japan', 'another-copy')).toBe(false);
  expect(await activateAfterReseed(redis, keys, 'asia-japan', 'copy-1')).toBe(true);
  expect(await stateIn('asia-japan')).toBe('active');
  expect((await readMembers(redis, keys)).members.get('asia-japan')?.reseed).toBeNull();
  // The next re-seed; during its copy a relay finds the target's inbox trimmed past changes it had not
  // applied and marks it joining again (relay.ts markBehind): the copy may lack them.
  await updateMember(redis, keys, 'asia-japan', { state: 'joining', reseed: 'copy-2' });
  await updateMember(redis, keys, 'asia-japan', { state: 'joining' });
  expect(await activateAfterReseed(redis, keys, 'asia-japan', 'copy-2')).toBe(false);
  expect(await stateIn('asia-japan')).toBe('joining');
});

test('removals reach every member\'s Redis: each process records which it knows, and copies the record where it is missing', async () => {
  await withPeers({ 'europe-belgium': inDb(7) }, async (fresh, [peer]) => {
    try {
      await writeMember(peer as Redis, keys, 'europe-belgium', { state: 'active', redis_url: inDb(7) });
      // A removal that reached this region's Redis only (the peer's was down then, or joined since).
      await redis.hset(keys.departed, 'sa-east', '2026-12-03T10:00:00.000Z');
      await fresh.join();
      expect(fresh.departed).toContain('sa-east');
      expect(fresh.departedKnown.get('us-iowa')).toContain('sa-east');
      expect(await (peer as Redis).hget(keys.departed, 'sa-east')).toBe('2026-12-03T10:00:00.000Z');
      expect(JSON.parse((await (peer as Redis).hget(keys.departedKnown, 'us-iowa')) ?? '[]')).toContain('sa-east');
    } finally {
      await (peer as Redis).del(keys.departed, keys.departedKnown);
      await redis.hdel(keys.departed, 'sa-east');
    }
  });
});

test('removing a region that is not a member records no removal', async () => {
  const res = await removeMember(redis, keys, 'no-such-region');
  expect(res.removed).toBe(false);
  expect(await redis.hget(keys.departed, 'no-such-region')).toBeNull();
  await writeMember(redis, keys, 'sa-west', { state: 'active' });
  expect((await removeMember(redis, keys, 'sa-west')).removed).toBe(true);
  expect(await redis.hget(keys.departed, 'sa-west')).not.toBeNull();
});

test('a Redis that lost its data gets back the removals this process knew; remove --force records one again where no process remembers it', async () => {
  await redis.hset(keys.departed, 'sa-north', '2026-12-03T11:00:00.000Z');
  await membership.refresh();
  expect(membership.departed).toContain('sa-north');
  // The Redis restarted empty: the members and the removals are gone from it.
  await redis.del(keys.members, keys.departed, keys.departedKnown);
  await membership.refresh();
  expect(await redis.hget(keys.departed, 'sa-north')).toBe('2026-12-03T11:00:00.000Z');
  expect(JSON.parse((await redis.hget(keys.departedKnown, 'us-iowa')) ?? '[]')).toContain('sa-north');
  // A region known as a member here (its config names it) is not said to be known as removed.
  await redis.hset(keys.departed, 'europe-belgium', '2026-12-03T11:00:00.000Z');
  await membership.refresh();
  expect(JSON.parse((await redis.hget(keys.departedKnown, 'us-iowa')) ?? '[]')).not.toContain('europe-belgium');
  await redis.hdel(keys.departed, 'europe-belgium');
  // Nobody remembers sa-south's removal: without --force, removing a non-member records nothing; with it, it does.
  expect((await removeMember(redis, keys, 'sa-south')).removed).toBe(false);
  expect(await redis.hget(keys.departed, 'sa-south')).toBeNull();
  await removeMember(redis, keys, 'sa-south', true);
  expect(await redis.hget(keys.departed, 'sa-south')).not.toBeNull();
}, 30_000);
