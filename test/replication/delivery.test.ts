/**
 * Deliverer.deliverAll: regions whose inboxes share a Redis get their entries in one pipeline (one socket
 * write), each region's outcome stays its own, and each inbox gets its consumer group first.
 */
import { createRedis, replicationKeys, type Redis } from '../../src/redis';
import { Deliverer } from '../../src/replication/delivery';
import { RedisLinks } from '../../src/replication/links';
import { REDIS_URL, deleteKeys, testEventAuth, uniqueName } from '../support/env';

const prefix = `${uniqueName('delivery')}:`;
const keys = replicationKeys(prefix);
const auth = testEventAuth();
let redis: Redis;
let links: RedisLinks;

const event = (n: number) =>
  auth.sign({ changeId: `00000000-0000-7000-8000-${String(n).padStart(12, '0')}`, origin: 'us-iowa', createdAt: new Date().toISOString(), ops: [] });

const changeIdOf = (fields: string[]) => {
  const v = auth.verify(fields);
  return v.ok ? (JSON.parse(v.body) as { changeId: string }).changeId : `refused: ${v.reason}`;
};

beforeAll(async () => {
  redis = createRedis(REDIS_URL, 'delivery-test');
  await new Promise((r) => redis.once('ready', r));
  links = new RedisLinks({ region: 'us-iowa', own: redis, name: 'delivery-test', defaultUrl: REDIS_URL, configured: new Map() });
});
afterAll(async () => {
  links.disconnect();
  redis.disconnect();
  await deleteKeys(prefix);
});

test('destinations sharing a Redis get their entries in one pipeline, in order, each inbox with its group', async () => {
  const pipelines = jest.spyOn(redis, 'pipeline');
  try {
    const res = await new Deliverer(keys, auth, 1000).deliverAll(links, new Map([
      ['europe-belgium', [event(1), event(2)]],
      ['asia-japan', [event(3)]],
      ['nowhere', []],
    ]));
    expect(pipelines).toHaveBeenCalledTimes(1);
    expect(res.get('nowhere')).toEqual({ ok: true, value: [] });
    for (const [region, changes] of [['europe-belgium', [1, 2]], ['asia-japan', [3]]] as const) {
      const r = res.get(region);
      if (!r?.ok) throw new Error(`${region} was not delivered`);
      const entries = (await redis.xrange(keys.inbox(region), '-', '+')) as [string, string[]][];
      expect(entries.map((e) => e[0])).toEqual(r.value);
      expect(entries.map((e) => changeIdOf(e[1]))).toEqual(changes.map((n) => event(n).changeId));
      const groups = (await redis.xinfo('GROUPS', keys.inbox(region))) as unknown[][];
      expect(groups.map((g) => g[1])).toEqual([region]);
    }
  } finally {
    pipelines.mockRestore();
  }
});

test('with every group known, the entries are written before anything the caller sends next', async () => {
  const deliverer = new Deliverer(keys, auth, 1000);
  await deliverer.deliverAll(links, new Map([['first', [event(10)]]]));
  // Not awaited: a command sent right after, on the same connection, must find the entry there (the
  // origin sends its own ack right after its deliveries, and they are what all_regions waits on).
  const delivering = deliverer.deliverAll(links, new Map([['first', [event(11)]]]));
  const seen = await redis.xlen(keys.inbox('first'));
  await delivering;
  expect(seen).toBe(2);
});

test('a destination whose entries fail does not fail the others sharing its pipeline', async () => {
  const deliverer = new Deliverer(keys, auth, 1000);
  // Each inbox gets its group; then one of them stops being a stream, so only its XADDs fail.
  await deliverer.deliverAll(links, new Map([['left', [event(20)]], ['broken', [event(21)]], ['right', [event(22)]]]));
  await redis.del(keys.inbox('broken'));
  await redis.set(keys.inbox('broken'), 'x');
  const res = await deliverer.deliverAll(links, new Map([
    ['left', [event(23), event(24)]],
    ['broken', [event(25), event(26), event(27)]],
    ['right', [event(28), event(29)]],
  ]));
  expect(res.get('broken')).toMatchObject({ ok: false, error: expect.objectContaining({ message: expect.stringMatching(/WRONGTYPE/) }) });
  for (const [region, changes] of [['left', [20, 23, 24]], ['right', [22, 28, 29]]] as const) {
    const r = res.get(region);
    if (!r?.ok) throw new Error(`${region} was not delivered`);
    const entries = (await redis.xrange(keys.inbox(region), '-', '+')) as [string, string[]][];
    expect(entries.map((e) => changeIdOf(e[1]))).toEqual(changes.map((n) => event(n).changeId));
    expect(entries.slice(1).map((e) => e[0])).toEqual(r.value);
  }
  // Its group is made sure of again next time (a Redis that lost its data lost the group too).
  await redis.del(keys.inbox('broken'));
  expect(await deliverer.deliver(links, 'broken', [event(30)])).toHaveLength(1);
  expect(((await redis.xinfo('GROUPS', keys.inbox('broken'))) as unknown[][]).map((g) => g[1])).toEqual(['broken']);
});
