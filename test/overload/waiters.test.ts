/**
 * An all_regions write gives its admission slot back once committed: with one write slot and a paused
 * peer, many writes commit and wait at once (none holds the slot or a connection while it waits), and
 * once the peer resumes every one of them answers 2xx.
 */
import { call, adminHeaders, createOrg, eventually, slashidHeaders, startCluster, type Cluster } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';

const CRED = '/organizations/sso/saml/provider-credentials';
let cluster: Cluster;
let idp: IdpServer;

beforeAll(async () => {
  idp = await startIdpServer();
  cluster = await startCluster('waiters', ['us-iowa', 'asia-japan'], {
    env: { REPLICATION_KEYS: `r1:${'0123456789abcdef'.repeat(4)}` },
    extra: { metadataAllowedHosts: [idp.hostPort], admission: { writes: { concurrency: 1, queue: 100, queueWaitMs: 60_000 } } },
  });
}, 120_000);

afterAll(async () => {
  cluster?.proc('asia-japan').resume();
  await cluster?.stop();
  await idp?.close();
});

test('all_regions writes wait for a paused region without holding a write slot, and answer 204 once it resumes', async () => {
  const url = cluster.url('us-iowa');
  const org = await createOrg(url, 'waiters', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });
  const created = await call(url, 'POST', CRED, {
    headers: slashidHeaders(org, { 'SlashID-Required-Consistency': 'all_regions' }),
    body: { idp_metadata_url: idp.url('okta.xml'), label: 'w' },
  });
  expect(created.status).toBe(201);
  cluster.proc('asia-japan').pause();
  const writes = Array.from({ length: 12 }, (_, i) =>
    call(url, 'PATCH', `${CRED}/${created.body.result.id}`, {
      headers: slashidHeaders(org, { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '120' }),
      body: { label: `w${i}` },
      timeoutMs: 150_000,
    }),
  );
  // Every write committed and waits, while the single write slot is free.
  const allWaiting = await eventually(async () => {
    const s = await call(url, 'GET', '/admin/replication', { headers: adminHeaders });
    return s.body.waiting_requests === 12 && s.body.admission.writes.in_flight === 0;
  }, 90_000, 250);
  cluster.proc('asia-japan').resume();
  expect(allWaiting).toBe(true);
  const answers = await Promise.all(writes);
  expect(answers.map((a) => a.status)).toEqual(Array(12).fill(204));
}, 240_000);

test('all_regions retries of a keyed create wait on its change without holding a write slot, and answer 201 once the region resumes', async () => {
  const url = cluster.url('us-iowa');
  const org = await createOrg(url, 'replays', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });
  const body = { idp_metadata_url: idp.url('okta.xml'), label: 'r' };
  const post = (timeout: string) =>
    call(url, 'POST', CRED, {
      headers: slashidHeaders(org, { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': timeout, 'Idempotency-Key': 'replayed-while-paused' }),
      body,
      timeoutMs: 150_000,
    });
  cluster.proc('asia-japan').pause();
  let answers: Awaited<ReturnType<typeof post>>[];
  try {
    const first = await post('1');
    expect(first.status).toBe(408);
    const retries = Array.from({ length: 6 }, () => post('120'));
    // Every retry is a replay waiting on the first request's change, and the single write slot is free.
    const allWaiting = await eventually(async () => {
      const s = await call(url, 'GET', '/admin/replication', { headers: adminHeaders });
      return s.body.waiting_requests === 6 && s.body.admission.writes.in_flight === 0;
    }, 30_000, 250);
    expect(allWaiting).toBe(true);
    cluster.proc('asia-japan').resume();
    answers = await Promise.all(retries);
  } finally {
    cluster.proc('asia-japan').resume();
  }
  expect(answers.map((a) => [a.status, a.headers.get('idempotent-replayed')])).toEqual(Array(6).fill([201, 'true']));
}, 240_000);
