/**
 * GET /metrics: one registry per region (two regions run in this process), request durations by route
 * pattern, consistency waits by outcome, and replication figures read from Postgres and Redis at scrape time.
 */
import Redis from 'ioredis';
import { startRegion, type RunningRegion } from '../../src/region';
import { createDeployment, REDIS_URL, type TestDeployment } from '../support/env';
import { adminHeaders, call, createOrg, eventually, slashidHeaders } from '../support/harness';
import { fixture, startIdpServer, type IdpServer } from '../support/idp-server';
import { scrape } from './support';

let deployment: TestDeployment;
let idp: IdpServer;
const running = new Map<string, RunningRegion>();
const url = (region: string) => running.get(region)?.url ?? '';
const start = async (region: string) => {
  running.set(region, await startRegion(deployment.configFor(region), { port: 0, drainTimeoutMs: 5000 }));
};

beforeAll(async () => {
  idp = await startIdpServer();
  deployment = await createDeployment('metrics', ['us-iowa', 'europe-belgium', 'asia-japan'], { metadataAllowedHosts: [idp.hostPort] });
  await start('us-iowa');
  await start('europe-belgium');
}, 60_000);
afterAll(async () => {
  for (const r of running.values()) await r.stop();
  await deployment?.cleanup();
  await idp?.close();
});

test('answers 401 without the admin token and Prometheus text with it', async () => {
  expect((await call(url('us-iowa'), 'GET', '/metrics')).status).toBe(401);
  expect((await call(url('us-iowa'), 'GET', '/metrics', { headers: { authorization: 'Bearer wrong-token-wrong' } })).status).toBe(401);
  const res = await fetch(`${url('us-iowa')}/metrics`, { headers: adminHeaders });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  const m = await scrape(url('us-iowa'));
  // Node process metrics, labelled with this region.
  expect(m.value('process_cpu_user_seconds_total', { region: 'us-iowa' })).toBeGreaterThan(0);
  expect(m.value('nodejs_heap_size_used_bytes', { region: 'us-iowa' })).toBeGreaterThan(0);
});

test('times requests by route pattern, method and status, never by raw path', async () => {
  const org = await createOrg(url('us-iowa'), 'route-labels');
  for (let i = 0; i < 3; i++) expect((await call(url('us-iowa'), 'GET', `/admin/organizations/${org.id}`, { headers: adminHeaders })).status).toBe(200);
  await call(url('us-iowa'), 'GET', '/no/such/thing/42');
  const m = await scrape(url('us-iowa'));
  const labels = { route: '/admin/organizations/:id', method: 'GET', status: '200' };
  expect(m.value('http_request_duration_seconds_count', labels)).toBe(3);
  expect(m.value('http_request_duration_seconds_bucket', { ...labels, le: '+Inf' })).toBe(3);
  expect(m.value('http_request_duration_seconds_sum', labels)).toBeGreaterThan(0);
  expect(m.value('http_request_duration_seconds_count', { route: '(unmatched)', method: 'GET', status: '404' })).toBe(1);
  expect(m.text).not.toContain(org.id);
  expect(m.text).not.toContain('/no/such/thing');
  // Each region counts only its own requests.
  const other = await scrape(url('europe-belgium'));
  expect(other.value('http_request_duration_seconds_count', labels)).toBeUndefined();
});

test("a path spelled in another case (Express matches it) is counted under the route's own pattern: no label value per spelling", async () => {
  const spellings = ['/api/v1/sso/config', '/API/V1/sso/config', '/Api/v1/sso/config', '/ORGANIZATIONS/sso/saml/provider-credentials', '/Organizations/SSO/SAML/Provider-Credentials'];
  // Without a token: answered by the prefixes' guards (401), labelled with the prefix.
  for (const path of spellings) expect((await call(url('us-iowa'), 'GET', path)).status).toBe(401);
  const org = await createOrg(url('us-iowa'), 'route-case');
  for (const path of ['/organizations/sso/saml/provider-credentials', '/ORGANIZATIONS/sso/saml/provider-credentials']) {
    expect((await call(url('us-iowa'), 'GET', path, { headers: slashidHeaders(org) })).status).toBe(200);
  }
  const m = await scrape(url('us-iowa'));
  expect(m.value('http_request_duration_seconds_count', { route: '/api/v1/sso/config', method: 'GET', status: '401' })).toBe(3);
  expect(m.value('http_request_duration_seconds_count', { route: '/organizations/sso/saml/provider-credentials/*', method: 'GET', status: '401' })).toBe(2);
  expect(m.value('http_request_duration_seconds_count', { route: '/organizations/sso/saml/provider-credentials', method: 'GET', status: '200' })).toBe(2);
  expect(m.text.toLowerCase().split('\n').filter((l) => l.startsWith('http_request_duration_seconds_count') && l.includes('route="/api/v1')).length).toBe(1);
  expect(m.text).not.toMatch(/route="[^"]*[A-Z]/);
});

test('counts consistency waits by level and outcome, and replication per origin and destination', async () => {
  // asia-japan is configured but not running: all_regions cannot be reached.
  const timedOut = await call(url('us-iowa'), 'POST', '/admin/organizations', {
    body: { name: 'waits' },
    headers: { ...adminHeaders, 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '1' },
  });
  expect(timedOut.status).toBe(408);
  await createOrg(url('us-iowa'), 'local');
  await start('asia-japan');
  await createOrg(url('us-iowa'), 'everywhere', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });

  const m = await scrape(url('us-iowa'));
  expect(m.value('consistency_wait_seconds_count', { level: 'all_regions', outcome: 'timeout' })).toBe(1);
  expect(m.value('consistency_wait_seconds_sum', { level: 'all_regions', outcome: 'timeout' })).toBeGreaterThanOrEqual(0.9);
  expect(m.value('consistency_wait_seconds_count', { level: 'all_regions', outcome: 'reached' })).toBe(1);
  expect(m.value('consistency_wait_seconds_count', { level: 'local_region', outcome: 'reached' })).toBeGreaterThanOrEqual(2);
  expect(m.value('replication_waiting_requests')).toBe(0);
  expect(m.value('replication_redis_up')).toBe(1);
  // The stream length is the region's inbox: us-iowa's changes went into the others' inboxes.
  expect((await scrape(url('europe-belgium'))).value('replication_stream_length')).toBeGreaterThan(0);
  for (const r of ['us-iowa', 'europe-belgium', 'asia-japan']) {
    expect(m.value('replication_stream_pending', { destination_region: r })).toEqual(expect.any(Number));
    expect(m.value('replication_stream_undelivered', { destination_region: r })).toEqual(expect.any(Number));
  }
  // What this process delivered to each destination: entries, and the events in them (a pack is one entry).
  const delivered = { destination_region: 'europe-belgium' };
  expect(m.value('replication_delivered_entries_total', delivered)).toBeGreaterThanOrEqual(1);
  expect(m.value('replication_delivered_events_total', delivered)).toBeGreaterThanOrEqual(m.value('replication_delivered_entries_total', delivered) ?? Infinity);
  expect(m.value('replication_outbox_unpublished')).toEqual(expect.any(Number));
  expect(m.value('replication_outbox_unconfirmed')).toEqual(expect.any(Number));

  // The receiving side: every us-iowa change applied in europe-belgium, in batches, with its lag.
  const changes = Number((await running.get('us-iowa')?.db.$queryRawUnsafe<{ n: bigint }[]>('SELECT count(*) AS n FROM replication_outbox'))?.[0]?.n);
  expect(changes).toBeGreaterThanOrEqual(4);
  const origin = { origin_region: 'us-iowa' };
  expect(await eventually(async () => (await scrape(url('asia-japan'))).value('replication_events_applied_total', origin) === changes)).toBe(true);
  expect(await eventually(async () => (await scrape(url('europe-belgium'))).value('replication_events_applied_total', origin) === changes)).toBe(true);
  const be = await scrape(url('europe-belgium'));
  expect(be.value('replication_lag_seconds', origin)).toBeGreaterThanOrEqual(0);
  expect(be.value('replication_last_applied_timestamp_seconds', origin)).toBeGreaterThan(Date.now() / 1000 - 120);
  expect(be.value('replication_apply_batch_duration_seconds_count', origin)).toBeGreaterThanOrEqual(1);
  expect(be.value('replication_apply_batch_duration_seconds_sum', origin)).toBeGreaterThan(0);
  expect(be.value('consistency_wait_seconds_count', { level: 'all_regions', outcome: 'timeout' })).toBeUndefined();
});

test('a write whose consistency timeout ran out before it could start is counted as a timeout', async () => {
  // The IdP answers after the request's 1 s: the create answers 408 having written nothing (no X-Change-Id).
  const org = await createOrg(url('us-iowa'), 'unstarted');
  idp.set('slow-unstarted.xml', fixture('okta.xml'));
  idp.slow('slow-unstarted.xml', 2500);
  const res = await call(url('us-iowa'), 'POST', '/organizations/sso/saml/provider-credentials', {
    body: { idp_metadata_url: idp.url('slow-unstarted.xml') },
    headers: slashidHeaders(org, { 'SlashID-Required-Consistency-Timeout': '1' }),
  });
  expect({ status: res.status, changeId: res.headers.get('x-change-id') }).toEqual({ status: 408, changeId: null });
  const m = await scrape(url('us-iowa'));
  expect(m.value('consistency_wait_seconds_count', { level: 'local_region', outcome: 'timeout' })).toBe(1);
});

test('shows the dead-letter stream and parked events', async () => {
  const redis = new Redis(REDIS_URL);
  const inbox = `${deployment.file.redisKeyPrefix}{repl}:changes:europe-belgium`;
  // One dead letter more than the region's inbox has entries, so the two figures cannot be mistaken for each other.
  const deadLetters = (await redis.xlen(inbox)) + 1;
  try {
    for (let i = 0; i < deadLetters; i++) await redis.xadd(`${deployment.file.redisKeyPrefix}{repl}:dead-letter`, '*', 'region', 'asia-japan', 'e', 'not json');
  } finally {
    redis.disconnect();
  }
  const db = running.get('europe-belgium')?.db;
  if (!db) throw new Error('europe-belgium is not running');
  // Two events from asia-japan parked (one of them refused for its clock), two still being retried (for two
  // reasons: the failing figure is per origin, and one reason has nothing parked).
  await db.$executeRawUnsafe(
    `INSERT INTO replication_failures (change_id, origin_region, event, failures, reason, last_error, parked_at)
     VALUES (gen_random_uuid(), 'asia-japan', '{}'::jsonb, 3, 'apply-failed', 'test', now()),
            (gen_random_uuid(), 'asia-japan', '{}'::jsonb, 1, 'clock-skew', 'test', now()),
            (gen_random_uuid(), 'asia-japan', '{}'::jsonb, 1, 'apply-failed', 'test', NULL),
            (gen_random_uuid(), 'asia-japan', '{}'::jsonb, 1, 'unknown-table', 'test', NULL)`,
  );
  const m = await scrape(url('europe-belgium'));
  expect(m.value('replication_dead_letter_length')).toBe(deadLetters);
  expect(m.samples('replication_events_parked').map((x) => [x.labels.origin_region, x.labels.reason, x.value]).sort()).toEqual([
    ['asia-japan', 'apply-failed', 1],
    ['asia-japan', 'clock-skew', 1],
  ]);
  expect(m.value('replication_events_failing', { origin_region: 'asia-japan' })).toBe(2);
  expect(m.text).toContain('# TYPE replication_events_refused_total counter');
  expect(m.value('replication_entries_lost_total')).toBe(0);
});

test('shows the metadata refresh schedule of the credentials a region is home to', async () => {
  const before = await scrape(url('us-iowa'));
  expect(before.value('metadata_refresh_due')).toBe(0);
  // Nothing fetched yet: 0, as for any timestamp that never happened.
  expect(before.value('metadata_refresh_last_success_timestamp_seconds')).toBe(0);

  const org = await createOrg(url('us-iowa'), 'refresh');
  const ids: string[] = [];
  for (const label of ['a', 'b']) {
    const res = await call(url('us-iowa'), 'POST', '/organizations/sso/saml/provider-credentials', {
      body: { idp_metadata_url: idp.url('keycloak.xml'), label },
      headers: slashidHeaders(org),
    });
    expect(res.status).toBe(201);
    ids.push(res.body.result.id as string);
  }
  const db = running.get('us-iowa')?.db;
  if (!db) throw new Error('us-iowa is not running');
  // One credential's last refresh failed an hour ago and it is due again.
  await db.$executeRawUnsafe(
    `UPDATE metadata_refresh_state SET consecutive_failures = 2, next_at = now() - interval '1 minute', last_success_at = now() - interval '1 hour'
      WHERE credential_id = $1::uuid`,
    ids[0],
  );
  const m = await scrape(url('us-iowa'));
  expect(m.value('metadata_refresh_due')).toBe(1);
  expect(m.value('metadata_refresh_failing')).toBe(1);
  const now = Date.now() / 1000;
  expect(m.value('metadata_refresh_last_success_timestamp_seconds')).toBeGreaterThan(now - 60);
  expect(m.value('metadata_refresh_oldest_success_timestamp_seconds')).toBeCloseTo(now - 3600, -2);
  // Another region is not home to them.
  expect((await scrape(url('europe-belgium'))).value('metadata_refresh_failing')).toBe(0);
});

test("a region's lag is from the newest change's commit at its origin to its apply there, not to when the count was written", async () => {
  const org = await call(url('us-iowa'), 'POST', '/admin/organizations', { body: { name: 'lag' }, headers: adminHeaders });
  expect(org.status).toBe(201);
  const changeId = org.headers.get('x-change-id');
  const progress = async () =>
    ((await call(url('europe-belgium'), 'GET', '/admin/replication', { headers: adminHeaders })).body.applied as { origin_region: string; last_change_id: string; last_event_at: string; last_applied_at: string; lag_ms: number }[])
      .find((a) => a.origin_region === 'us-iowa');
  // The count is written about a second after the apply.
  expect(await eventually(async () => (await progress())?.last_change_id === changeId, 10_000, 100)).toBe(true);
  const p = await progress();
  const status = async () => (await call(url('us-iowa'), 'GET', `/admin/replication/changes/${changeId}`, { headers: adminHeaders })).body;
  expect(await eventually(async () => (await status()).applied_at['europe-belgium'] != null)).toBe(true);
  const acked = (await status()).applied_at['europe-belgium'];
  const at = (iso: string | null | undefined) => new Date(iso ?? NaN).getTime();
  // Applied after its commit, and before the region acked it (the ack follows the apply's commit); the count
  // was written later than both.
  expect(at(p?.last_event_at)).toBeLessThanOrEqual(at(p?.last_applied_at));
  expect(at(p?.last_applied_at)).toBeLessThanOrEqual(at(acked));
  expect(p?.lag_ms).toBe(at(p?.last_applied_at) - at(p?.last_event_at));

  // The metric is the same difference in seconds; with the origin's clock ahead of this region's (the commit
  // reads later than the apply) it says 0, not a negative lag.
  const db = running.get('europe-belgium')?.db;
  const lagMetric = async () => (await scrape(url('europe-belgium'))).value('replication_lag_seconds', { origin_region: 'us-iowa' });
  await db?.$executeRawUnsafe("UPDATE replication_progress SET last_event_at = last_applied_at - interval '2.5 seconds' WHERE origin_region = 'us-iowa'");
  expect(await lagMetric()).toBe(2.5);
  await db?.$executeRawUnsafe("UPDATE replication_progress SET last_event_at = last_applied_at + interval '5 seconds' WHERE origin_region = 'us-iowa'");
  expect(await lagMetric()).toBe(0);
});

test('counts the API requests admission control admitted, per gate', async () => {
  const org = await createOrg(url('us-iowa'), 'admitted');
  const admitted = async (gate: string) => (await scrape(url('us-iowa'))).value('admission_admitted_total', { gate }) ?? -1;
  const [reads, writes] = [await admitted('reads'), await admitted('writes')];
  for (let i = 0; i < 3; i++) {
    expect((await call(url('us-iowa'), 'GET', '/organizations/sso/saml/provider-credentials', { headers: slashidHeaders(org) })).status).toBe(200);
  }
  expect(await admitted('reads')).toBe(reads + 3);
  expect(await admitted('writes')).toBe(writes);
});
