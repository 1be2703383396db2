/**
 * A change confirmed everywhere keeps its outcome when its origin's Redis, which holds the ack records,
 * loses its data (it keeps nothing on disk): the origin's deliveries keep the ack that confirmed each of
 * them. Before, its status read "pending in every region" for the rest of the follow-up hour, and an
 * all_regions retry of its idempotent create answered 408 "keeps replicating" with nothing left to
 * replicate. Three regions, each with a Redis of its own; us-iowa's is lost.
 */
import { adminHeaders, call, createOrg, eventually, slashidHeaders, type Cluster } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { clusterWithOwnRedis, type OwnRedis } from '../support/redis-server';

const REGIONS = ['us-iowa', 'europe-belgium', 'asia-japan'];
const ONE = 'us-iowa';
const PATH = '/organizations/sso/saml/provider-credentials';
let cluster: Cluster;
let servers: Map<string, OwnRedis>;
let stop: () => Promise<void>;
let idp: IdpServer;

beforeAll(async () => {
  idp = await startIdpServer();
  ({ cluster, redis: servers, stop } = await clusterWithOwnRedis('outcome-redis-loss', REGIONS, { metadataAllowedHosts: [idp.hostPort] }));
}, 120_000);
afterAll(async () => {
  await stop?.();
  await idp?.close();
});

test('a confirmed change is still complete after its origin\'s Redis lost the acks; its idempotent retry answers 201', async () => {
  const org = await createOrg(cluster.url(ONE), 'acme', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });
  const headers = slashidHeaders(org, { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '10', 'Idempotency-Key': 'kept-outcome' });
  const body = { idp_metadata_url: idp.url('okta.xml'), label: 'kept' };
  const created = await call(cluster.url(ONE), 'POST', PATH, { body, headers });
  expect(created.status).toBe(201);
  const changeId = created.headers.get('x-change-id') as string;
  const change = async () => (await call(cluster.url(ONE), 'GET', `/admin/replication/changes/${changeId}`, { headers: adminHeaders })).body;
  const orgRoute = async () => (await call(cluster.url(ONE), 'GET', `/organizations/replication/changes/${changeId}`, { headers: slashidHeaders(org) })).body.result;
  // The origin's relay confirms it (every region acked).
  expect(await eventually(async () => (await change()).origin?.confirmed_at != null, 30_000, 200)).toBe(true);

  const lost = servers.get(ONE) as OwnRedis;
  await lost.kill();
  await lost.start();
  await new Promise((r) => setTimeout(r, 3000));

  for (const status of [await change(), await orgRoute()]) {
    expect(status).toMatchObject({ state: 'complete', complete: true, pending_regions: [], superseded: [] });
    expect(Object.values(status.applied_at).every((at) => typeof at === 'string')).toBe(true);
  }
  const retry = await call(cluster.url(ONE), 'POST', PATH, { body, headers });
  expect({ status: retry.status, replayed: retry.headers.get('idempotent-replayed') }).toEqual({ status: 201, replayed: 'true' });
  expect(retry.body.result.id).toBe(created.body.result.id);
}, 120_000);
