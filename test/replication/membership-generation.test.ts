/**
 * The membership record against anyone who can write to the deployment's Redis: a `~generation` that is not
 * an integer does not fail the writes that bump it (registering, a re-seed's activation), and a flood of
 * `members-changed` messages does not become a flood of refreshes.
 */
import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import pino from 'pino';
import { replicationKeys } from '../../src/redis';
import { RedisLinks } from '../../src/replication/links';
import { activateAfterReseed, readMembers, writeMember } from '../../src/replication/member-record';
import { Membership } from '../../src/replication/membership';
import { deleteKeys, REDIS_URL } from '../support/env';
import { eventually } from '../support/harness';
import { logLines } from '../support/log-lines';

const prefix = `test-membership-generation-${randomUUID().slice(0, 8)}:`;
const keys = replicationKeys(prefix);
const redis = new Redis(REDIS_URL);
const started: { m: Membership; links: RedisLinks; own: Redis; subscriber: Redis }[] = [];
afterEach(async () => {
  for (const s of started.splice(0)) {
    s.m.stop();
    s.links.disconnect();
    s.own.disconnect();
    s.subscriber.disconnect();
  }
  await deleteKeys(prefix);
});
afterAll(() => redis.disconnect());

/** A process of us-iowa (config: us-iowa alone) on connections of its own; its log lines kept. */
function member(refreshMs?: number) {
  const own = new Redis(REDIS_URL);
  const subscriber = new Redis(REDIS_URL);
  const links = new RedisLinks({ region: 'us-iowa', own, name: 'membership-generation-test', defaultUrl: REDIS_URL, configured: new Map([['us-iowa', REDIS_URL]]) });
  const { lines, sink } = logLines();
  const m = new Membership({ links, subscriber, keys, region: 'us-iowa', configured: ['us-iowa'], ownRedisUrl: REDIS_URL, log: pino({ level: 'warn' }, sink), refreshMs });
  started.push({ m, links, own, subscriber });
  return { m, own, subscriber, lines };
}

test("a region whose Redis lost the record registers again, with the members it knew, over a ~generation that is not an integer, which is replaced (and said so)", async () => {
  const { m, lines } = member();
  // A member added at runtime (in no config here), known to the process from the record.
  await writeMember(redis, keys, 'south-x', { state: 'active', redis_url: REDIS_URL });
  await m.join();
  // The Redis loses the record; someone plants a generation HINCRBY refuses. The applier joins again (NOGROUP).
  await redis.del(keys.members);
  await redis.hset(keys.members, '~generation', 'x');
  await m.join();
  const { members } = await readMembers(redis, keys);
  expect([...members.keys()].sort()).toEqual(['south-x', 'us-iowa']);
  expect(Number.isInteger(Number(await redis.hget(keys.members, '~generation')))).toBe(true);
  expect(lines.filter((l) => l.level === 40 && l.replaced === 'x')).toHaveLength(1);
});

test("a re-seed's activation marks the region active over a ~generation that is not an integer", async () => {
  await writeMember(redis, keys, 'us-iowa', { state: 'joining', reseed: 'copy-1' });
  await redis.hset(keys.members, '~generation', '1.5');
  expect(await activateAfterReseed(redis, keys, 'us-iowa', 'copy-1')).toBe(true);
  expect((await readMembers(redis, keys)).members.get('us-iowa')?.state).toBe('active');
  expect(await redis.hget(keys.members, '~generation')).toBe('1');
});

test('1,000 announcements heard during a refresh cause one more refresh, which sees a change announced meanwhile', async () => {
  const { m, own, subscriber } = member(3_600_000);
  // Every HGETALL on the process's connection is counted; each read's answer is held until `release`, so the
  // first refresh is still running while the flood arrives.
  const hgetall = own.hgetall.bind(own) as (key: string) => Promise<Record<string, string>>;
  let release = () => {};
  const held = new Promise<void>((r) => (release = r));
  let reads = 0;
  (own as unknown as { hgetall: typeof hgetall }).hgetall = async (key) => {
    reads++;
    const answer = await hgetall(key);
    await held;
    return answer;
  };
  const heard = (n: number) =>
    new Promise<void>((resolve) => {
      let count = 0;
      subscriber.on('message', (channel: string) => {
        if (channel === keys.membersChannel && ++count === n) resolve();
      });
    });
  m.start();
  await eventually(async () => reads > 0 && Number(((await redis.pubsub('NUMSUB', keys.membersChannel)) as [string, number])[1]) > 0);
  const readsBefore = reads;
  const flood = heard(1001);
  for (let i = 0; i < 1000; i++) await redis.publish(keys.membersChannel, 'flood');
  // A change, announced (its own publish) while the first refresh is still held.
  await writeMember(redis, keys, 'south-x', { state: 'active' });
  await flood;
  // One refresh for all of them so far (three HGETALLs), still held.
  expect(reads).toBe(readsBefore + 3);
  release();
  expect(await eventually(async () => m.regions().includes('south-x'))).toBe(true);
  // And one more after it.
  expect(reads).toBe(readsBefore + 6);
});
