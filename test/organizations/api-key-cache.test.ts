/**
 * API keys are checked from an in-process cache (src/organizations/api-key-cache.ts) that each region drops
 * when its database announces a change to api_keys or organizations. Regions are real processes.
 */
import { Client } from 'pg';
import { adminHeaders, call, createOrg, eventually, slashidHeaders, startCluster, type Cluster } from '../support/harness';

const LIST = '/organizations/sso/saml/provider-credentials';
const ALL = { 'SlashID-Required-Consistency': 'all_regions' };

let cluster: Cluster;
let europeDb: Client;
beforeAll(async () => {
  cluster = await startCluster('key-cache', ['us-iowa', 'europe-belgium']);
  europeDb = new Client({ connectionString: cluster.deployment.file.regions[1]?.databaseUrl });
  await europeDb.connect();
});
afterAll(async () => {
  await europeDb?.end();
  await cluster?.stop();
});

const list = (region: string, org: { id: string; api_key: string }) => call(cluster.url(region), 'GET', LIST, { headers: slashidHeaders(org) });

test('a key rotated in one region no longer works in another once the all_regions rotation answered', async () => {
  const org = await createOrg(cluster.url('us-iowa'), 'rotating', { headers: ALL });
  // Twice: the second check is answered from europe-belgium's cache.
  expect((await list('europe-belgium', org)).status).toBe(200);
  expect((await list('europe-belgium', org)).status).toBe(200);
  const rotated = await call(cluster.url('us-iowa'), 'POST', `/admin/organizations/${org.id}/api-keys`, { headers: { ...adminHeaders, ...ALL } });
  expect(rotated.status).toBe(201);
  const old = await list('europe-belgium', org);
  expect(old.status).toBe(401);
  expect(old.body.errors[0].message).toMatch(/not valid/);
  expect((await list('us-iowa', org)).status).toBe(401);
  expect((await list('europe-belgium', { id: org.id, api_key: rotated.body.api_key })).status).toBe(200);
});

test('keeps answering from memory until the database announces a change, then reads the key again', async () => {
  // Revoke the key without announcing it (the trigger off): the cached key still works, which is what a
  // cache does; nothing but a hand-made change of this kind goes past the trigger. Any other statement on
  // api_keys in that region in between (the tombstone collector's DELETE, a change delivered twice and
  // applied again) announces a change too and drops the cache: then the check runs again with a new key.
  let org = { id: '', api_key: '' };
  let cached = false;
  for (let attempt = 0; attempt < 3 && !cached; attempt++) {
    org = await createOrg(cluster.url('europe-belgium'), `behind-the-back-${attempt}`);
    expect((await list('europe-belgium', org)).status).toBe(200);
    await europeDb.query('BEGIN');
    await europeDb.query('ALTER TABLE api_keys DISABLE TRIGGER api_keys_auth_changed');
    await europeDb.query('UPDATE api_keys SET deleted_at = now() WHERE org_id = $1', [org.id]);
    await europeDb.query('ALTER TABLE api_keys ENABLE TRIGGER api_keys_auth_changed');
    await europeDb.query('COMMIT');
    cached = (await list('europe-belgium', org)).status === 200;
  }
  expect(cached).toBe(true);
  // Any statement on api_keys announces a change when it commits (even one that changes no row).
  await europeDb.query('UPDATE api_keys SET key_hash = key_hash WHERE false');
  // The notification reaches the region's listener asynchronously after that commit.
  expect(await eventually(async () => (await list('europe-belgium', org)).status === 401, 10_000)).toBe(true);
  expect((await list('europe-belgium', org)).status).toBe(401);
});
