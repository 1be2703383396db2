/**
 * The operator port listens before the region's own port (which opens after the start-up checks; the start
 * check of its database waits up to startCheckWaitMs for its Redis). Meanwhile its /readyz answers 503 with
 * `starting: true`: a readiness probe there must not send traffic to a port that does not listen yet.
 */
import pino from 'pino';
import { startRegion, type RunningRegion } from '../../src/region';
import { freePorts } from '../support/env';
import { call, eventually } from '../support/harness';
import { deploymentWithOwnRedis } from '../support/redis-server';

let rig: Awaited<ReturnType<typeof deploymentWithOwnRedis>>;
let region: RunningRegion | null = null;

beforeAll(async () => {
  rig = await deploymentWithOwnRedis('readiness-starting', ['us-iowa']);
});
afterAll(async () => {
  rig?.redis.resume();
  await region?.stop();
  await rig?.cleanup();
});

/** How long the start waits for the start check while the region's Redis hangs. */
const WAIT_MS = 4000;

test("the operator port's /readyz answers 503 starting: true until the region's own port listens, then 200", async () => {
  const [operatorPort = 0] = await freePorts(1);
  const operatorUrl = `http://127.0.0.1:${operatorPort}`;
  // With its Redis hung, the start waits for the start check: the operator port answers meanwhile.
  rig.redis.pause();
  const starting = startRegion(rig.dep.configFor('us-iowa'), { port: 0, operatorPort, drainTimeoutMs: 5000, startCheckWaitMs: WAIT_MS, log: pino({ level: 'silent' }) });
  let started = false;
  void starting.then(() => (started = true), () => undefined);
  let early: { started: boolean; status: number; body: Record<string, unknown> } | null = null;
  const answered = await eventually(async () => {
    const res = await call(operatorUrl, 'GET', '/readyz', { timeoutMs: 1000 }).catch(() => null);
    early = res && { started, status: res.status, body: res.body };
    return res !== null;
  }, 20_000, 50);
  region = await starting;
  expect(answered).toBe(true);
  // Answered while the start still waited.
  expect(early).toMatchObject({ started: false, status: 503, body: { ready: false, starting: true, database: 'ok' } });

  // Its port listens: ready on both ports (Redis is reported, not required).
  expect(started).toBe(true);
  expect((await call(region.url, 'GET', '/readyz')).status).toBe(200);
  expect(await eventually(async () => (await call(operatorUrl, 'GET', '/readyz')).status === 200, 5_000, 50)).toBe(true);
  expect((await call(operatorUrl, 'GET', '/readyz')).body.starting).toBeUndefined();
  rig.redis.resume();
}, 60_000);
