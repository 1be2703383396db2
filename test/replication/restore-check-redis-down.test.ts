/**
 * The start check of a region's database needs the region's own Redis. A region started while that Redis is
 * down or hangs does not wait for it for ever: it serves once the wait for the check ran out, says the check
 * is pending (a warning, start_check in GET /admin/replication), and runs it once its Redis answers: a
 * replaced database is then marked, and a Redis that lost its data raises no false alarm.
 */
import pino from 'pino';
import { gatherDeployment } from '../../src/console/deployment';
import { dropDatabase } from '../../src/db/migrate';
import { createRedis, replicationKeys } from '../../src/redis';
import { readMembers } from '../../src/replication/member-record';
import { startRegion, type RunningRegion } from '../../src/region';
import { ADMIN_TOKEN, type TestDeployment } from '../support/env';
import { adminHeaders, call, eventually } from '../support/harness';
import { logLines } from '../support/log-lines';
import { deploymentWithOwnRedis, type OwnRedis } from '../support/redis-server';

let redisServer: OwnRedis;
let dep: TestDeployment;
let rig: Awaited<ReturnType<typeof deploymentWithOwnRedis>> | null = null;
let region: RunningRegion | null = null;

beforeAll(async () => {
  rig = await deploymentWithOwnRedis('restore-check-redis-down', ['us-iowa']);
  ({ redis: redisServer, dep } = rig);
});
afterAll(async () => {
  redisServer?.resume();
  await region?.stop();
  await rig?.cleanup();
});

const WAIT_MS = 1500;

async function start(): Promise<{ log: ReturnType<typeof logLines>; tookMs: number }> {
  const log = logLines();
  const started = Date.now();
  region = await startRegion(dep.configFor('us-iowa'), { port: 0, drainTimeoutMs: 5000, startCheckWaitMs: WAIT_MS, log: pino({ level: 'warn' }, log.sink) });
  return { log, tookMs: Date.now() - started };
}

async function stop(): Promise<void> {
  await region?.stop();
  region = null;
}

const status = async () => (await call((region as RunningRegion).url, 'GET', '/admin/replication', { headers: adminHeaders, timeoutMs: 10_000 })).body;
const ownState = async () => ((await status()).members as { region: string; state: string }[]).find((m) => m.region === 'us-iowa')?.state;
const warnedUnchecked = (log: ReturnType<typeof logLines>) => log.lines.some((l) => String(l.msg).includes("this region's start check (whether its database"));
/** What the deployment console lists among the region's problems. */
async function consoleProblems(): Promise<string[]> {
  const config = dep.configFor('us-iowa');
  const at = { ...config.region, publicUrl: (region as RunningRegion).url };
  const d = await gatherDeployment({ region: at, regions: [at], adminToken: ADMIN_TOKEN }, 10_000);
  return d.regions[0]?.problems ?? [];
}
const databaseUrl = () => dep.file.regions[0]?.databaseUrl as string;

test('with its Redis hung at start, a region on a replaced database serves once the wait ran out, then is marked once Redis answers', async () => {
  const first = await start();
  expect((await status()).start_check).toBe('done');
  expect(warnedUnchecked(first.log)).toBe(false);
  await stop();

  await dropDatabase(databaseUrl());
  redisServer.pause();
  const { log, tookMs } = await start();
  expect(tookMs).toBeGreaterThanOrEqual(WAIT_MS);
  expect(warnedUnchecked(log)).toBe(true);
  const meanwhile = await status();
  expect(meanwhile.start_check).toBe('pending');
  expect((await consoleProblems()).some((p) => p.startsWith('its database is not checked since it started'))).toBe(true);
  expect((await call((region as RunningRegion).url, 'GET', '/readyz')).status).toBe(200);

  redisServer.resume();
  expect(await eventually(async () => (await status()).start_check === 'done')).toBe(true);
  expect(await ownState()).toBe('joining');
  expect((await consoleProblems()).some((p) => p.startsWith('its database is not checked'))).toBe(false);
  expect(log.lines.some((l) => String(l.msg).includes('is not the one it ran on before'))).toBe(true);
  await stop();
}, 60_000);

test('with its Redis down at start and back empty, a region serves once the wait ran out and raises no alarm', async () => {
  // Whatever the test before left running (it stops its region when it passes).
  redisServer.resume();
  await stop();
  await redisServer.kill();
  const { log, tookMs } = await start();
  expect(tookMs).toBeGreaterThanOrEqual(WAIT_MS);
  expect(tookMs).toBeLessThan(WAIT_MS + 5000);
  expect(warnedUnchecked(log)).toBe(true);
  expect((await status()).start_check).toBe('pending');

  await redisServer.start();
  expect(await eventually(async () => (await status()).start_check === 'done')).toBe(true);
  // It registered again in the state it runs in; nothing was marked.
  expect(await ownState()).toBe('active');
  expect(log.lines.filter((l) => Number(l.level) >= 50)).toEqual([]);
  const redis = createRedis(redisServer.url, 'restore-check-redis-down-test', { queueWhileOffline: true });
  try {
    expect((await readMembers(redis, replicationKeys(dep.file.redisKeyPrefix))).members.get('us-iowa')?.state).toBe('active');
  } finally {
    redis.disconnect();
  }
}, 60_000);
