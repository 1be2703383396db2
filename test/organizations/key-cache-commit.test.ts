/**
 * A rotated key stops working before the rotation's writer is answered: in the region that took it, and
 * with all_regions in every region, whenever the database's notification of the change reaches the API-key
 * cache (api-key-cache.ts). A CI run saw the old key still work on the request right after its rotation
 * (the notification came later than the next request). Two regions in the test process, each with its own
 * database and HTTP port; each cache's notifications are held back here for 3 s, so that only what the
 * process does itself on commit can take the old key out in time.
 */
import { apiKeyCacheOf } from '../../src/organizations/api-key-cache';
import { startRegion, type RunningRegion } from '../../src/region';
import { adminHeaders, call, createOrg, eventually, slashidHeaders } from '../support/harness';
import { createDeployment, type TestDeployment } from '../support/env';

const LIST = '/organizations/sso/saml/provider-credentials';
let deployment: TestDeployment;
let home: RunningRegion;
let other: RunningRegion;

const start = (region: string) => startRegion(deployment.configFor(region), { port: 0, drainTimeoutMs: 5000 });

/** Holds back the notifications `region`'s cache receives by `ms`. */
function lateNotifications(region: RunningRegion, ms: number): void {
  const cache = apiKeyCacheOf(region.db);
  if (!cache) throw new Error('the region keeps no API-key cache');
  const now = cache.invalidate.bind(cache);
  cache.invalidate = () => void setTimeout(now, ms);
}

beforeAll(async () => {
  deployment = await createDeployment('keycache', ['us-iowa', 'europe-belgium']);
  home = await start('us-iowa');
  other = await start('europe-belgium');
  for (const r of [home, other]) {
    expect(await eventually(async () => apiKeyCacheOf(r.db)?.active === true)).toBe(true);
    lateNotifications(r, 3000);
  }
});

afterAll(async () => {
  await home?.stop();
  await other?.stop();
  await deployment?.cleanup();
});

test('the previous key stops working in the rotating region before the rotation is answered', async () => {
  const org = await createOrg(home.url, 'rotate-here');
  // The old key is in the cache (looked up, then answered from memory).
  for (let i = 0; i < 2; i++) expect((await call(home.url, 'GET', LIST, { headers: slashidHeaders(org) })).status).toBe(200);
  const rotated = await call(home.url, 'POST', `/admin/organizations/${org.id}/api-keys`, { headers: adminHeaders });
  expect(rotated.status).toBe(201);
  expect((await call(home.url, 'GET', LIST, { headers: slashidHeaders(org) })).status).toBe(401);
  expect((await call(home.url, 'GET', LIST, { headers: slashidHeaders({ id: org.id, api_key: rotated.body.api_key }) })).status).toBe(200);
});

test('with all_regions, the previous key stops working in every region before the rotation is answered', async () => {
  const org = await createOrg(home.url, 'rotate-everywhere');
  expect(await eventually(async () => (await call(other.url, 'GET', LIST, { headers: slashidHeaders(org) })).status === 200)).toBe(true);
  expect((await call(other.url, 'GET', LIST, { headers: slashidHeaders(org) })).status).toBe(200);
  const rotated = await call(home.url, 'POST', `/admin/organizations/${org.id}/api-keys`, {
    headers: { ...adminHeaders, 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '30' },
  });
  expect(rotated.status).toBe(201);
  expect((await call(other.url, 'GET', LIST, { headers: slashidHeaders(org) })).status).toBe(401);
  expect((await call(other.url, 'GET', LIST, { headers: slashidHeaders({ id: org.id, api_key: rotated.body.api_key }) })).status).toBe(200);
});
