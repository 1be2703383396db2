/**
 * One region started inside the test process (real Postgres, real Redis, real HTTP on a free port),
 * for API tests that do not need several processes.
 */
import type { ConfigFile } from '../../src/config-schema';
import { startRegion, type RegionOptions, type RunningRegion } from '../../src/region';
import { createDeployment, type TestDeployment } from './env';

export interface InProcessRegion {
  deployment: TestDeployment;
  region: RunningRegion;
  url: string;
  stop(): Promise<void>;
}

export async function startInProcess(
  label: string,
  regionIds = ['us-iowa'],
  extra: Partial<ConfigFile> = {},
  which = regionIds[0],
  opts: RegionOptions = {},
): Promise<InProcessRegion> {
  // The regions not started here get a database only if a test starts them (their start creates it).
  const deployment = await createDeployment(label, regionIds, extra, {}, { absentDatabases: regionIds.filter((r) => r !== which) });
  const region = await startRegion(deployment.configFor(which ?? 'us-iowa'), { port: 0, drainTimeoutMs: 5000, ...opts });
  return {
    deployment,
    region,
    url: region.url,
    async stop() {
      await region.stop();
      await deployment.cleanup();
    },
  };
}
