/**
 * A local write racing an apply of the same key (issue G, item 5): the applier takes the same per-key
 * locks as local writes, in a fixed order, and a local write that still collides (a deadlock, a merge-rule
 * refusal) runs again. Two region processes; one region PATCHes and DELETEs credentials while the other
 * PATCHes the same credentials: no answer is a 5xx, and the regions converge.
 */
import { adminHeaders, call, createOrg, eventually, slashidHeaders, startCluster, type Cluster } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';

const PATH = '/organizations/sso/saml/provider-credentials';
const REGIONS = ['us-iowa', 'europe-belgium'];
const ALL = { 'SlashID-Required-Consistency': 'all_regions' };
let cluster: Cluster;
let idp: IdpServer;

beforeAll(async () => {
  idp = await startIdpServer();
  cluster = await startCluster('applyrace', REGIONS, { extra: { metadataAllowedHosts: [idp.hostPort] } });
}, 90_000);
afterAll(async () => {
  await cluster?.stop();
  await idp?.close();
});

test('local PATCH and DELETE racing remote changes of the same credentials answer no 5xx', async () => {
  const [a = '', b = ''] = REGIONS.map((r) => cluster.url(r));
  const org = await createOrg(a, 'race', { headers: ALL });
  const h = slashidHeaders(org);
  const ids: string[] = [];
  for (let i = 0; i < 16; i++) {
    const res = await call(a, 'POST', PATH, { body: { idp_metadata_url: idp.url('okta.xml'), label: `c${i}` }, headers: slashidHeaders(org, ALL) });
    expect(res.status).toBe(201);
    ids.push(res.body.result.id);
  }
  const statuses: number[] = [];
  const patches = (url: string, id: string, n: number, tag: string) =>
    (async () => {
      for (let i = 0; i < n; i++) statuses.push((await call(url, 'PATCH', `${PATH}/${id}`, { body: { label: `${tag}${i}` }, headers: h })).status);
    })();
  await Promise.all(
    ids.flatMap((id, i) => [
      // In one region: PATCHes, then (for half of them) a DELETE, each replicated to the other region...
      (async () => {
        await patches(a, id, 6, 'a');
        if (i % 2 === 0) statuses.push((await call(a, 'DELETE', `${PATH}/${id}`, { headers: h })).status);
      })(),
      // ...where local PATCHes of the same credential run meanwhile.
      patches(b, id, 12, 'b'),
    ]),
  );
  expect(statuses.filter((s) => s >= 500)).toEqual([]);
  expect(statuses.every((s) => s === 204 || s === 404)).toBe(true);
  expect(statuses.filter((s) => s === 204).length).toBeGreaterThan(ids.length * 6);

  const digest = async (url: string) => JSON.stringify((await call(url, 'GET', '/admin/replication/digest', { headers: adminHeaders })).body.tables);
  expect(await eventually(async () => (await digest(a)) === (await digest(b)), 20_000, 200)).toBe(true);
  for (const url of [a, b]) {
    const status = (await call(url, 'GET', '/admin/replication', { headers: adminHeaders })).body;
    expect(status.failures).toMatchObject({ failing: 0, parked: 0 });
  }
}, 180_000);
