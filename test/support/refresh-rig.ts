/**
 * For tests of the metadata refresh job: one region in the test process that may fetch from a local IdP
 * server, an organization in it, and a MetadataRefresher of the test's own, ticked by hand (runOnce). The
 * region runs without its own refresher: that one ticks every 30 s, and a tick in the middle of a test
 * refreshed a credential the test had made due (CI, stop 64: refresh-sweep's re-pointed legacy credential got a
 * second write). Registers its beforeAll/afterAll; the fields are set once beforeAll ran.
 */
import type { ConfigFile } from '../../src/config-schema';
import type { Feature } from '../../src/feature';
import { FEATURES } from '../../src/features';
import { providerCredentialsFeature } from '../../src/provider-credentials/feature';
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

/** The feature as it is, without what it starts (the provider-credentials feature: its refresher). */
function withoutStart(f: Feature): Feature {
  const copy = { ...f };
  delete copy.start;
  return copy;
}

/** `extra`: more configuration, or a function of the IdP server that returns it (to name its port). */
export function useRefreshRig(label: string, extra: Partial<ConfigFile> | ((idp: IdpServer) => Partial<ConfigFile>) = {}): RefreshRig {
  const rig = {} as RefreshRig;
  beforeAll(async () => {
    rig.idp = await startIdpServer();
    const features = FEATURES.map((f) => (f === providerCredentialsFeature ? withoutStart(f) : f));
    const more = typeof extra === 'function' ? extra(rig.idp) : extra;
    rig.r = await startInProcess(label, ['us-iowa'], { metadataAllowedHosts: [rig.idp.hostPort], ...more }, 'us-iowa', { features });
    rig.org = await createOrg(rig.r.url, label);
    rig.refresher = new MetadataRefresher({ db: rig.r.region.db, repl: rig.r.region.replication.repl, redis: rig.r.region.replication.redis, config: rig.r.deployment.configFor('us-iowa'), log: rig.r.region.log });
  });
  afterAll(async () => {
    await rig.r?.stop();
    await rig.idp?.close();
  });
  return rig;
}
