/**
 * A SlashID create that lost only its Idempotency-Key (the same key sent at once to another region, whose
 * create came first), read back in its own region before the other create's key arrives there: its change
 * status, and an all_regions replay of the key. One region in the test process (real HTTP, Postgres and
 * Redis); europe-belgium's judgement is recorded in the ack record by hand, as that region's applier would.
 */
import { idempotencyRowId } from '../../src/idempotency/request';
import { CREATE_ENDPOINT } from '../../src/provider-credentials/routes';
import { createRedis, replicationKeys, type Redis } from '../../src/redis';
import { formatVersion } from '../../src/replication/hlc';
import { REDIS_URL } from '../support/env';
import { call, createOrg, slashidHeaders } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { startInProcess, type InProcessRegion } from '../support/in-process';

const PATH = '/organizations/sso/saml/provider-credentials';
let r: InProcessRegion;
let idp: IdpServer;
let redis: Redis;

beforeAll(async () => {
  idp = await startIdpServer();
  r = await startInProcess('idem-keylost', ['us-iowa', 'europe-belgium'], { metadataAllowedHosts: [idp.hostPort] });
  redis = createRedis(REDIS_URL, 'key-lost-replay-test');
});
afterAll(async () => {
  redis?.disconnect();
  await r?.stop();
  await idp?.close();
});

test('a create that lost only its key reads applied, and its all_regions replay answers the 409 that names the credential kept', async () => {
  const org = await createOrg(r.url, 'acme');
  const body = { idp_metadata_url: idp.url('okta.xml'), label: 'Okta prod' };
  const key = 'sent-to-two-regions';
  const created = await call(r.url, 'POST', PATH, { body, headers: slashidHeaders(org, { 'Idempotency-Key': key }) });
  expect(created.status).toBe(201);
  const id = created.body.result.id as string;
  const changeId = created.headers.get('x-change-id') ?? '';
  // europe-belgium held the same key from a create of its own, made a second earlier: this change's key row
  // lost there (the first row of the change that lost; its credential and metadata rows held).
  const version = formatVersion({ wall: Date.now() - 1000, counter: 0, region: 'europe-belgium' });
  const keys = replicationKeys(r.deployment.file.redisKeyPrefix);
  await redis.hset(keys.ack(changeId), 'europe-belgium', `superseded:idempotency_keys:${idempotencyRowId(org.id, CREATE_ENDPOINT, key)}:${version}@${new Date().toISOString()}`);

  const status = await call(r.url, 'GET', `/organizations/replication/changes/${changeId}`, { headers: slashidHeaders(org) });
  expect(status.body.result).toMatchObject({ state: 'complete', complete: true, pending_regions: [], superseded: [] });
  expect(status.body.result.applied_at['europe-belgium']).toEqual(expect.any(String));
  expect(status.body.result.idempotency_key).toMatchObject({ state: 'superseded', superseded: [{ region: 'europe-belgium', winner: { table: 'idempotency_keys', originRegion: 'europe-belgium' } }] });

  // The key row here is still this create's (the other create has not arrived): an all_regions retry replays
  // it, and answers as the first request would have under all_regions, not "not kept" of a kept credential.
  const replay = await call(r.url, 'POST', PATH, { body, headers: slashidHeaders(org, { 'Idempotency-Key': key, 'SlashID-Required-Consistency': 'all_regions' }) });
  expect({ status: replay.status, replayed: replay.headers.get('idempotent-replayed') }).toEqual({ status: 409, replayed: 'true' });
  expect(replay.headers.get('location')).toBe(`${PATH}/${id}`);
  expect(replay.body.errors[0].message).toContain(`kept as a second one, ${PATH}/${id}`);
  expect(replay.body.errors[0].message).not.toContain('not kept');
  expect(await r.region.db.samlProviderCredential.count({ where: { orgId: org.id, deletedAt: null } })).toBe(1);
});
