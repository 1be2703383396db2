/**
 * Which Redis a process uses for each region (links.ts): its config entry's, else the address the region
 * recorded in the membership record (recorded without credentials, reached with the default's), else the
 * default; regions on one Redis share one connection.
 */
import { createRedis } from '../../src/redis';
import { RedisLinks, withoutCredentials } from '../../src/replication/links';

const own = createRedis('redis://127.0.0.1:6379', 'links-test', { queueWhileOffline: true });
afterAll(() => own.disconnect());

function links(defaultUrl: string) {
  return new RedisLinks({
    region: 'us-iowa', own, name: 'links-test', defaultUrl,
    configured: new Map([['us-iowa', 'redis://127.0.0.1:6379'], ['asia-japan', 'redis://10.0.0.3:6379']]),
  });
}

test('a region recorded only in the membership record is reached at its address with the default credentials', () => {
  const l = links('redis://:secret@10.0.0.9:6379');
  expect(l.urlOf('south-brazil')).toBe('redis://:secret@10.0.0.9:6379');
  l.learn('south-brazil', withoutCredentials('rediss://:theirs@10.0.0.7:6380'));
  expect(l.urlOf('south-brazil')).toBe('rediss://:secret@10.0.0.7:6380');
  // A configured region's entry wins over the record.
  l.learn('asia-japan', 'redis://10.0.0.99:6379');
  expect(l.urlOf('asia-japan')).toBe('redis://10.0.0.3:6379');
  l.disconnect();
});

test('regions on the same Redis share this process\'s connection; another Redis gets its own', () => {
  const l = links('redis://127.0.0.1:6379');
  expect(l.to('us-iowa')).toBe(own);
  expect(l.to('europe-belgium')).toBe(own);
  expect(l.sharesOwn('europe-belgium')).toBe(true);
  expect(l.sharesOwn('asia-japan')).toBe(false);
  expect(l.to('asia-japan')).toBe(l.to('asia-japan'));
  l.disconnect();
});

test('credentials never reach the membership record', () => {
  expect(withoutCredentials('rediss://user:pw@redis.example:6380')).toBe('rediss://redis.example:6380');
  expect(withoutCredentials('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
});

test('a password or user in the query (which ioredis takes as its options) never reaches a log line or the record either', () => {
  expect(withoutCredentials('redis://redis.example:6379/0?password=s3cret')).toBe('redis://redis.example:6379/0');
  expect(withoutCredentials('rediss://redis.example:6380?username=app&password=s3cret&family=6')).toBe('rediss://redis.example:6380?family=6');
  // …and a region learned from the record is reached with the default's, said the same way.
  const l = links('redis://10.0.0.9:6379?password=secret');
  l.learn('south-brazil', withoutCredentials('redis://10.0.0.7:6380?password=theirs'));
  expect(l.urlOf('south-brazil')).toBe('redis://10.0.0.7:6380?password=secret');
  l.disconnect();
});
