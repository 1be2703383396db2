/**
 * The fault schedule's load and verdict on its other organizations (scripts/harness/org-load.ts, verify.ts
 * verifyOrgs), on two region processes without faults (a 300 ms tombstone collection cycle): two
 * organizations written from both regions, one deleted while its clients write, pass the verdict; and each
 * of its checks fails on what it looks for (a kept organization judged as deleted, a deleted one as kept,
 * live rows of an organization that is not swept).
 */
import { RegionClient } from '../../scripts/harness/client';
import { OrgLoad, type OrgLoadResult } from '../../scripts/harness/org-load';
import { checkDeletedOrg, checkKeptOrg, verifyOrgs, waitSwept } from '../../scripts/harness/verify';
import { ADMIN_TOKEN } from '../support/env';
import { eventually, startCluster, type Cluster } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';

const US = 'us-iowa';
const EU = 'europe-belgium';
let cluster: Cluster;
let idp: IdpServer;
let clients: RegionClient[] = [];
let dbUrls: Record<string, string> = {};

beforeAll(async () => {
  idp = await startIdpServer();
  cluster = await startCluster('org-verdict', [US, EU], {
    // As the fault schedule's stack: the load writes past the per-organization quotas.
    extra: { metadataAllowedHosts: [idp.hostPort], tombstoneCollection: { intervalMs: 300 }, maxCredentialsPerOrg: 100_000, metadataFetchConcurrency: { perOrg: 100, perRegion: 1000 } },
  });
  clients = [US, EU].map((r) => new RegionClient(r, cluster.url(r), 4));
  dbUrls = Object.fromEntries(cluster.deployment.file.regions.map((r) => [r.id, r.databaseUrl]));
}, 90_000);
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await cluster?.stop();
  await idp?.close();
});

test('an organization deleted while clients in both regions write to it: its writes refused after, nothing of it live or served; the kept one holds every acknowledged write', async () => {
  const others = await OrgLoad.setup(clients, ADMIN_TOKEN, {
    orgs: 2, deleteShare: 0.5, clientsPerOrg: 2, durationMs: 2000, label: 'verdict', say: () => undefined,
    load: { allRegionsShare: 0.2, allRegionsTimeoutS: 2, idpUrl: idp.url('okta.xml'), patchShare: 0.15, deleteShare: 0.05 },
  });
  const [gone, kept] = others.orgs;
  expect(gone?.delete?.consistency).toBe('local_region');
  expect(kept?.delete).toBeNull();
  others.start(Date.now());
  expect(await eventually(async () => gone?.delete?.acked != null, 30_000)).toBe(true);
  // Its clients go on writing for a while, in both regions, and are refused once the delete is there.
  await new Promise((r) => setTimeout(r, 1500));
  await others.stopLoads();
  const run: OrgLoadResult = await others.finish();
  expect(run.unexpected).toEqual([]);
  const [goneRun, keptRun] = run.orgs;
  for (const x of run.orgs) expect({ org: x.org.org.id, ...pick(x.load.figures), samples: x.load.figures.samples }).toEqual({ org: x.org.org.id, server5xx: 0, otherStatus: 0, servedAfterRefusal: 0, allRegionsEarly: 0, samples: [] });
  expect(goneRun?.load.figures.refusedAfterDelete).toBeGreaterThan(0);
  expect(keptRun?.load.figures.refusedAfterDelete).toBe(0);
  expect(keptRun?.load.acked.size).toBeGreaterThan(0);

  const v = await verifyOrgs(clients, ADMIN_TOKEN, dbUrls, run.orgs, Date.now(), 30_000);
  expect({ lost: v.lost, undeleted: v.undeleted, wrongLabel: v.wrongLabel, served: v.served, live: v.swept.live }).toEqual({ lost: [], undeleted: [], wrongLabel: [], served: [], live: {} });
  expect(v.swept.ms).not.toBeNull();
  expect(v.reconverged?.ms).not.toBeNull();

  // The checks fail on what they look for.
  if (!gone || !kept) throw new Error('two organizations');
  const servedKept = await checkDeletedOrg(clients, ADMIN_TOKEN, kept.org, kept.token, []);
  expect(servedKept.map((s) => `${s.region} ${s.what} ${s.status}`).sort()).toEqual(
    [US, EU].flatMap((r) => [`${r} admin GET 200`, `${r} credential list (its key) 200`, `${r} Infisical config (its token) 200`]).sort(),
  );
  expect((await checkKeptOrg(clients, gone.org, gone.token)).map((s) => `${s.region} ${s.status}`)).toEqual([`${US} 401`, `${US} 401`, `${EU} 401`, `${EU} 401`]);
  const notSwept = await waitSwept(dbUrls, [kept.org.id], Date.now(), 600);
  expect(notSwept.ms).toBeNull();
  expect(Object.keys(notSwept.live).sort()).toEqual([EU, US]);
}, 120_000);

function pick(f: { server5xx: number; otherStatus: number; servedAfterRefusal: number; allRegionsEarly: number }) {
  return { server5xx: f.server5xx, otherStatus: f.otherStatus, servedAfterRefusal: f.servedAfterRefusal, allRegionsEarly: f.allRegionsEarly };
}
