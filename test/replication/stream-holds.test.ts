/**
 * streamHolds: whether an inbox still holds entries, by id, without their bytes coming back. The relay asks
 * it for every long-unconfirmed delivery each confirm round while a destination is down. Here against a
 * Redis server of the test's own (its script cache is flushed, and its traffic is the test's alone).
 */
import Redis from 'ioredis';
import { streamHolds } from '../../src/replication/stream';
import { ownRedis, type OwnRedis } from '../support/redis-server';

let server: OwnRedis;
let redis: Redis;
beforeAll(async () => {
  server = await ownRedis();
  await server.start();
  redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
});
afterAll(async () => {
  redis.disconnect();
  await server.kill();
});

const outputBytes = async () => Number(/total_net_output_bytes:(\d+)/.exec(await redis.info('stats'))?.[1]);

test('tells the entries there from those deleted, never added or of a stream that does not exist', async () => {
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push(String(await redis.xadd('inbox', '*', 'e', `event ${i}`)));
  await redis.xdel('inbox', ids[1] as string, ids[3] as string);
  const later = `${Number((ids[4] as string).split('-')[0]) + 1000}-0`;
  expect(await streamHolds(redis, 'inbox', [...ids, later])).toEqual([true, false, true, false, true, false]);
  expect(await streamHolds(redis, 'no-such-inbox', ids)).toEqual([false, false, false, false, false]);
  expect(await streamHolds(redis, 'inbox', [])).toEqual([]);
});

test('a Redis without the script (restarted, or its scripts flushed) is sent it once, and the answer is the same', async () => {
  const id = String(await redis.xadd('inbox-2', '*', 'e', 'x'));
  await redis.script('FLUSH');
  expect(await streamHolds(redis, 'inbox-2', [id, '1-1'])).toEqual([true, false]);
  // Loaded by that run: the next ones go by its hash.
  const stats = async () => (await redis.info('commandstats')).split('\n').filter((l) => /^cmdstat_(eval|evalsha):/.test(l)).map((l) => l.split(':')[0]);
  await redis.config('RESETSTAT');
  expect(await streamHolds(redis, 'inbox-2', [id])).toEqual([true]);
  expect(await stats()).toEqual(['cmdstat_evalsha']);
});

test('an id repeated (the events of one pack) is looked up once; more ids than one run takes go in several runs', async () => {
  const ids: string[] = [];
  for (let i = 0; i < 600; i++) ids.push(String(await redis.xadd('inbox-4', '*', 'e', String(i))));
  await redis.xdel('inbox-4', ids[0] as string, ids[599] as string);
  const asked = [...ids, ...ids.slice(0, 10), ids[599] as string];
  await streamHolds(redis, 'inbox-4', ids.slice(0, 1)); // the script is loaded
  await redis.config('RESETSTAT');
  const held = await streamHolds(redis, 'inbox-4', asked);
  expect(held).toEqual(asked.map((id) => id !== ids[0] && id !== ids[599]));
  // 600 distinct ids, 250 per run.
  expect(Number(/cmdstat_evalsha:calls=(\d+)/.exec(await redis.info('commandstats'))?.[1])).toBe(3);
  await redis.config('RESETSTAT');
  await streamHolds(redis, 'inbox-4', [...ids.slice(0, 5), ...ids.slice(0, 5)]);
  expect(Number(/cmdstat_xrange:calls=(\d+)/.exec(await redis.info('commandstats'))?.[1])).toBe(5);
});

test('the entries stay in Redis: looking up large ones sends back a few bytes each, not the entries', async () => {
  const big = 'x'.repeat(256 * 1024);
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) ids.push(String(await redis.xadd('inbox-3', '*', 'e', big)));
  await streamHolds(redis, 'inbox-3', ids); // the script is loaded once
  const before = await outputBytes();
  expect(await streamHolds(redis, 'inbox-3', ids)).toEqual([true, true, true, true]);
  const sent = (await outputBytes()) - before;
  // The INFO reply itself is a few KB; the four entries would be a megabyte.
  expect(sent).toBeLessThan(64 * 1024);
});

test('what Redis cannot look up counts as held (nothing is delivered again on a misread), without hiding the rest', async () => {
  const id = String(await redis.xadd('inbox-5', '*', 'e', 'x'));
  expect(await streamHolds(redis, 'inbox-5', ['not-an-id', id, '1-1'])).toEqual([true, true, false]);
  await redis.set('not-a-stream', 'x');
  expect(await streamHolds(redis, 'not-a-stream', ['1-1', '2-2'])).toEqual([true, true]);
});
