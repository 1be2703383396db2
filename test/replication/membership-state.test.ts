/**
 * A region's membership state survives its Redis losing the record: a region marked joining (it missed
 * changes and needs a re-seed; tombstone collection waits for it) registers itself again as joining, never
 * as active; and the members it knew, a region added at runtime included, are put back.
 */
import Redis from 'ioredis';
import pino from 'pino';
import { RedisLinks } from '../../src/replication/links';
import { activateAfterReseed, readMembers, removeMember, updateMember, writeMember } from '../../src/replication/member-record';
import { Membership } from '../../src/replication/membership';
import { AckSigning } from '../../src/replication/ack-auth';
import { REDIS_URL, testEventAuth } from '../support/env';
import { eventually } from '../support/harness';
import { membershipRig } from '../support/membership-rig';

const regions = ['us-iowa', 'europe-belgium'];
const { keys, redis, subscriber, links, membership } = membershipRig('membership', 'us-iowa', regions);

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

test('signing (ackSignatures sign), a region whose Redis lost the record registers again signed, above the revision it read, and puts a runtime region back as stored', async () => {
  const auth = testEventAuth();
  const signing = new AckSigning(auth, 'sign');
  const signed = new Membership({ links, subscriber, keys, region: 'us-iowa', configured: regions, ownRedisUrl: REDIS_URL, log: pino({ level: 'silent' }), signing });
  try {
    await redis.del(keys.members);
    await writeMember(redis, keys, 'south-uruguay', { state: 'active', redis_url: REDIS_URL, rev: 5 }, false, { signing });
    const runtime = await redis.hget(keys.members, 'south-uruguay');
    await signed.join();
    const first = (await readMembers(redis, keys, auth)).members.get('us-iowa');
    expect(first).toMatchObject({ state: 'active', verified: 'signed', rev: 1 });
    await redis.del(keys.members);
    await signed.refresh();
    const { members } = await readMembers(redis, keys, auth);
    expect(members.get('us-iowa')).toMatchObject({ state: 'active', verified: 'signed', rev: 2 });
    expect(members.get('south-uruguay')?.raw).toBe(runtime);
    expect(signing.unverifiedMembers).toEqual({ unsigned: 0, 'bad-signature': 0, 'unknown-key': 0, replayed: 0 });
  } finally {
    signed.stop();
  }
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
  // applied and marks it joining again (relay-confirm.ts markBehind): the copy may lack them.
  await updateMember(redis, keys, 'asia-japan', { state: 'joining', reseed: 'copy-2' });
  await updateMember(redis, keys, 'asia-japan', { state: 'joining' });
  expect(await activateAfterReseed(redis, keys, 'asia-japan', 'copy-2')).toBe(false);
  expect(await stateIn('asia-japan')).toBe('joining');
});

test('a re-seed\'s marks (joining with its token, then active) keep the Redis a region added at runtime recorded for itself', async () => {
  // The other regions' processes find that region's Redis only in its entry (it is in no config of theirs):
  // an entry without it sends a process started later to the default Redis, where no one reads its inbox.
  const own = inDb(5);
  await writeMember(redis, keys, 'south-uruguay', { state: 'active', redis_url: own });
  expect(await updateMember(redis, keys, 'south-uruguay', { state: 'joining', reseed: 'copy-3' })).toBe(true);
  expect((await readMembers(redis, keys)).members.get('south-uruguay')).toMatchObject({ state: 'joining', reseed: 'copy-3', redisUrl: own });
  expect(await activateAfterReseed(redis, keys, 'south-uruguay', 'copy-3')).toBe(true);
  expect((await readMembers(redis, keys)).members.get('south-uruguay')).toMatchObject({ state: 'active', reseed: null, redisUrl: own });
});

test('a peer\'s Redis that lost this region\'s entry after it joined (restarted empty) gets it back from the periodic copy', async () => {
  const peerUrl = inDb(7);
  const peer = new Redis(peerUrl);
  const peerLinks = new RedisLinks({
    region: 'us-iowa', own: redis, name: 'membership-test-propagate', defaultUrl: REDIS_URL,
    configured: new Map([['us-iowa', REDIS_URL], ['europe-belgium', peerUrl]]),
  });
  // Copied at every refresh (propagateMs 0), rather than every 5 s.
  const fresh = new Membership({ links: peerLinks, subscriber, keys, region: 'us-iowa', configured: ['us-iowa', 'europe-belgium'], ownRedisUrl: REDIS_URL, log: pino({ level: 'silent' }), propagateMs: 0 });
  try {
    await writeMember(peer, keys, 'europe-belgium', { state: 'active', redis_url: peerUrl });
    await fresh.join();
    const mine = await redis.hget(keys.members, 'us-iowa');
    expect(await peer.hget(keys.members, 'us-iowa')).toBe(mine);
    // The peer's Redis restarts empty; nothing else writes us-iowa's entry there (europe-belgium's processes
    // are not running): only us-iowa's own processes put it back, as they refresh.
    await peer.del(keys.members);
    const back = async () => {
      await fresh.refresh();
      return (await peer.hget(keys.members, 'us-iowa')) === mine;
    };
    expect(await eventually(back, 10_000, 100)).toBe(true);
  } finally {
    fresh.stop();
    peerLinks.disconnect();
    await peer.del(keys.members, keys.departed, keys.departedKnown);
    peer.disconnect();
  }
});

test('a mark behind that lands between the re-seed\'s read of the entry and its activation is not overwritten', async () => {
  await writeMember(redis, keys, 'asia-korea', { state: 'active' });
  await updateMember(redis, keys, 'asia-korea', { state: 'joining', reseed: 'copy-4' });
  // A relay marks the target behind (relay-confirm.ts markBehind) just as the re-seed activates it: after the
  // re-seed read its entry, before it writes (the interleaving is forced here: the write is the eval).
  const racing = new Proxy(redis, {
    get(target, prop) {
      if (prop === 'eval') {
        return async (...args: Parameters<Redis['eval']>) => {
          await updateMember(redis, keys, 'asia-korea', { state: 'joining' });
          return target.eval(...args);
        };
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  expect(await activateAfterReseed(racing, keys, 'asia-korea', 'copy-4')).toBe(false);
  expect(await stateIn('asia-korea')).toBe('joining');
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

test('a removal its Redis no longer holds while the members are still there (an append-only file a second behind) stays known to the process', async () => {
  await redis.hset(keys.departed, 'sa-far', '2026-12-03T12:00:00.000Z');
  await membership.refresh();
  expect(membership.departed).toContain('sa-far');
  await redis.hdel(keys.departed, 'sa-far');
  await membership.refresh();
  // Still taken for gone (its credentials stay adopted), and this region still says it knows of it.
  expect(membership.departed).toContain('sa-far');
  expect(JSON.parse((await redis.hget(keys.departedKnown, 'us-iowa')) ?? '[]')).toContain('sa-far');
});

test('a region known only from the config (never registered) is not registered on its behalf when this region\'s Redis lost the record', async () => {
  // europe-belgium is in the config here and has never registered in this Redis: its own join decides
  // whether it is joining (new to a running deployment) or active; an entry written for it would decide that.
  expect(membership.members().find((m) => m.region === 'europe-belgium')?.registered).toBe(false);
  await redis.del(keys.members);
  await membership.refresh();
  const { members } = await readMembers(redis, keys);
  expect(members.has('us-iowa')).toBe(true);
  expect(members.has('europe-belgium')).toBe(false);
});
