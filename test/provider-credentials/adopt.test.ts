/**
 * A removed region's credentials are adopted (README, Operations, "Removing a region"): only a credential's
 * home region refreshes its IdP metadata, so a region removed for good left its credentials without refresh.
 * `POST /admin/metadata-refresh/adopt` in another region makes that region their home: a replicated write of
 * each live one, due for refresh there at once. Three region processes; asia-japan is removed as the README
 * says (stopped, a config without it rolled onto the others, `npm run members -- remove`).
 */
import fs from 'node:fs';
import Redis from 'ioredis';
import { replicationKeys } from '../../src/redis';
import { REDIS_URL } from '../support/env';
import { adminHeaders, call, createOrg, eventually, runScript, slashidHeaders, startCluster, type Cluster } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';

const PATH = '/organizations/sso/saml/provider-credentials';
const REGIONS = ['us-iowa', 'europe-belgium', 'asia-japan'];
const ADOPTER = 'us-iowa';
const OBSERVER = 'europe-belgium';
const GONE = 'asia-japan';
const ALL = { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '30' };

let idp: IdpServer;
let cluster: Cluster;

beforeAll(async () => {
  idp = await startIdpServer();
  // Refreshes every few seconds, so that the adopter's refresh of an adopted credential is seen.
  cluster = await startCluster('adopt', REGIONS, { extra: { metadataAllowedHosts: [idp.hostPort], metadataRefreshIntervalSeconds: 4 } });
}, 120_000);
afterAll(async () => {
  await cluster?.stop();
  await idp?.close();
});

const adopt = (body: unknown) => call(cluster.url(ADOPTER), 'POST', '/admin/metadata-refresh/adopt', { body, headers: adminHeaders });

test("a removed region's live credentials get the adopting region as their home, everywhere, and are refreshed there", async () => {
  const gone = cluster.url(GONE);
  const org = await createOrg(cluster.url(ADOPTER), 'adopt', { headers: ALL });
  const create = async (url: string, label: string) => {
    const res = await call(url, 'POST', PATH, { body: { idp_metadata_url: idp.url('okta.xml'), label }, headers: slashidHeaders(org, ALL) });
    expect(res.status).toBe(201);
    return res.body.result.id as string;
  };
  const orphan = await create(gone, 'made in asia-japan');
  const deleted = await create(gone, 'deleted');
  expect((await call(gone, 'DELETE', `${PATH}/${deleted}`, { headers: slashidHeaders(org, ALL) })).status).toBe(204);
  const own = await create(cluster.url(OBSERVER), 'made in europe-belgium');
  const homeOf = async (region: string, id: string) => (await call(cluster.url(region), 'GET', `${PATH}/${id}/metadata`, { headers: slashidHeaders(org) })).body.result?.refresh?.home_region;
  expect(await homeOf(ADOPTER, orphan)).toBe(GONE);

  // While it is a member, its credentials are its own.
  const early = await adopt({ from_region: GONE });
  expect(early.status).toBe(409);
  expect(early.body.errors[0].message).toMatch(/asia-japan is a member of the deployment/);

  // Removed as the README says.
  await cluster.proc(GONE).stop(10_000);
  const file = cluster.deployment.file;
  fs.writeFileSync(cluster.deployment.configPath, JSON.stringify({ ...file, regions: file.regions.filter((r) => r.id !== GONE) }, null, 2));
  for (const r of [ADOPTER, OBSERVER]) {
    await cluster.proc(r).stop(10_000);
    cluster.proc(r).start();
    await cluster.proc(r).waitReady(60_000);
  }
  const removed = await runScript(cluster, 'members', ['remove', GONE]);
  expect(removed.status).toBe(0);

  const first = await adopt({ from_region: GONE });
  expect(first.status).toBe(200);
  expect(first.body).toEqual({ region: ADOPTER, from_region: GONE, adopted: 1 });
  expect(await homeOf(ADOPTER, orphan)).toBe(ADOPTER);
  expect(await eventually(async () => (await homeOf(OBSERVER, orphan)) === ADOPTER, 20_000)).toBe(true);
  // Not the deleted one, nor another region's.
  expect(await homeOf(OBSERVER, own)).toBe(OBSERVER);

  // The adopter refreshes it: listed in its schedule, with a successful fetch made there.
  const refreshedHere = async () => {
    const list = await call(cluster.url(ADOPTER), 'GET', '/admin/metadata-refresh', { headers: adminHeaders });
    const mine = (list.body.credentials as { credential_id: string; last_success_at: string | null }[]).find((c) => c.credential_id === orphan);
    return Boolean(mine?.last_success_at);
  };
  expect(await eventually(refreshedHere, 30_000, 500)).toBe(true);

  // Again: nothing is left to adopt.
  expect((await adopt({ from_region: GONE })).body).toEqual({ region: ADOPTER, from_region: GONE, adopted: 0 });
}, 240_000);

test('refused: a body that is not one region name, this region itself, and while changes delivered here wait to be applied', async () => {
  for (const body of [{}, { from_region: 'Asia Japan' }, { from_region: GONE, also: 1 }, [GONE]]) {
    const res = await adopt(body);
    expect({ body, status: res.status }).toEqual({ body, status: 400 });
    expect(res.body.errors[0].message).toMatch(/^Invalid request body|not valid JSON/);
  }
  const self = await adopt({ from_region: ADOPTER });
  expect(self.status).toBe(409);

  // An entry of the adopter's inbox its group read and has not acknowledged (taken by another consumer in
  // the same transaction as it was added, so the adopter's applier never sees it).
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  const inbox = replicationKeys(cluster.deployment.file.redisKeyPrefix).inbox(ADOPTER);
  try {
    const res = (await redis.multi().xadd(inbox, '*', 'test', 'not an event').xreadgroup('GROUP', ADOPTER, 'adopt-test', 'COUNT', 1, 'STREAMS', inbox, '>').exec()) ?? [];
    const id = String(res[0]?.[1]);
    const behind = await adopt({ from_region: GONE });
    expect(behind.status).toBe(409);
    expect(behind.body.errors[0].message).toMatch(/1 delivered changes not yet applied/);
    await redis.xack(inbox, ADOPTER, id);
    await redis.xdel(inbox, id);
    expect((await adopt({ from_region: GONE })).status).toBe(200);
  } finally {
    redis.disconnect();
  }
});
