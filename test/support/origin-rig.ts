/**
 * One region (REGION) in the test process (real HTTP, Postgres and Redis) whose origin (ORIGIN), not running,
 * has a Redis of its own that a test can pause: for the acks a region owes an origin (parked-applied-ack,
 * removal-owed-acks). Call it at a test file's top level: its fields are set before the file's tests (beforeAll)
 * and everything stops after them. `beforeStart` writes what the region must find in its Redis when it starts.
 */
import pino from 'pino';
import type { ConfigFile } from '../../src/config-schema';
import { createRedis, type Redis } from '../../src/redis';
import { startRegion, type RunningRegion } from '../../src/region';
import { ORIGIN, REGION } from './applier-rig';
import { createDeployment, REDIS_URL, type TestDeployment } from './env';
import { logLines } from './log-lines';
import { ownRedis, type OwnRedis } from './redis-server';

export interface OriginRig {
  deployment: TestDeployment;
  region: RunningRegion;
  originRedis: OwnRedis;
  /** The region's own Redis. */
  own: Redis;
  /** The origin's Redis. */
  theirs: Redis;
  /** The region's log lines. */
  lines: ReturnType<typeof logLines>['lines'];
  /** How often the region logged that it could not send the ack of a parked change it applied. */
  notSent(): number;
}

export function originRig(label: string, extra: Partial<ConfigFile>, beforeStart?: (r: Pick<OriginRig, 'deployment' | 'own' | 'originRedis'>) => Promise<void>): OriginRig {
  const { lines, sink } = logLines();
  const rig = {
    lines,
    notSent: () => lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('applied (parked before), but could not ack')).length,
  } as OriginRig;
  beforeAll(async () => {
    rig.originRedis = await ownRedis();
    await rig.originRedis.start();
    // The origin is played by the test (no region runs there): no database of its own.
    rig.deployment = await createDeployment(label, [ORIGIN, REGION], extra, { [ORIGIN]: { redisUrl: rig.originRedis.url } }, { absentDatabases: [ORIGIN] });
    rig.own = createRedis(REDIS_URL, `${label}-test`, { queueWhileOffline: true });
    rig.theirs = createRedis(rig.originRedis.url, `${label}-test`, { queueWhileOffline: true });
    await beforeStart?.(rig);
    rig.region = await startRegion(rig.deployment.configFor(REGION), { port: 0, drainTimeoutMs: 5000, log: pino({ level: 'info', base: { region: REGION } }, sink) });
  }, 60_000);
  afterAll(async () => {
    rig.originRedis?.resume();
    await rig.region?.stop();
    rig.own?.disconnect();
    rig.theirs?.disconnect();
    await rig.originRedis?.kill();
    await rig.deployment?.cleanup();
  });
  return rig;
}
