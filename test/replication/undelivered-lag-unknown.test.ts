/**
 * Redis 7.0 answers no consumer-group `lag` once an entry past the group's position was deleted from the
 * stream (XDEL, as an operator's clean-up or a deletion of a bad entry does): it cannot count what is left.
 * The stream's length still bounds it, so `undelivered` (GET /admin/replication, the console's backlog,
 * replication_stream_undelivered) is that bound and says so, rather than null (read as "nothing known").
 */
import Redis from 'ioredis';
import { groupInfo, streamBounds, undelivered, undeliveredIsBound } from '../../src/replication/stream';
import { REDIS_URL, uniqueName } from '../support/env';

const stream = `${uniqueName('undelivered-lag')}:inbox`;
let redis: Redis;
beforeAll(() => {
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
});
afterAll(async () => {
  await redis.del(stream);
  redis.disconnect();
});

test('a group whose lag Redis cannot count after a deletion is shown the stream length as an upper bound, not null', async () => {
  await redis.xgroup('CREATE', stream, 'asia-japan', '0', 'MKSTREAM');
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push(String(await redis.xadd(stream, '*', 'e', `event ${i}`)));
  // The group reads two; then an entry it has not read yet is deleted.
  await redis.xreadgroup('GROUP', 'asia-japan', 'c1', 'COUNT', 2, 'STREAMS', stream, '>');
  await redis.xdel(stream, ids[3] as string);

  const g = (await groupInfo(redis, stream)).find((x) => x.name === 'asia-japan');
  const b = await streamBounds(redis, stream);
  if (!g || !b) throw new Error('no group or stream');
  expect(g.lag).toBeNull();
  // 2 are left to deliver; the stream holds 4: 4 is the bound, and it is flagged as one.
  expect({ undelivered: undelivered(g, b), bound: undeliveredIsBound(g, b) }).toEqual({ undelivered: 4, bound: true });
});

test('a group with a lag Redis counts, or that has read the newest entry, is shown an exact figure', async () => {
  const s = `${stream}:2`;
  try {
    await redis.xgroup('CREATE', s, 'asia-japan', '0', 'MKSTREAM');
    for (let i = 0; i < 3; i++) await redis.xadd(s, '*', 'e', `event ${i}`);
    await redis.xreadgroup('GROUP', 'asia-japan', 'c1', 'COUNT', 1, 'STREAMS', s, '>');
    let g = (await groupInfo(redis, s)).find((x) => x.name === 'asia-japan');
    let b = await streamBounds(redis, s);
    if (!g || !b) throw new Error('no group or stream');
    expect({ undelivered: undelivered(g, b), bound: undeliveredIsBound(g, b) }).toEqual({ undelivered: 2, bound: false });
    await redis.xreadgroup('GROUP', 'asia-japan', 'c1', 'STREAMS', s, '>');
    g = (await groupInfo(redis, s)).find((x) => x.name === 'asia-japan');
    b = await streamBounds(redis, s);
    if (!g || !b) throw new Error('no group or stream');
    expect({ undelivered: undelivered(g, b), bound: undeliveredIsBound(g, b) }).toEqual({ undelivered: 0, bound: false });
  } finally {
    await redis.del(s);
  }
});
