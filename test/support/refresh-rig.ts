/**
 * For tests of the metadata refresh job: one region in the test process that may fetch from a local IdP
 * server, an organization in it, and a MetadataRefresher of the test's own, ticked by hand (runOnce). The
 * region's own refresher ticks every 30 s at the earliest (a quarter of the refresh interval). Registers
 * its beforeAll/afterAll; the fields are set once beforeAll ran.
 */
import type { ConfigFile } from '../../src/config-schema';
import { MetadataRefresher } from '../../src/provider-credentials/metadata-refresh';
import { createOrg } from './harness';
import { startIdpServer, type IdpServer } from './idp-server';
import { startInProcess, type InProcessRegion } from './in-process';

export interface RefreshRig {
  r: InProcessRegion;
  idp: IdpServer;
  org: { id: string; api_key: string };
  refresher: MetadataRefresher;
}

export function useRefreshRig(label: string, extra: Partial<ConfigFile> = {}): RefreshRig {
  const rig = {} as RefreshRig;
  beforeAll(async () => {
    rig.idp = await startIdpServer();
    rig.r = await startInProcess(label, ['us-iowa'], { metadataAllowedHosts: [rig.idp.hostPort], ...extra });
    rig.org = await createOrg(rig.r.url, label);
    rig.refresher = new MetadataRefresher({ db: rig.r.region.db, repl: rig.r.region.replication.repl, config: rig.r.deployment.configFor('us-iowa'), log: rig.r.region.log });
  });
  afterAll(async () => {
    await rig.r?.stop();
    await rig.idp?.close();
  });
  return rig;
}
