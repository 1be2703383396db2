/**
 * An Idempotency-Key reused after it expired, when one region's cleanup deleted the old key row and
 * another's has not run yet (each region runs its own, hourly): the new key row replaces the old one
 * there too, as if that cleanup had just run, instead of losing to the old row's earlier create (a false
 * 409 for the write, and a key row that stays different: a later retry there would create again).
 * And the all_regions replay of a key stored longer ago than the follow-up window (an hour), whose change is
 * known nowhere any more: it answers the stored answer at once.
 */
import { Client } from 'pg';
import { createRedis, replicationKeys } from '../../src/redis';
import { adminHeaders, call, createOrg, eventually, slashidHeaders, startCluster, type Cluster } from '../support/harness';
import { REDIS_URL } from '../support/env';
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

async function sql<R>(region: string, text: string, values: unknown[] = []): Promise<R[]> {
  const url = cluster.deployment.file.regions.find((r) => r.id === region)?.databaseUrl ?? '';
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(text, values)).rows as R[];
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

// The change's records (its origin's outbox row and ack record) are kept an hour past its confirmation; a
// replay after that has only the stored answer, and must not wait with a 408 for a change nothing will ack again.
const ONE = 'us-iowa';
test('an all_regions replay of a key older than the follow-up window, whose change is forgotten, answers the stored 201 at once', async () => {
  const org = await createOrg(cluster.url(ONE), 'acme-long-ago', { headers: ALL });
  const body = { idp_metadata_url: idp.url('okta.xml'), label: 'long ago' };
  const headers = (timeout: string) =>
    slashidHeaders(org, { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': timeout, 'Idempotency-Key': 'long-ago' });
  const created = await call(cluster.url(ONE), 'POST', PATH, { body, headers: headers('20') });
  expect(created.status).toBe(201);
  const changeId = created.headers.get('x-change-id') as string;
  const change = async () => (await call(cluster.url(ONE), 'GET', `/admin/replication/changes/${changeId}`, { headers: adminHeaders })).body;
  expect(await eventually(async () => (await change()).origin?.confirmed_at != null, 30_000, 200)).toBe(true);

  // Two hours on: the key is still live (24 h), and the change's records, kept an hour past its
  // confirmation, have expired: its outbox row (and deliveries) in its origin, its ack record in Redis.
  for (const r of REGIONS) await sql(r, "UPDATE idempotency_keys SET expires_at = expires_at - interval '2 hours', created_at = created_at - interval '2 hours' WHERE idempotency_key = 'long-ago'");
  await sql(ONE, 'DELETE FROM replication_deliveries WHERE change_id = $1::uuid', [changeId]);
  await sql(ONE, 'DELETE FROM replication_outbox WHERE change_id = $1::uuid', [changeId]);
  const redis = createRedis(REDIS_URL, 'test:cmd', { queueWhileOffline: true });
  try {
    await redis.del(replicationKeys(cluster.deployment.file.redisKeyPrefix).ack(changeId));
  } finally {
    redis.disconnect();
  }
  expect(await call(cluster.url(ONE), 'GET', `/admin/replication/changes/${changeId}`, { headers: adminHeaders })).toMatchObject({ status: 404 });

  const replay = await call(cluster.url(ONE), 'POST', PATH, { body, headers: headers('3') });
  expect({ status: replay.status, replayed: replay.headers.get('idempotent-replayed') }).toEqual({ status: 201, replayed: 'true' });
  expect(replay.body.result.id).toBe(created.body.result.id);
}, 120_000);
