/**
 * As origin-redis-loss.test.ts, but what removes the healthy region's read-and-acknowledged entries is its
 * inbox cap (a busy inbox), seconds after a routine trim recorded how far it had read: the relay takes the
 * group's floor as it is now, not only what the last trim recorded, and delivers the changes again instead
 * of marking the region `joining`. A small cap (100 entries) and 130 writes of another region fill the inbox.
 */
import Redis from 'ioredis';
import { adminHeaders, call, eventually, type Cluster } from '../support/harness';
import { clusterWithOwnRedis, type OwnRedis } from '../support/redis-server';

const REGIONS = ['us-iowa', 'europe-belgium', 'asia-japan'];
const [ONE = '', TWO = '', THREE = ''] = REGIONS;
let cluster: Cluster;
let servers: Map<string, OwnRedis>;
let stop: () => Promise<void>;

beforeAll(async () => {
  ({ cluster, redis: servers, stop } = await clusterWithOwnRedis('origin-redis-loss-cap', REGIONS, { streamMaxLength: 100 }));
}, 120_000);
afterAll(async () => {
  await stop?.();
});

const status = async (region: string) => (await call(cluster.url(region), 'GET', '/admin/replication', { headers: adminHeaders })).body;
const has = async (region: string, id: string) => (await call(cluster.url(region), 'GET', `/admin/organizations/${id}`, { headers: adminHeaders })).status === 200;
const write = (region: string, name: string) => call(cluster.url(region), 'POST', '/admin/organizations', { body: { name }, headers: adminHeaders });
const statesSeenBy = async (region: string) => Object.fromEntries(((await status(region)).members as { region: string; state: string }[]).map((m) => [m.region, m.state]));

async function withRedis<T>(region: string, fn: (c: Redis) => Promise<T>): Promise<T> {
  const c = new Redis(servers.get(region)?.url ?? '');
  try {
    return await fn(c);
  } finally {
    c.disconnect();
  }
}

test('entries a healthy region read, removed by its inbox cap after the origin\'s Redis lost their acks, are delivered again', async () => {
  for (const r of REGIONS) expect((await write(r, `warm ${r}`)).status).toBe(201);
  expect(await eventually(() => withRedis(TWO, async (c) => (await c.keys('*changes-born:*')).length > 0), 90_000, 1000)).toBe(true);
  const prefix = cluster.deployment.file.redisKeyPrefix;
  const inbox = `${prefix}{repl}:changes:${TWO}`;

  // TWO paused: ONE's five changes wait in its inbox; THREE applies them.
  cluster.proc(TWO).pause();
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    const res = await write(ONE, `from one ${i}`);
    expect(res.status).toBe(201);
    ids.push(res.body.id);
  }
  for (const id of ids) expect(await eventually(() => has(THREE, id), 10_000, 100)).toBe(true);
  await new Promise((r) => setTimeout(r, 4000));
  const last = await withRedis(TWO, async (c) => (await c.xrevrange(inbox, '+', '-', 'COUNT', 1))[0]?.[0]);
  expect(last).toBeDefined();

  // ONE paused. Right after a routine trim recorded how far TWO had read (before ONE's changes), TWO resumes,
  // applies them and acks them into ONE's Redis.
  cluster.proc(ONE).pause();
  const readBelow = () => withRedis(TWO, (c) => c.get(`${prefix}{repl}:changes-read-below:${TWO}`));
  const before = await readBelow();
  expect(await eventually(async () => (await readBelow()) !== before, 40_000, 100)).toBe(true);
  cluster.proc(TWO).resume();
  for (const id of ids) expect(await eventually(() => has(TWO, id), 10_000, 100)).toBe(true);
  await new Promise((r) => setTimeout(r, 1000));

  // ONE's Redis restarts empty; THREE's writes fill TWO's inbox, and the cap removes ONE's entries.
  await servers.get(ONE)?.kill();
  await servers.get(ONE)?.start();
  for (let i = 0; i < 130; i++) expect((await write(THREE, `from three ${i}`)).status).toBe(201);
  const first = await withRedis(TWO, async (c) => (await c.xrange(inbox, '-', '+', 'COUNT', 1))[0]?.[0]);
  const olderThan = (a: string, b: string) => {
    const [am = 0n, as = 0n] = a.split('-').map(BigInt);
    const [bm = 0n, bs = 0n] = b.split('-').map(BigInt);
    return am < bm || (am === bm && as < bs);
  };
  expect(olderThan(last ?? '', first ?? '')).toBe(true); // removed by the cap
  expect(olderThan(last ?? '', (await readBelow()) ?? '0-0')).toBe(false); // and not below what a trim recorded

  // ONE resumes: its relay delivers them again; TWO stays active everywhere.
  cluster.proc(ONE).resume();
  expect(await eventually(async () => (await status(ONE)).outbox?.unconfirmed === 0 && cluster.logs(ONE).some((l) => /delivering them again/.test(l)), 90_000, 1000)).toBe(true);
  expect(cluster.logs(ONE).filter((l) => /needs a re-seed/.test(l))).toEqual([]);
  for (const r of REGIONS) expect({ seenBy: r, states: await statesSeenBy(r) }).toEqual({ seenBy: r, states: { [ONE]: 'active', [TWO]: 'active', [THREE]: 'active' } });
}, 300_000);
