/**
 * Idempotency-Key across three region processes: a retry sent to another region once the first write has
 * replicated, and a retry after a 408, in both dialects.
 */
import { Client } from 'pg';
import { idempotencyRowId } from '../../src/idempotency/request';
import { CREATE_ENDPOINT } from '../../src/provider-credentials/routes';
import { adminHeaders, call, createOrg, eventually, locatedId, slashidHeaders, startCluster, type Cluster } from '../support/harness';
import { fixture, startIdpServer, type IdpServer } from '../support/idp-server';
import { bearer, configBody, issueToken, makeCerts, SSO, type TestCerts } from '../infisical/support/fixtures';

const PATH = '/organizations/sso/saml/provider-credentials';
const REGIONS = ['us-iowa', 'europe-belgium', 'asia-japan'];
const ALL = { 'SlashID-Required-Consistency': 'all_regions' };
const LOCAL = { 'SlashID-Required-Consistency': 'local_region' };

let cluster: Cluster;
let idp: IdpServer;
let certs: TestCerts;

beforeAll(async () => {
  certs = makeCerts();
  idp = await startIdpServer();
  cluster = await startCluster('idem-x', REGIONS, { extra: { metadataAllowedHosts: [idp.hostPort] } });
}, 90_000);
afterAll(async () => {
  await cluster?.stop();
  await idp?.close();
});

type Org = { id: string; api_key: string };
const newOrg = (): Promise<Org> => createOrg(cluster.url('us-iowa'), 'acme', { headers: ALL });
const body = (label = 'Okta prod') => ({ idp_metadata_url: idp.url('okta.xml'), label });

function post(region: string, org: Org, payload: unknown, headers: Record<string, string>) {
  return call(cluster.url(region), 'POST', PATH, { body: payload, headers: slashidHeaders(org, headers) });
}

/** The ids of the org's credentials as one region's database has them. */
async function idsIn(region: string, org: Org): Promise<string[]> {
  const res = await call(cluster.url(region), 'GET', PATH, { headers: slashidHeaders(org) });
  if (res.status !== 200) throw new Error(`list in ${region}: ${res.status}`);
  return (res.body.result as { id: string }[]).map((c) => c.id);
}

async function converged(): Promise<boolean> {
  const digests = await Promise.all(
    REGIONS.map(async (r) => JSON.stringify((await call(cluster.url(r), 'GET', '/admin/replication/digest', { headers: adminHeaders })).body.tables)),
  );
  return new Set(digests).size === 1;
}

test('a retry sent to another region after an all_regions create replays it there, and no region has a second credential', async () => {
  const org = await newOrg();
  const first = await post('us-iowa', org, body(), { ...ALL, 'Idempotency-Key': 'x-region' });
  expect(first.status).toBe(201);
  const retry = await post('europe-belgium', org, body(), { 'Idempotency-Key': 'x-region' });
  expect(retry.status).toBe(201);
  expect(retry.headers.get('idempotent-replayed')).toBe('true');
  expect(retry.body).toEqual(first.body);
  const reused = await post('asia-japan', org, body('another'), { 'Idempotency-Key': 'x-region' });
  expect(reused.status).toBe(422);
  expect(reused.body.errors[0].message).toContain('different request body');
  expect(await eventually(converged)).toBe(true);
  for (const r of REGIONS) expect(await idsIn(r, org)).toEqual([first.body.result.id]);
});

test('a retry in another region while that region applies the first create replays it, though the IdP is down by then', async () => {
  const org = await newOrg();
  idp.set('applying.xml', fixture('okta.xml'));
  const payload = { idp_metadata_url: idp.url('applying.xml') };
  const locker = new Client({ connectionString: cluster.deployment.file.regions.find((r) => r.id === 'europe-belgium')?.databaseUrl });
  await locker.connect();
  try {
    // The key's per-row lock in europe-belgium, held here: the apply of the create waits for it there.
    await locker.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [`idempotency_keys:${idempotencyRowId(org.id, CREATE_ENDPOINT, 'applying')}`]);
    const first = await post('us-iowa', org, payload, { ...LOCAL, 'Idempotency-Key': 'applying' });
    expect(first.status).toBe(201);
    expect(await eventually(async () => (await waitingOn(locker)) >= 1, 20_000, 50)).toBe(true);
    idp.remove('applying.xml');
    // No key there yet and its own fetch fails: it must wait for the apply, not answer the fetch's error.
    let answered = false;
    const retry = post('europe-belgium', org, payload, { 'Idempotency-Key': 'applying' }).finally(() => (answered = true));
    expect(await eventually(async () => answered || (await waitingOn(locker)) >= 2, 20_000, 50)).toBe(true);
    await locker.query('SELECT pg_advisory_unlock_all()');
    const again = await retry;
    expect({ status: again.status, replayed: again.headers.get('idempotent-replayed'), id: again.body.result?.id }).toEqual({ status: 201, replayed: 'true', id: first.body.result.id });
    expect(await eventually(async () => (await idsIn('europe-belgium', org)).length === 1)).toBe(true);
    expect(await idsIn('europe-belgium', org)).toEqual([first.body.result.id]);
  } finally {
    await locker.end();
  }
});

/** How many statements of other connections now wait on a lock `locker`'s connection holds (see blocksAnother). */
async function waitingOn(locker: Client): Promise<number> {
  await locker.query('SELECT pg_stat_clear_snapshot()');
  const { rows } = await locker.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))');
  return rows[0]?.n ?? 0;
}

test('a retry after a 408 answers 201 with the id the 408 reported, and the credential exists once everywhere', async () => {
  const org = await newOrg();
  const japan = cluster.proc('asia-japan');
  japan.pause();
  let id: string;
  try {
    const timedOut = await post('us-iowa', org, body('during pause'), { ...ALL, 'SlashID-Required-Consistency-Timeout': '1', 'Idempotency-Key': 'after-408' });
    expect(timedOut.status).toBe(408);
    // SlashID's error envelope has no result: Location names the credential.
    expect(timedOut.body.result).toBeUndefined();
    id = locatedId(timedOut);
    const retry = await post('us-iowa', org, body('during pause'), { ...LOCAL, 'Idempotency-Key': 'after-408' });
    expect(retry.status).toBe(201);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(retry.body).toEqual({ meta: {}, errors: [], result: { id, ...body('during pause'), email_claims: [], enable_in_slashid_oidc_authz_server: false } });
    // With all_regions the retry waits on the change, and its 408 names the credential as the first did.
    const stillPending = await post('us-iowa', org, body('during pause'), { ...ALL, 'SlashID-Required-Consistency-Timeout': '1', 'Idempotency-Key': 'after-408' });
    expect(stillPending.status).toBe(408);
    expect(stillPending.body.result).toBeUndefined();
    expect(locatedId(stillPending)).toBe(id);
    expect(stillPending.body.errors[0].message).toContain(`; the credential it created is ${stillPending.headers.get('location')} (the Location header).`);
    // It is the stored request's answer, for the same change: marked as a replay, with the first 408's change id.
    expect(stillPending.headers.get('idempotent-replayed')).toBe('true');
    expect(stillPending.headers.get('x-change-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(stillPending.headers.get('x-change-id')).toBe(timedOut.headers.get('x-change-id'));
    // Belgium has the write too, so a retry there is also a replay.
    expect(await eventually(async () => (await idsIn('europe-belgium', org)).length === 1)).toBe(true);
    const elsewhere = await post('europe-belgium', org, body('during pause'), { 'Idempotency-Key': 'after-408' });
    expect(elsewhere.status).toBe(201);
    expect(elsewhere.body.result.id).toBe(id);
  } finally {
    japan.resume();
  }
  expect(await eventually(async () => (await idsIn('asia-japan', org)).length === 1, 30_000)).toBe(true);
  expect(await eventually(converged)).toBe(true);
  for (const r of REGIONS) expect(await idsIn(r, org)).toEqual([id]);
  // Japan has the key now as well: the retry there replays instead of creating.
  const inJapan = await post('asia-japan', org, body('during pause'), { 'Idempotency-Key': 'after-408' });
  expect(inJapan.status).toBe(201);
  expect(inJapan.headers.get('idempotent-replayed')).toBe('true');
  expect(inJapan.body.result.id).toBe(id);
}, 60_000);

test('one key sent to two regions at once: a create that lost the key answers 409 naming the credential it kept, and no credential is left unnamed', async () => {
  // Each region may commit before the other's key arrives: both credentials are kept (their ids differ), the
  // earlier create wins the key. The loser's 409 said "not kept" of a credential every region kept.
  let lost = 0;
  for (let attempt = 0; attempt < 10 && lost === 0; attempt++) {
    const org = await newOrg();
    const key = `both-at-once-${attempt}`;
    const answers = await Promise.all(['us-iowa', 'asia-japan'].map((r) => post(r, org, body(), { ...ALL, 'Idempotency-Key': key })));
    const named = new Set<string>();
    for (const a of answers) {
      expect([201, 409]).toContain(a.status);
      if (a.status === 201) named.add(a.body.result.id);
      if (a.status !== 409) continue;
      lost += 1;
      const id = locatedId(a);
      named.add(id);
      expect(a.body.errors[0].message).toContain(`kept as a second one, ${PATH}/${id}`);
      const retry = await post('europe-belgium', org, body(), { ...ALL, 'Idempotency-Key': key });
      expect(retry.status).toBe(201);
      expect(retry.body.result.id).not.toBe(id);
    }
    expect(await eventually(converged)).toBe(true);
    for (const r of REGIONS) expect((await idsIn(r, org)).sort()).toEqual([...named].sort());
  }
  expect(lost).toBeGreaterThan(0);
}, 90_000);

/** A change's status as the organization's own route answers it in `region`. */
async function statusOf(region: string, org: Org, changeId: string) {
  const res = await call(cluster.url(region), 'GET', `/organizations/replication/changes/${changeId}`, { headers: slashidHeaders(org) });
  if (res.status !== 200) throw new Error(`status in ${region}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.result;
}

test('one key sent to two regions at once under local_region: the create that lost only its key reads applied everywhere, and its status names the key as superseded', async () => {
  // Both answer 201 (local_region waits for no region); the later create's key row loses to the earlier one's
  // where they meet, while its credential is kept everywhere. Its status said "superseded", as if nothing was kept.
  let checked = 0;
  for (let attempt = 0; attempt < 10 && checked === 0; attempt++) {
    const org = await newOrg();
    const key = `local-both-${attempt}`;
    const answers = await Promise.all(['us-iowa', 'asia-japan'].map((r) => post(r, org, body(), { ...LOCAL, 'Idempotency-Key': key })));
    for (const a of answers) expect(a.status).toBe(201);
    const ids = answers.map((a) => a.body.result.id as string);
    // The second region saw the first's key before it wrote: a replay, no race to look at.
    if (ids[0] === ids[1]) continue;
    expect(await eventually(converged)).toBe(true);
    for (const r of REGIONS) expect((await idsIn(r, org)).sort()).toEqual([...ids].sort());
    const changes = answers.map((a) => a.headers.get('x-change-id') ?? '');
    // Every region has judged both changes (acks are recorded in the origins' Redis, a moment after the apply).
    const settled = async () => (await Promise.all(changes.map((c) => statusOf('europe-belgium', org, c)))).every((s) => s.pending_regions.length === 0);
    expect(await eventually(settled)).toBe(true);
    // The key went to the earlier create: a retry with it answers that one's credential, in every region.
    const retries = await Promise.all(REGIONS.map((r) => post(r, org, body(), { ...LOCAL, 'Idempotency-Key': key })));
    const winner = ids.indexOf(retries[0]?.body.result.id);
    expect(winner).toBeGreaterThanOrEqual(0);
    for (const retry of retries) expect({ status: retry.status, id: retry.body.result.id }).toEqual({ status: 201, id: ids[winner] });
    const loser = 1 - winner;
    const winnerRegion = ['us-iowa', 'asia-japan'][winner];
    // Read the same in every region (the origin's outbox and the acks in its Redis).
    for (const r of REGIONS) {
      const lost = await statusOf(r, org, changes[loser] as string);
      expect(lost).toMatchObject({ state: 'complete', complete: true, pending_regions: [], superseded: [] });
      for (const region of REGIONS) expect(lost.applied_at[region]).toEqual(expect.any(String));
      // The key record lost, to the winner's key row, in at least the winner's own region.
      expect(lost.idempotency_key?.state).toBe('superseded');
      expect(lost.idempotency_key.superseded.map((s: { region: string }) => s.region)).toContain(winnerRegion);
      for (const s of lost.idempotency_key.superseded) expect(s.winner).toMatchObject({ table: 'idempotency_keys', originRegion: winnerRegion });
      expect(lost.idempotency_key.message).toContain(`a write sent with the same key at the same time to ${winnerRegion}`);
      expect(lost.idempotency_key.message).toContain('What this change wrote was kept');
      // The operators' route reads it the same way.
      const admin = await call(cluster.url(r), 'GET', `/admin/replication/changes/${changes[loser]}`, { headers: adminHeaders });
      expect(admin.body).toMatchObject({ state: 'complete', superseded: [], idempotency_key: { state: 'superseded' } });
      const won = await statusOf(r, org, changes[winner] as string);
      expect(won).toMatchObject({ state: 'complete', complete: true, superseded: [], idempotency_key: null });
    }
    checked += 1;
  }
  expect(checked).toBeGreaterThan(0);
}, 120_000);

describe('Infisical dialect', () => {
  async function infisicalOrg() {
    const org = await newOrg();
    return { id: org.id, token: await issueToken(cluster.url('europe-belgium'), org.id) };
  }

  test('a retry in another region replays the create instead of answering 409', async () => {
    const org = await infisicalOrg();
    const first = await call(cluster.url('us-iowa'), 'POST', SSO, { body: configBody(org.id, certs.pem), headers: bearer(org.token, { ...ALL, 'Idempotency-Key': 'sso-x' }) });
    expect(first.status).toBe(200);
    const retry = await call(cluster.url('asia-japan'), 'POST', SSO, { body: configBody(org.id, certs.pem), headers: bearer(org.token, { 'Idempotency-Key': 'sso-x' }) });
    expect(retry.status).toBe(200);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(retry.body).toEqual(first.body);
  });

  test('a retry after a 408 answers 200 with the config the 408 carried in details', async () => {
    const org = await infisicalOrg();
    const japan = cluster.proc('asia-japan');
    japan.pause();
    try {
      const timedOut = await call(cluster.url('us-iowa'), 'POST', SSO, {
        body: configBody(org.id, certs.pem),
        headers: bearer(org.token, { ...ALL, 'SlashID-Required-Consistency-Timeout': '1', 'Idempotency-Key': 'sso-408' }),
      });
      expect(timedOut.status).toBe(408);
      const retry = await call(cluster.url('us-iowa'), 'POST', SSO, { body: configBody(org.id, certs.pem), headers: bearer(org.token, { 'Idempotency-Key': 'sso-408' }) });
      expect(retry.status).toBe(200);
      expect(retry.headers.get('idempotent-replayed')).toBe('true');
      expect(retry.body).toEqual(timedOut.body.details);
      const stillPending = await call(cluster.url('us-iowa'), 'POST', SSO, {
        body: configBody(org.id, certs.pem),
        headers: bearer(org.token, { ...ALL, 'SlashID-Required-Consistency-Timeout': '1', 'Idempotency-Key': 'sso-408' }),
      });
      expect(stillPending.status).toBe(408);
      expect(stillPending.body.details).toEqual(timedOut.body.details);
      expect(stillPending.headers.get('idempotent-replayed')).toBe('true');
      expect(stillPending.headers.get('x-change-id')).toMatch(/^[0-9a-f-]{36}$/);
      expect(stillPending.headers.get('x-change-id')).toBe(timedOut.headers.get('x-change-id'));
    } finally {
      japan.resume();
    }
  }, 60_000);
});
