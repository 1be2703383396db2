/**
 * Replication across three region processes (own databases, one Redis): all_regions visibility, 408 with a
 * paused region, kill -9 during writes, concurrent updates, delete races, duplicated and reordered events.
 */
import Redis from 'ioredis';
import { Client } from 'pg';
import { adminHeaders, blocksAnother, call, adminChangeStatus, createOrg, eventually, pendingOnlyIn, slashidHeaders, startCluster, type Cluster } from '../support/harness';
import { fixture, startIdpServer, type IdpServer } from '../support/idp-server';
import { REDIS_URL, testEventAuth } from '../support/env';
import { scrape } from '../observability/support';

const PATH = '/organizations/sso/saml/provider-credentials';
const REGIONS = ['us-iowa', 'europe-belgium', 'asia-japan'];
const ALL = { 'SlashID-Required-Consistency': 'all_regions' };
let cluster: Cluster;
let idp: IdpServer;
let org: { id: string; api_key: string };

beforeAll(async () => {
  idp = await startIdpServer();
  // The kill -9 test alone creates more credentials than the default per-org quota (100) allows.
  cluster = await startCluster('cluster', REGIONS, { extra: { metadataAllowedHosts: [idp.hostPort], maxCredentialsPerOrg: 10_000 } });
  org = await createOrg(cluster.url('us-iowa'), 'acme', { headers: ALL });
}, 90_000);
afterAll(async () => {
  await cluster?.stop();
  await idp?.close();
});

const body = (label = 'x') => ({ idp_metadata_url: idp.url('okta.xml'), label });
const get = (region: string, id: string) => call(cluster.url(region), 'GET', `${PATH}/${id}`, { headers: slashidHeaders(org) });
const digests = async () =>
  Promise.all(REGIONS.map(async (r) => JSON.stringify((await call(cluster.url(r), 'GET', '/admin/replication/digest', { headers: adminHeaders })).body.tables)));
const converged = async () => new Set(await digests()).size === 1;

test('an organization created with all_regions authenticates in every region at once', async () => {
  const fresh = await createOrg(cluster.url('europe-belgium'), 'everywhere', { headers: ALL });
  for (const r of REGIONS) {
    const res = await call(cluster.url(r), 'GET', PATH, { headers: slashidHeaders(fresh) });
    expect(res.status).toBe(200);
  }
});

test('a credential created with all_regions is readable in every region right after the answer', async () => {
  for (const origin of REGIONS) {
    const res = await call(cluster.url(origin), 'POST', PATH, { body: body(`from ${origin}`), headers: slashidHeaders(org, ALL) });
    expect(res.status).toBe(201);
    for (const r of REGIONS) {
      const got = await get(r, res.body.result.id);
      expect(got.status).toBe(200);
      expect(got.body.result).toEqual(res.body.result);
    }
  }
});

test('PATCH and DELETE with all_regions are visible everywhere right after the answer', async () => {
  const c = (await call(cluster.url('us-iowa'), 'POST', PATH, { body: body(), headers: slashidHeaders(org, ALL) })).body.result;
  const p = await call(cluster.url('asia-japan'), 'PATCH', `${PATH}/${c.id}`, { body: { label: 'patched' }, headers: slashidHeaders(org, ALL) });
  expect(p.status).toBe(204);
  for (const r of REGIONS) expect((await get(r, c.id)).body.result.label).toBe('patched');
  const d = await call(cluster.url('europe-belgium'), 'DELETE', `${PATH}/${c.id}`, { headers: slashidHeaders(org, ALL) });
  expect(d.status).toBe(204);
  for (const r of REGIONS) expect((await get(r, c.id)).status).toBe(404);
});

test('with one region paused, all_regions answers 408 at its timeout and the write reaches that region after it resumes', async () => {
  const paused = cluster.proc('asia-japan');
  paused.pause();
  try {
    // An admin create under all_regions, sent alongside: it waits out its own timeout meanwhile (checked below).
    const orgCreating = call(cluster.url('us-iowa'), 'POST', '/admin/organizations', {
      body: { name: 'during pause' },
      headers: { ...adminHeaders, ...ALL, 'SlashID-Required-Consistency-Timeout': '1' },
    });
    const started = Date.now();
    const res = await call(cluster.url('us-iowa'), 'POST', PATH, {
      body: body('during pause'),
      headers: slashidHeaders(org, { ...ALL, 'SlashID-Required-Consistency-Timeout': '2' }),
    });
    const elapsed = Date.now() - started;
    expect(res.status).toBe(408);
    // Answered at its timeout, not when the region resumes (it resumes below, after this answer): no upper
    // bound in time, which a loaded CI host broke (7.9 s once) without saying anything about the service.
    expect(elapsed).toBeGreaterThanOrEqual(1900);
    expect(res.body.errors[0]).toEqual({ httpcode: 408, message: expect.stringContaining('asia-japan') });
    // SlashID's error envelope has no result: Location names the credential the create committed.
    expect(res.body).toEqual({ meta: {}, errors: [expect.anything()] });
    const location = res.headers.get('location') ?? '';
    expect(location).toMatch(new RegExp(`^${PATH}/[0-9a-f-]{36}$`));
    // The message names it too, for a client that shows only an error's body.
    expect(res.body.errors[0].message).toContain(`; the credential it created is ${location} (the Location header).`);
    const created = { id: location.split('/').pop() as string, ...body('during pause'), email_claims: [], enable_in_slashid_oidc_authz_server: false };
    expect((await get('us-iowa', created.id)).body.result).toEqual(created);
    const changeId = res.headers.get('x-change-id') ?? '';
    // Pending in the paused region alone, once europe-belgium's ack is in (pendingOnlyIn).
    expect(await pendingOnlyIn(cluster.url('us-iowa'), changeId, ['asia-japan'])).toBe(true);
    expect(await adminChangeStatus(cluster.url('us-iowa'), changeId)).toMatchObject({ change_id: changeId, complete: false, pending_regions: ['asia-japan'] });
    // An admin create's 408 carries what it created: the organization's API key is shown nowhere else.
    const orgCreated = await orgCreating;
    expect(orgCreated.status).toBe(408);
    expect(orgCreated.body.result).toMatchObject({ id: expect.stringMatching(/^[0-9a-f-]{36}$/), name: 'during pause', api_key: expect.any(String) });

    const local = await call(cluster.url('europe-belgium'), 'POST', PATH, { body: body('local while paused'), headers: slashidHeaders(org) });
    expect(local.status).toBe(201);
    expect((await get('europe-belgium', created.id)).status).toBe(200);

    paused.resume();
    expect(await eventually(async () => (await get('asia-japan', created.id)).status === 200)).toBe(true);
    expect(await eventually(async () => (await get('asia-japan', local.body.result.id)).status === 200)).toBe(true);
    expect(
      await eventually(async () => (await call(cluster.url('us-iowa'), 'GET', `/admin/replication/changes/${changeId}`, { headers: adminHeaders })).body.complete === true),
    ).toBe(true);
  } finally {
    paused.resume();
  }
});

/** An all_regions request (timeout 120 s) to us-iowa that the test can abandon: `gone()` aborts it and resolves to the abort. */
function abandonable(method: string, path: string, body: unknown, headers: Record<string, string> = {}) {
  const client = new AbortController();
  const sent = fetch(`${cluster.url('us-iowa')}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...slashidHeaders(org, { ...ALL, ...headers, 'SlashID-Required-Consistency-Timeout': '120' }) },
    body: JSON.stringify(body),
    signal: client.signal,
  }).catch((err: unknown) => err);
  return {
    gone: async () => {
      client.abort();
      return sent;
    },
  };
}

test('an all_regions write whose client goes away stops waiting at once, and still replicates', async () => {
  const us = cluster.url('us-iowa');
  const c = (await call(us, 'POST', PATH, { body: body('client gone'), headers: slashidHeaders(org, ALL) })).body.result;
  const waiting = async () => (await scrape(us)).value('replication_waiting_requests');
  expect(await waiting()).toBe(0);
  const paused = cluster.proc('asia-japan');
  paused.pause();
  try {
    const patch = abandonable('PATCH', `${PATH}/${c.id}`, { label: 'client gone' });
    expect(await eventually(async () => (await waiting()) === 1)).toBe(true);
    expect(await patch.gone()).toMatchObject({ name: 'AbortError' });
    // Released when the client went away, not at its 120 s timeout (the bound only tells the two apart).
    expect(await eventually(async () => (await waiting()) === 0, 30_000)).toBe(true);
    expect((await get('us-iowa', c.id)).body.result.label).toBe('client gone');
  } finally {
    paused.resume();
  }
  expect(await eventually(async () => (await get('asia-japan', c.id)).body.result?.label === 'client gone')).toBe(true);
});

test('an all_regions write whose client went away before its commit does not wait at all', async () => {
  const us = cluster.url('us-iowa');
  const c = (await call(us, 'POST', PATH, { body: body('before'), headers: slashidHeaders(org, ALL) })).body.result;
  const waiting = async () => (await scrape(us)).value('replication_waiting_requests');
  const paused = cluster.proc('asia-japan');
  const locker = new Client({ connectionString: cluster.deployment.file.regions.find((r) => r.id === 'us-iowa')?.databaseUrl });
  await locker.connect();
  paused.pause();
  try {
    // The row held, so the PATCH's commit waits; the client goes away meanwhile, and only then is it let go:
    // the wait starts with the connection already closed.
    await locker.query('BEGIN');
    await locker.query('SELECT 1 FROM saml_provider_credentials WHERE id = $1 FOR UPDATE', [c.id]);
    const patch = abandonable('PATCH', `${PATH}/${c.id}`, { label: 'gone early' });
    // The PATCH waits on the row (a lock not granted), so it is past every check and will commit.
    expect(await eventually(() => blocksAnother(locker), 15_000, 50)).toBe(true);
    expect(await patch.gone()).toMatchObject({ name: 'AbortError' });
    await new Promise((r) => setTimeout(r, 500));
    await locker.query('ROLLBACK');
    expect(await eventually(async () => (await get('us-iowa', c.id)).body.result?.label === 'gone early')).toBe(true);
    // Not kept waiting to its 120 s timeout (the bound only tells the two apart).
    expect(await eventually(async () => (await waiting()) === 0, 30_000)).toBe(true);
  } finally {
    await locker.end();
    paused.resume();
  }
  expect(await eventually(async () => (await get('asia-japan', c.id)).body.result?.label === 'gone early')).toBe(true);
});

test('the all_regions replay of an idempotent write stops waiting when its client goes away', async () => {
  const us = cluster.url('us-iowa');
  const waiting = async () => (await scrape(us)).value('replication_waiting_requests');
  const key = { 'Idempotency-Key': `replay-gone-${Date.now()}` };
  const paused = cluster.proc('asia-japan');
  paused.pause();
  try {
    const first = await call(us, 'POST', PATH, { body: body('replay gone'), headers: slashidHeaders(org, key) });
    expect(first.status).toBe(201);
    // The replay waits on the stored change, which asia-japan does not have yet.
    const replay = abandonable('POST', PATH, body('replay gone'), key);
    expect(await eventually(async () => (await waiting()) === 1)).toBe(true);
    expect(await replay.gone()).toMatchObject({ name: 'AbortError' });
    expect(await eventually(async () => (await waiting()) === 0, 30_000)).toBe(true);
  } finally {
    paused.resume();
  }
});

test('kill -9 of regions during a stream of writes loses no acknowledged write', async () => {
  const acked: string[] = [];
  const writers = ['us-iowa', 'europe-belgium'];
  const stream = (async () => {
    for (let i = 0; i < 150; i++) {
      const region = writers[i % 2] ?? 'us-iowa';
      try {
        const res = await call(cluster.url(region), 'POST', PATH, { body: body(`stream ${i}`), headers: slashidHeaders(org), timeoutMs: 5000 });
        if (res.status === 201) acked.push(res.body.result.id);
      } catch {
        // the region is down: the write was not acknowledged
      }
    }
  })();
  await new Promise((r) => setTimeout(r, 300));
  await cluster.proc('asia-japan').kill();
  await new Promise((r) => setTimeout(r, 300));
  await cluster.proc('us-iowa').kill();
  await new Promise((r) => setTimeout(r, 500));
  cluster.proc('us-iowa').start();
  cluster.proc('asia-japan').start();
  await Promise.all([cluster.proc('us-iowa').waitReady(), cluster.proc('asia-japan').waitReady()]);
  await stream;
  expect(acked.length).toBeGreaterThan(50);
  const missing = async () => {
    const out: string[] = [];
    for (const r of REGIONS) {
      const list = await call(cluster.url(r), 'GET', `${PATH}?limit=200&offset=0`, { headers: slashidHeaders(org) });
      const ids = new Set<string>();
      let offset = 0;
      let page = list;
      while (page.body.result?.length) {
        for (const c of page.body.result as { id: string }[]) ids.add(c.id);
        offset += 200;
        page = await call(cluster.url(r), 'GET', `${PATH}?limit=200&offset=${offset}`, { headers: slashidHeaders(org) });
      }
      out.push(...acked.filter((id) => !ids.has(id)).map((id) => `${r}:${id}`));
    }
    return out;
  };
  expect(await eventually(async () => (await missing()).length === 0, 30_000, 500)).toBe(true);
  expect(await eventually(converged, 15_000, 500)).toBe(true);
}, 90_000);

test('concurrent PATCHes of one credential in different regions end in the same state everywhere', async () => {
  const c = (await call(cluster.url('us-iowa'), 'POST', PATH, { body: body(), headers: slashidHeaders(org, ALL) })).body.result;
  for (let round = 0; round < 10; round++) {
    const results = await Promise.all(
      REGIONS.map((r, i) => call(cluster.url(r), 'PATCH', `${PATH}/${c.id}`, { body: { label: `round ${round} ${r}`, email_claims: [`c${i}`] }, headers: slashidHeaders(org) })),
    );
    expect(results.map((x) => x.status)).toEqual([204, 204, 204]);
  }
  const same = async () => {
    const states = await Promise.all(REGIONS.map(async (r) => JSON.stringify((await get(r, c.id)).body.result)));
    return new Set(states).size === 1 && states[0]?.includes('round 9') === true;
  };
  expect(await eventually(same)).toBe(true);
});

test('a DELETE racing PATCHes leaves the credential deleted everywhere', async () => {
  const ids: string[] = [];
  for (let i = 0; i < 8; i++) ids.push((await call(cluster.url('us-iowa'), 'POST', PATH, { body: body(`race ${i}`), headers: slashidHeaders(org, ALL) })).body.result.id);
  await Promise.all(
    ids.flatMap((id) => [
      call(cluster.url('europe-belgium'), 'DELETE', `${PATH}/${id}`, { headers: slashidHeaders(org) }),
      call(cluster.url('asia-japan'), 'PATCH', `${PATH}/${id}`, { body: { label: 'late patch' }, headers: slashidHeaders(org) }),
      call(cluster.url('us-iowa'), 'PATCH', `${PATH}/${id}`, { body: { label: 'later patch' }, headers: slashidHeaders(org) }),
    ]),
  );
  const allDeleted = async () => {
    for (const r of REGIONS) for (const id of ids) if ((await get(r, id)).status !== 404) return false;
    return true;
  };
  expect(await eventually(allDeleted)).toBe(true);
});

test('duplicated and reordered events change nothing', async () => {
  const ids: string[] = [];
  for (const r of REGIONS) ids.push((await call(cluster.url(r), 'POST', PATH, { body: body(`replay ${r}`), headers: slashidHeaders(org) })).body.result.id);
  await call(cluster.url('asia-japan'), 'PATCH', `${PATH}/${ids[0]}`, { body: { label: 'replay patched' }, headers: slashidHeaders(org) });
  await call(cluster.url('us-iowa'), 'DELETE', `${PATH}/${ids[1]}`, { headers: slashidHeaders(org) });
  expect(await eventually(converged, 15_000, 300)).toBe(true);
  const before = await digests();
  // Take every change event the regions committed (their outboxes keep them) and publish each again,
  // newest first: every event arrives a second time, and out of order.
  const redis = new Redis(REDIS_URL);
  try {
    const inbox = (r: string) => `${cluster.deployment.file.redisKeyPrefix}{repl}:changes:${r}`;
    const events: { created: string; json: string }[] = [];
    for (const r of cluster.deployment.file.regions) {
      const pg = new Client({ connectionString: r.databaseUrl });
      await pg.connect();
      const rows = await pg.query<{ created: string; json: string }>('SELECT created_at::text AS created, event::text AS json FROM replication_outbox');
      events.push(...rows.rows);
      await pg.end();
    }
    expect(events.length).toBeGreaterThanOrEqual(6);
    events.sort((a, b) => (a.created < b.created ? 1 : -1));
    // Each as stored (jsonb: its keys reordered), with the signature it was created with.
    const auth = testEventAuth();
    for (const e of events) for (const r of REGIONS) await redis.xadd(inbox(r), '*', ...auth.entryFields(JSON.parse(e.json)));
    // Wait until every region has consumed them all (each reads its own inbox).
    const drained = async () => {
      const groups = (await Promise.all(REGIONS.map(async (r) => (await redis.xinfo('GROUPS', inbox(r))) as unknown[][]))).flat();
      return groups.length === REGIONS.length && groups.every((g) => {
        const m = new Map<string, unknown>();
        for (let i = 0; i + 1 < g.length; i += 2) m.set(String(g[i]), g[i + 1]);
        return Number(m.get('pending')) === 0 && Number(m.get('lag')) === 0;
      });
    };
    expect(await eventually(drained, 20_000, 200)).toBe(true);
  } finally {
    redis.disconnect();
  }
  expect(await digests()).toEqual(before);
  // Every one was accepted: the signature of the stored (jsonb) event holds over its canonical bytes.
  for (const r of REGIONS) expect((await call(cluster.url(r), 'GET', '/admin/replication', { headers: adminHeaders })).body.refused.total).toBe(0);
}, 60_000);

test('an unreadable event is parked in the dead-letter stream and does not hold up replication', async () => {
  const redis = new Redis(REDIS_URL);
  try {
    for (const r of REGIONS) await redis.xadd(`${cluster.deployment.file.redisKeyPrefix}{repl}:changes:${r}`, '*', 'e', '{"not": "a change event"');
    const after = await call(cluster.url('us-iowa'), 'POST', PATH, { body: body('after poison'), headers: slashidHeaders(org, ALL) });
    expect(after.status).toBe(201);
    const parked = async () =>
      (await call(cluster.url('asia-japan'), 'GET', '/admin/replication', { headers: adminHeaders })).body.stream.dead_letters >= REGIONS.length;
    expect(await eventually(parked)).toBe(true);
  } finally {
    redis.disconnect();
  }
});

test('the IdP metadata is fetched once, by the region that takes the write; the others get the parsed result', async () => {
  idp.set('fetched-once.xml', fixture('keycloak.xml'));
  const res = await call(cluster.url('europe-belgium'), 'POST', PATH, { body: { idp_metadata_url: idp.url('fetched-once.xml') }, headers: slashidHeaders(org, ALL) });
  expect(res.status).toBe(201);
  for (const r of REGIONS) {
    const md = await call(cluster.url(r), 'GET', `${PATH}/${res.body.result.id}/metadata`, { headers: slashidHeaders(org) });
    expect(md.body.result.metadata.entity_id).toBe('https://lxapocd5.transplace.com:8443/auth/realms/SpringBootKeycloak');
  }
  expect(idp.hits('fetched-once.xml')).toBe(1);
});
