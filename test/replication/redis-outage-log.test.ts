/**
 * An outage of a region's Redis is said in the log at the default level, once, and so is its end: the loops
 * that use that Redis retry quietly (debug lines), and before this an operator reading the logs of a region
 * whose Redis was down, or of a region that could not deliver to it, found nothing at all.
 */
import { adminHeaders, call, eventually, type Cluster } from '../support/harness';
import { clusterWithOwnRedis, type OwnRedis } from '../support/redis-server';

const REGIONS = ['us-iowa', 'europe-belgium'];
const [DOWN = '', PEER = ''] = REGIONS;
let cluster: Cluster;
let redis: Map<string, OwnRedis>;
let stop: () => Promise<void>;

beforeAll(async () => {
  ({ cluster, redis, stop } = await clusterWithOwnRedis('redisoutagelog', REGIONS, {}, { env: { LOG_LEVEL: 'info' } }));
}, 120_000);
afterAll(async () => {
  await stop?.();
});

type Line = { level?: number; msg?: string; destination?: string; down_ms?: number; failing_ms?: number; redis?: string; redis_url?: string; err?: string };
const lines = (region: string): Line[] =>
  cluster.logs(region).flatMap((l) => {
    try {
      return [JSON.parse(l) as Line];
    } catch {
      return [];
    }
  });
const saying = (region: string, start: string) => lines(region).filter((l) => l.msg?.startsWith(start));

const OWN_DOWN = "this region's Redis does not answer";
const OWN_BACK = "this region's Redis answers again";
const CANNOT_DELIVER = "could not deliver to a region's Redis";
const DELIVERING = "delivering to a region's Redis again";

test("a region whose Redis is down warns once, its peer warns once that it cannot deliver there, and both say when it answers again", async () => {
  expect(saying(DOWN, OWN_DOWN)).toEqual([]);
  const server = redis.get(DOWN) as OwnRedis;
  await server.kill();
  const org = await call(cluster.url(PEER), 'POST', '/admin/organizations', { body: { name: 'written during the outage' }, headers: adminHeaders });
  expect(org.status).toBe(201);

  expect(await eventually(async () => saying(DOWN, OWN_DOWN).length > 0 && saying(PEER, CANNOT_DELIVER).length > 0, 15_000)).toBe(true);
  const [own] = saying(DOWN, OWN_DOWN);
  expect(own?.level).toBe(40);
  expect(own?.redis).not.toBe('ready');
  // Which Redis (a region may have one of its own): an operator review found the lines did not say.
  expect(own?.redis_url).toBe(server.url);
  const [delivery] = saying(PEER, CANNOT_DELIVER);
  expect(delivery).toMatchObject({ level: 40, destination: DOWN, redis_url: server.url, err: 'not connected (refused, closed, or still connecting)' });
  // The loops go on retrying every second or so: still one warning each.
  await new Promise((r) => setTimeout(r, 4000));
  expect(saying(DOWN, OWN_DOWN)).toHaveLength(1);
  expect(saying(PEER, CANNOT_DELIVER)).toHaveLength(1);
  expect(saying(DOWN, OWN_BACK)).toEqual([]);

  await server.start();
  expect(await eventually(async () => saying(DOWN, OWN_BACK).length > 0 && saying(PEER, DELIVERING).length > 0, 20_000)).toBe(true);
  expect(saying(DOWN, OWN_BACK)[0]?.down_ms).toBeGreaterThanOrEqual(4000);
  expect(saying(DOWN, OWN_BACK)[0]?.redis_url).toBe(server.url);
  expect(saying(PEER, DELIVERING)[0]).toMatchObject({ level: 30, destination: DOWN, redis_url: server.url });
  expect(await eventually(async () => (await call(cluster.url(DOWN), 'GET', `/admin/organizations/${org.body.id as string}`, { headers: adminHeaders })).status === 200, 20_000, 500)).toBe(true);
}, 90_000);
