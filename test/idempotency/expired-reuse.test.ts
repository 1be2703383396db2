/**
 * An Idempotency-Key reused after it expired, when one region's cleanup deleted the old key row and
 * another's has not run yet (each region runs its own, hourly): the new key row replaces the old one
 * there too, as if that cleanup had just run, instead of losing to the old row's earlier create (a false
 * 409 for the write, and a key row that stays different: a later retry there would create again).
 */
import { Client } from 'pg';
import { call, createOrg, eventually, slashidHeaders, startCluster, type Cluster } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';

const PATH = '/organizations/sso/saml/provider-credentials';
const REGIONS = ['us-iowa', 'europe-belgium'];
const ALL = { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '10' };

let cluster: Cluster;
let idp: IdpServer;

beforeAll(async () => {
  idp = await startIdpServer();
  cluster = await startCluster('idem-expired', REGIONS, { extra: { metadataAllowedHosts: [idp.hostPort] } });
}, 120_000);
afterAll(async () => {
  await cluster?.stop();
  await idp?.close();
});

async function sql<R>(region: string, text: string): Promise<R[]> {
  const url = cluster.deployment.file.regions.find((r) => r.id === region)?.databaseUrl ?? '';
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(text)).rows as R[];
  } finally {
    await c.end();
  }
}

test('a key reused after one region\'s cleanup deleted it and before another\'s answers 201 and leaves one live key row everywhere', async () => {
  const org = await createOrg(cluster.url('us-iowa'), 'acme', { headers: ALL });
  const post = (region: string, label: string) =>
    call(cluster.url(region), 'POST', PATH, { body: { idp_metadata_url: idp.url('okta.xml'), label }, headers: slashidHeaders(org, { ...ALL, 'Idempotency-Key': 'reused' }) });
  expect((await post('us-iowa', 'first')).status).toBe(201);
  // Three days on: the key long expired in both regions; us-iowa's cleanup pass ran, europe-belgium's not yet.
  for (const r of REGIONS) await sql(r, "UPDATE idempotency_keys SET expires_at = now() - interval '3 days', created_at = now() - interval '4 days' WHERE idempotency_key = 'reused'");
  await sql('us-iowa', "DELETE FROM idempotency_keys WHERE expires_at < now() - interval '1 day'");
  const second = await post('us-iowa', 'second');
  expect(second.status).toBe(201);
  const labels = async (region: string) =>
    ((await call(cluster.url(region), 'GET', PATH, { headers: slashidHeaders(org) })).body.result as { label: string }[]).map((c) => c.label).sort();
  expect(await labels('europe-belgium')).toEqual(['first', 'second']);
  // One live key row, the new one, in both regions: a retry in europe-belgium replays it.
  for (const r of REGIONS) {
    expect(await eventually(async () => (await sql<{ live: boolean }>(r, "SELECT expires_at > now() AS live FROM idempotency_keys WHERE idempotency_key = 'reused'"))[0]?.live === true, 5000, 100)).toBe(true);
  }
  const retry = await post('europe-belgium', 'second');
  expect(retry.status).toBe(201);
  expect(retry.headers.get('idempotent-replayed')).toBe('true');
  expect(retry.body).toEqual(second.body);
  expect(await labels('europe-belgium')).toEqual(['first', 'second']);
});
