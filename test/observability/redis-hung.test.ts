/**
 * A Redis that hangs (stopped, its connections open: nothing errors, nothing answers) does not hang the
 * region's status or its metrics: both answer within seconds and say Redis did not answer (a helper's
 * review: no answer after 90 s, and the console showed the region healthy). Nor does readiness report it
 * reachable (ioredis' status stays `ready` while the connection is open).
 */
import { adminHeaders, call, eventually } from '../support/harness';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { ownRedis, type OwnRedis } from '../support/redis-server';

let redis: OwnRedis;
let r: InProcessRegion;
beforeAll(async () => {
  redis = await ownRedis();
  await redis.start();
  r = await startInProcess('redishung', ['us-iowa'], { redisUrl: redis.url }, 'us-iowa', { operatorPort: 0 });
}, 60_000);
afterAll(async () => {
  redis?.resume();
  await r?.stop();
  await redis?.kill();
});

test('/admin/replication and /metrics answer while Redis hangs, and say so', async () => {
  expect((await call(r.url, 'GET', '/admin/replication', { headers: adminHeaders })).body.stream.connected).toBe(true);
  redis.pause();
  try {
    const started = Date.now();
    const status = await call(r.url, 'GET', '/admin/replication', { headers: adminHeaders, timeoutMs: 15_000 });
    expect({ status: status.status, connected: status.body.stream.connected, error: status.body.stream.error }).toEqual({
      status: 200,
      connected: false,
      error: expect.stringMatching(/did not answer within 2000 ms/),
    });
    const metrics = await call(r.url, 'GET', '/metrics', { headers: adminHeaders, timeoutMs: 15_000 });
    expect(metrics.status).toBe(200);
    expect(String(metrics.body)).toMatch(/^replication_redis_up(\{[^}]*\})? 0$/m);
    expect(Date.now() - started).toBeLessThan(12_000);
  } finally {
    redis.resume();
  }
}, 60_000);

test('/readyz and /healthz, on the region port and the operator port, say a hung Redis is not answering', async () => {
  const operator = r.region.operator?.url as string;
  const redisOf = async (url: string, path: string) => (await call(url, 'GET', path, { timeoutMs: 15_000 })).body.redis;
  // (The PINGs of the previous test's pause are answered once Redis resumed.)
  for (const url of [r.url, operator]) expect(await eventually(async () => (await redisOf(url, '/readyz')).status === 'ready', 10_000, 250)).toBe(true);
  redis.pause();
  try {
    // A PING goes out while asked, and counts once it waited 2 s.
    for (const url of [r.url, operator]) {
      expect(await eventually(async () => JSON.stringify(await redisOf(url, '/readyz')) === JSON.stringify({ reachable: false, status: 'not answering' }), 10_000, 250)).toBe(true);
      expect(await redisOf(url, '/healthz')).toBe('not answering');
    }
    const ready = await call(r.url, 'GET', '/readyz');
    expect({ status: ready.status, ready: ready.body.ready }).toEqual({ status: 200, ready: true });
  } finally {
    redis.resume();
  }
  for (const url of [r.url, operator]) {
    expect(await eventually(async () => (await redisOf(url, '/readyz')).reachable === true, 10_000, 250)).toBe(true);
  }
}, 60_000);
