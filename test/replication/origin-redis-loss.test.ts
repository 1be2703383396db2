/**
 * An origin's Redis loses its data (it keeps nothing on disk) while acks of a healthy region there are not
 * yet confirmed by the origin's relay. The destination had read, applied and acknowledged those changes,
 * and the relays' routine trims then removed them from its inbox: missing from the inbox and without an
 * ack, they were taken for entries the inbox cap trimmed unread, and the healthy region was marked
 * `joining` everywhere (a re-seed needed, tombstone collection held) with nothing missing. The trims now
 * record how far their region had read; such changes are delivered again, applied again as duplicates and
 * acked anew, and the region stays active.
 * Three regions, each with a Redis of its own; us-iowa is the origin whose Redis is lost.
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
  ({ cluster, redis: servers, stop } = await clusterWithOwnRedis('origin-redis-loss', REGIONS));
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

test('a healthy region whose acks an origin\'s Redis lost is delivered those changes again, and stays active', async () => {
  // Every inbox has entries, and TWO's its birth mark (a relay's trim sets it; trims run every 30 s).
  for (const r of REGIONS) expect((await write(r, `warm ${r}`)).status).toBe(201);
  expect(await eventually(() => withRedis(TWO, async (c) => (await c.keys('*changes-born:*')).length > 0), 90_000, 1000)).toBe(true);

  // TWO paused: ONE's five changes wait in its inbox; THREE applies them and ONE confirms THREE's deliveries.
  cluster.proc(TWO).pause();
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    const res = await write(ONE, `from one ${i}`);
    expect(res.status).toBe(201);
    ids.push(res.body.id);
  }
  for (const id of ids) expect(await eventually(() => has(THREE, id), 10_000, 100)).toBe(true);
  await new Promise((r) => setTimeout(r, 4000));

  // ONE paused (its relay cannot read the acks that come next); TWO resumed: it applies the changes and acks
  // them into ONE's Redis.
  cluster.proc(ONE).pause();
  cluster.proc(TWO).resume();
  const acksOfTwo = () =>
    withRedis(ONE, async (c) => {
      let n = 0;
      for (const k of await c.keys('*{repl}:ack:*')) if (await c.hexists(k, TWO)) n++;
      return n;
    });
  expect(await eventually(async () => (await acksOfTwo()) >= 5, 30_000, 250)).toBe(true);
  for (const id of ids) expect(await eventually(() => has(TWO, id), 10_000, 100)).toBe(true);
  // Until ONE's deliveries to TWO are old enough for its relay to look for them (republishAfterMs, 10 s).
  await new Promise((r) => setTimeout(r, 11_000));

  // ONE's Redis restarts empty (the acks are gone); ONE resumes; ordinary traffic moves TWO's group on, and
  // the relays' trims remove what it read.
  await servers.get(ONE)?.kill();
  await servers.get(ONE)?.start();
  cluster.proc(ONE).resume();
  for (let i = 0; i < 3; i++) expect((await write(THREE, `from three ${i}`)).status).toBe(201);

  // ONE's relay finds the deliveries missing and without an ack: it delivers them again, TWO acks them, and
  // every change of ONE is confirmed.
  expect(await eventually(async () => (await status(ONE)).outbox?.unconfirmed === 0 && cluster.logs(ONE).some((l) => /delivering them again/.test(l)), 120_000, 1000)).toBe(true);
  expect(cluster.logs(ONE).filter((l) => /needs a re-seed/.test(l))).toEqual([]);
  for (const r of REGIONS) expect({ seenBy: r, states: await statesSeenBy(r) }).toEqual({ seenBy: r, states: { [ONE]: 'active', [TWO]: 'active', [THREE]: 'active' } });
  for (const id of ids) expect(await has(TWO, id)).toBe(true);
}, 300_000);
