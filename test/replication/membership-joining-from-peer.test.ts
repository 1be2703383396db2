/**
 * Membership.join(): a region whose own Redis lost the record, while a peer's copy still says it is joining
 * (it needs a re-seed), registers itself again as joining, never as active (membership.ts join(): the
 * `seen.get(region)?.state === 'joining'` term). As active it would copy that entry everywhere, tombstone
 * collection would resume and no region would say it needs a re-seed.
 */
import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import pino from 'pino';
import { replicationKeys } from '../../src/redis';
import { RedisLinks } from '../../src/replication/links';
import { readMembers, writeMember } from '../../src/replication/member-record';
import { Membership } from '../../src/replication/membership';
import { deleteKeys, REDIS_URL } from '../support/env';

const prefix = `test-membership-jp-${randomUUID().slice(0, 8)}:`;
const keys = replicationKeys(prefix);
const inDb = (n: number) => {
  const u = new URL(REDIS_URL);
  u.pathname = `/${n}`;
  return u.toString();
};

test("a region its own Redis forgot, marked joining in a peer's copy, registers again as joining", async () => {
  const redis = new Redis(REDIS_URL);
  const subscriber = new Redis(REDIS_URL);
  const peerUrl = inDb(9);
  const peer = new Redis(peerUrl);
  const links = new RedisLinks({
    region: 'us-iowa', own: redis, name: 'membership-jp-test', defaultUrl: REDIS_URL,
    configured: new Map([['us-iowa', REDIS_URL], ['europe-belgium', peerUrl]]),
  });
  const m = new Membership({ links, subscriber, keys, region: 'us-iowa', configured: ['us-iowa', 'europe-belgium'], ownRedisUrl: REDIS_URL, log: pino({ level: 'silent' }) });
  try {
    await writeMember(peer, keys, 'europe-belgium', { state: 'active', redis_url: peerUrl });
    await writeMember(peer, keys, 'us-iowa', { state: 'joining', redis_url: REDIS_URL });
    // us-iowa's own Redis restarted empty: no record there at all.
    await m.join();
    expect((await readMembers(redis, keys)).members.get('us-iowa')?.state).toBe('joining');
    expect(m.members().find((x) => x.region === 'us-iowa')?.state).toBe('joining');
  } finally {
    m.stop();
    links.disconnect();
    await peer.del(keys.members, keys.departed, keys.departedKnown);
    peer.disconnect();
    await deleteKeys(prefix);
    redis.disconnect();
    subscriber.disconnect();
  }
});
