/**
 * An all_regions replay of an idempotent request in a region other than the one that first served it, with
 * a Redis per region (as deployed): the change's acks are recorded in its origin's Redis, which the
 * replaying region does not hear, so the replay reads them there (the key row names the origin). With one
 * Redis for every region (cross-region.test.ts) the replay hears every origin's channel instead.
 */
import { call, createOrg, slashidHeaders, startCluster, type Cluster } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { ownRedis, type OwnRedis } from '../support/redis-server';

const PATH = '/organizations/sso/saml/provider-credentials';
const REGIONS = ['us-iowa', 'europe-belgium'];
const ALL = { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '10' };

let cluster: Cluster;
let idp: IdpServer;
const redis: OwnRedis[] = [];

beforeAll(async () => {
  idp = await startIdpServer();
  for (let i = 0; i < REGIONS.length; i++) {
    const s = await ownRedis();
    await s.start();
    redis.push(s);
  }
  cluster = await startCluster('idem-ownredis', REGIONS, {
    extra: { metadataAllowedHosts: [idp.hostPort] },
    regionConfig: Object.fromEntries(REGIONS.map((r, i) => [r, { redisUrl: redis[i]?.url }])),
  });
}, 120_000);
afterAll(async () => {
  await cluster?.stop();
  await idp?.close();
  for (const s of redis) await s.kill();
});

test('the replay in the other region answers as soon as every region holds the change, not with a 408 at its timeout', async () => {
  const org = await createOrg(cluster.url('us-iowa'), 'acme', { headers: ALL });
  const body = { idp_metadata_url: idp.url('okta.xml'), label: 'Okta prod' };
  const first = await call(cluster.url('us-iowa'), 'POST', PATH, { body, headers: slashidHeaders(org, { ...ALL, 'Idempotency-Key': 'own-redis' }) });
  expect(first.status).toBe(201);
  const started = Date.now();
  const retry = await call(cluster.url('europe-belgium'), 'POST', PATH, { body, headers: slashidHeaders(org, { ...ALL, 'Idempotency-Key': 'own-redis' }) });
  expect(retry.status).toBe(201);
  expect(retry.headers.get('idempotent-replayed')).toBe('true');
  expect(retry.body).toEqual(first.body);
  expect(Date.now() - started).toBeLessThan(9000); // answered, not timed out
});
