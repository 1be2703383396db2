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

test('a Redis without the script (restarted, or its scripts flushed) is sent it, and the answer is the same', async () => {
  const id = String(await redis.xadd('inbox-2', '*', 'e', 'x'));
  await redis.script('FLUSH');
  expect(await streamHolds(redis, 'inbox-2', [id, '1-1'])).toEqual([true, false]);
  expect(await streamHolds(redis, 'inbox-2', [id])).toEqual([true]);
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

test('a key that is not a stream is an error, not "missing" (nothing is delivered again on a misread)', async () => {
  await redis.set('not-a-stream', 'x');
  await expect(streamHolds(redis, 'not-a-stream', ['1-1'])).rejects.toThrow(/WRONGTYPE/);
});
