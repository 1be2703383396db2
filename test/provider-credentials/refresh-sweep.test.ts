/**
 * The refresh job's bounded queries (metadata-refresh.ts): credentials due by schedule come through the
 * next_at index; home credentials without a schedule (re-seeded, imported) or with another URL's document
 * are found by a sweep of one page of credentials per tick and refreshed first; schedules of credentials
 * the region does not refresh are dropped as they come due. The region's own refresher ticks every 30 s;
 * these tests run their own, tick by tick.
 */
import { Client } from 'pg';
import { Registry } from 'prom-client';
import { createLogger } from '../../src/logger';
import { fetchLimiterFor } from '../../src/provider-credentials/fetch-limiter';
import { MetadataRefresher } from '../../src/provider-credentials/metadata-refresh';
import { registerRefreshMetrics } from '../../src/provider-credentials/refresh-metrics';
import { formatVersion } from '../../src/replication/hlc';
import { FIXTURE_DATE } from '../support/env';
import { adminHeaders, call, createOrg, eventually, slashidHeaders } from '../support/harness';
import { fixture, type IdpServer } from '../support/idp-server';
import { idpMetadata, signer } from '../sso/support/idp-simulator';
import type { InProcessRegion } from '../support/in-process';
import { useRefreshRig } from '../support/refresh-rig';

const PATH = '/organizations/sso/saml/provider-credentials';
let r: InProcessRegion;
let idp: IdpServer;
let org: { id: string; api_key: string };
let refresher: MetadataRefresher;
const rig = useRefreshRig('sweep');
beforeAll(() => {
  ({ r, idp, org, refresher } = rig);
  idp.set('sweep.xml', fixture('keycloak.xml'));
});

/** Three new credentials, in id order, each with its schedule (a create writes one, due in a day). */
async function threeCredentials(): Promise<string[]> {
  await r.region.db.$executeRawUnsafe('DELETE FROM saml_provider_credentials');
  await r.region.db.$executeRawUnsafe('DELETE FROM metadata_refresh_state');
  const ids: string[] = [];
  for (const label of ['a', 'b', 'c']) {
    const res = await call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url('sweep.xml'), label }, headers: slashidHeaders(org) });
    expect(res.status).toBe(201);
    ids.push(res.body.result.id as string);
  }
  await r.region.db.$executeRawUnsafe("UPDATE metadata_refresh_state SET next_at = now() + interval '1 day', last_attempt_at = NULL");
  return ids.sort();
}

/** The credentials whose refresh was attempted (their schedule records an attempt). */
async function attempted(): Promise<string[]> {
  const rows = await r.region.db.$queryRawUnsafe<{ id: string }[]>('SELECT credential_id::text AS id FROM metadata_refresh_state WHERE last_attempt_at IS NOT NULL ORDER BY 1');
  return rows.map((x) => x.id);
}

const unschedule = (id: string) => r.region.db.$executeRawUnsafe('DELETE FROM metadata_refresh_state WHERE credential_id = $1::uuid', id);
const makeDue = (id: string) => r.region.db.$executeRawUnsafe("UPDATE metadata_refresh_state SET next_at = now() - interval '1 minute' WHERE credential_id = $1::uuid", id);

/** A refresher of its own whose region may fetch one document at a time, and that slot taken until `release`. */
function busyRefresher(): { own: MetadataRefresher; release: () => void; held: Promise<void> } {
  const config = { ...r.deployment.configFor('us-iowa'), metadataFetchConcurrency: { perOrg: 4, perRegion: 1, waitMs: 0 } };
  const own = new MetadataRefresher({ db: r.region.db, repl: r.region.replication.repl, redis: r.region.replication.redis, config, log: createLogger({ level: 'silent' }) });
  let release = () => undefined as void;
  const held = fetchLimiterFor(config).run('someone-else', () => new Promise<void>((res) => (release = res)));
  return { own, release: () => release(), held };
}

test('credentials the sweep finds (no schedule, another URL\'s document) go before those due by schedule', async () => {
  const [x, y, z] = (await threeCredentials()) as [string, string, string];
  await makeDue(x);
  await unschedule(y);
  await r.region.db.$executeRawUnsafe("UPDATE saml_credential_metadata SET idp_metadata_url = 'https://old.example/md.xml' WHERE credential_id = $1::uuid", z);
  // One credential per tick, the whole table in one page.
  expect(await refresher.runOnce(1, 100)).toBe(1);
  expect(await attempted()).toEqual([y]);
  expect(await refresher.runOnce(1, 100)).toBe(1);
  expect(await attempted()).toEqual([y, z].sort());
  expect((await r.region.db.samlCredentialMetadata.findUnique({ where: { credentialId: z } }))?.idpMetadataUrl).toBe(idp.url('sweep.xml'));
  expect(await refresher.runOnce(1, 100)).toBe(1);
  expect(await attempted()).toEqual([x, y, z].sort());
  expect(await refresher.runOnce(1, 100)).toBe(0);
});

test('the sweep takes one page per tick, and starts over after the last', async () => {
  const [a, b, c] = (await threeCredentials()) as [string, string, string];
  await unschedule(c);
  // Pages of one credential: a, then b, then c (found and refreshed), then the table's end.
  expect(await refresher.runOnce(5, 1)).toBe(0);
  expect(await refresher.runOnce(5, 1)).toBe(0);
  expect(await attempted()).toEqual([]);
  expect(await refresher.runOnce(5, 1)).toBe(1);
  expect(await attempted()).toEqual([c]);
  expect(await refresher.runOnce(5, 1)).toBe(0);
  // Started over: a credential unscheduled before the current page is found on the next pass.
  await unschedule(a);
  expect(await refresher.runOnce(5, 1)).toBe(1);
  expect(await attempted()).toEqual([a, c].sort());
  expect(b).toBeDefined();
});

test('due schedules of credentials this region does not refresh are dropped; its own are kept and refreshed', async () => {
  const [a, b, c] = (await threeCredentials()) as [string, string, string];
  const gone = '01a20906-0000-7000-8000-000000000001';
  await r.region.db.$executeRawUnsafe("INSERT INTO metadata_refresh_state (credential_id, next_at) VALUES ($1::uuid, now() - interval '1 hour')", gone);
  await r.region.db.$executeRawUnsafe("UPDATE saml_provider_credentials SET home_region = 'europe-belgium' WHERE id = $1::uuid", a);
  await r.region.db.$executeRawUnsafe('UPDATE saml_provider_credentials SET deleted_at = now() WHERE id = $1::uuid', b);
  for (const id of [a, b, c]) await makeDue(id);
  expect(await refresher.runOnce(20, 100)).toBe(1);
  const left = await r.region.db.$queryRawUnsafe<{ id: string; attempted: boolean }[]>('SELECT credential_id::text AS id, last_attempt_at IS NOT NULL AS attempted FROM metadata_refresh_state ORDER BY 1');
  expect(left).toEqual([{ id: c, attempted: true }]);
});

test('a found credential that meets a busy fetch limit stays found for the next tick', async () => {
  const [, , c] = (await threeCredentials()) as [string, string, string];
  await unschedule(c);
  const { own, release, held } = busyRefresher();
  // Pages of one: c is found on the third tick, when no slot is free.
  for (let i = 0; i < 3; i++) await own.runOnce(5, 1);
  expect(await attempted()).toEqual([]);
  expect(own.foundWaiting).toHaveLength(1);
  // A tick ends at a busy limit, though its batch was full.
  expect(await own.runTick(10_000, 1)).toBe(1);
  expect(own.foundWaiting).toHaveLength(1);
  release();
  await held;
  // The fourth tick's page is past the table's end: c is refreshed because it is still on the list.
  expect(await own.runOnce(5, 1)).toBe(1);
  expect(await attempted()).toEqual([c]);
  expect(own.foundWaiting).toHaveLength(0);
});

test('credentials due by schedule keep half of a tick while found ones wait', async () => {
  const [x, y, z] = (await threeCredentials()) as [string, string, string];
  await makeDue(x);
  await unschedule(y);
  await unschedule(z);
  // Two a tick: one found (y), one due by schedule (x); z next tick.
  expect(await refresher.runOnce(2, 100)).toBe(2);
  expect(await attempted()).toEqual([x, y].sort());
  expect(await refresher.runOnce(2, 100)).toBe(1);
  expect(await attempted()).toEqual([x, y, z].sort());
});

test('GET /admin/metadata-refresh lists the failing, then the held, then the rest by schedule', async () => {
  const [a, b, c] = (await threeCredentials()) as [string, string, string];
  await r.region.db.$executeRawUnsafe("UPDATE metadata_refresh_state SET next_at = now() + interval '1 hour' WHERE credential_id = $1::uuid", a);
  await r.region.db.$executeRawUnsafe("UPDATE metadata_refresh_state SET next_at = now() + interval '2 hours' WHERE credential_id = $1::uuid", b);
  await r.region.db.$executeRawUnsafe("UPDATE metadata_refresh_state SET next_at = now() + interval '3 hours', consecutive_failures = 2 WHERE credential_id = $1::uuid", c);
  await r.region.db.$executeRawUnsafe(
    `UPDATE saml_credential_metadata SET metadata = jsonb_set(metadata, '{pending}', jsonb_build_object('held_at', now(), 'reason', 'test')) WHERE credential_id = $1::uuid`,
    b,
  );
  const res = await call(r.url, 'GET', '/admin/metadata-refresh', { headers: adminHeaders });
  expect(res.status).toBe(200);
  expect(res.body.credentials.map((x: { credential_id: string }) => x.credential_id)).toEqual([c, b, a]);
  expect([res.body.failing, res.body.held]).toEqual([1, 1]);
  expect(res.body.credentials[1].held_reason).toBe('test');
});

test('a re-pointed credential whose refresh failed waits out its back-off, then its schedule brings it back', async () => {
  const [, , z] = (await threeCredentials()) as [string, string, string];
  await r.region.db.$executeRawUnsafe("UPDATE saml_credential_metadata SET idp_metadata_url = 'https://old.example/md.xml' WHERE credential_id = $1::uuid", z);
  await r.region.db.$executeRawUnsafe("UPDATE metadata_refresh_state SET consecutive_failures = 1, next_at = now() + interval '1 hour' WHERE credential_id = $1::uuid", z);
  expect(await refresher.runOnce(5, 100)).toBe(0);
  expect(await refresher.runOnce(5, 100)).toBe(0);
  await makeDue(z);
  expect(await refresher.runOnce(5, 100)).toBe(1);
  expect(await attempted()).toEqual([z]);
  expect((await r.region.db.samlCredentialMetadata.findUnique({ where: { credentialId: z } }))?.idpMetadataUrl).toBe(idp.url('sweep.xml'));
});

test('a tick takes batch after batch while they are full, within its budget', async () => {
  const ids = await threeCredentials();
  for (const id of ids) await makeDue(id);
  expect(await refresher.runTick(10_000, 1)).toBe(3);
  expect(await attempted()).toEqual(ids);
  // Nothing due any more: the next tick stops after its first, empty batch.
  expect(await refresher.runTick(10_000, 1)).toBe(0);
});

test('of the credentials due by schedule, the longest due go first', async () => {
  const [a, b, c] = (await threeCredentials()) as [string, string, string];
  for (const [id, minutes] of [[a, 1], [b, 30], [c, 10]] as const) {
    await r.region.db.$executeRawUnsafe(`UPDATE metadata_refresh_state SET next_at = now() - make_interval(mins => $2) WHERE credential_id = $1::uuid`, id, minutes);
  }
  expect(await refresher.runOnce(2, 100)).toBe(2);
  expect(await attempted()).toEqual([b, c].sort());
});

test('metadata_refresh_due counts a found credential that is also due by schedule once', async () => {
  const [x, y, z] = (await threeCredentials()) as [string, string, string];
  // y has no schedule; z has another URL's document and is due by its schedule; x is not due.
  await unschedule(y);
  await r.region.db.$executeRawUnsafe("UPDATE saml_credential_metadata SET idp_metadata_url = 'https://old.example/md.xml' WHERE credential_id = $1::uuid", z);
  await makeDue(z);
  // Its only fetch slot taken, the refresher's sweep finds y and z, and both stay found.
  const { own, release, held } = busyRefresher();
  try {
    await own.runOnce(5, 100);
    expect(own.foundWaiting.sort()).toEqual([y, z].sort());
    const registry = new Registry();
    registerRefreshMetrics(registry, r.region.db, 'us-iowa', () => own.foundWaiting);
    const due = async () => (await registry.getSingleMetric('metadata_refresh_due')?.get())?.values[0]?.value;
    // z once (found and due), y (found): 2, not 3.
    expect(await due()).toBe(2);
    await makeDue(x);
    expect(await due()).toBe(3);
  } finally {
    release();
    await held;
  }
});

test('one organization\'s slow IdPs do not hold back another organization\'s refresh in the same tick', async () => {
  await r.region.db.$executeRawUnsafe('DELETE FROM saml_provider_credentials');
  await r.region.db.$executeRawUnsafe('DELETE FROM metadata_refresh_state');
  const slowOrg = await createOrg(r.url, 'slow idps');
  const slow: string[] = [];
  for (let i = 0; i < 3; i++) {
    idp.set(`slow-${i}.xml`, fixture('okta.xml'));
    const res = await call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url(`slow-${i}.xml`) }, headers: slashidHeaders(slowOrg) });
    expect(res.status).toBe(201);
    slow.push(res.body.result.id as string);
  }
  const other = await call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url('sweep.xml'), label: 'other' }, headers: slashidHeaders(org) });
  expect(other.status).toBe(201);
  // All due, the slow organization's first (oldest first); each of its IdPs holds its answer until released
  // below, however long the other credential's fetch, its parse in the worker pool and its write take on a
  // loaded host. (Each took 8 s before, and the tick waited out all three one after the other: 24 s.)
  await r.region.db.$executeRawUnsafe("UPDATE metadata_refresh_state SET next_at = now() - interval '2 minutes', last_attempt_at = NULL WHERE credential_id = ANY($1::uuid[])", slow);
  await r.region.db.$executeRawUnsafe("UPDATE metadata_refresh_state SET next_at = now() - interval '1 minute', last_attempt_at = NULL WHERE credential_id = $1::uuid", other.body.result.id);
  const releases = [0, 1, 2].map((i) => idp.hold(`slow-${i}.xml`));
  const tick = refresher.runOnce();
  try {
    // The other organization's credential is refreshed while the slow organization's first fetch is still
    // held, and only one of that organization's fetches is in flight at a time.
    expect(await eventually(async () => (await attempted()).includes(other.body.result.id), 7000, 50)).toBe(true);
    expect(idp.held()).toBe(1);
  } finally {
    for (const release of releases) release();
  }
  await tick;
  expect((await attempted()).sort()).toEqual([...slow, other.body.result.id].sort());
}, 90_000);

test('a region with few fetch slots refreshes no more at once than a quarter of them, and a tick still gets through every due credential', async () => {
  await r.region.db.$executeRawUnsafe('DELETE FROM saml_provider_credentials');
  await r.region.db.$executeRawUnsafe('DELETE FROM metadata_refresh_state');
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) {
    const each = await createOrg(r.url, `few slots ${i}`);
    idp.set(`few-${i}.xml`, fixture('keycloak.xml'));
    const res = await call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url(`few-${i}.xml`) }, headers: slashidHeaders(each) });
    expect(res.status).toBe(201);
    ids.push(res.body.result.id as string);
  }
  await r.region.db.$executeRawUnsafe("UPDATE metadata_refresh_state SET next_at = now() - interval '1 minute', last_attempt_at = NULL");
  for (let i = 0; i < 6; i++) idp.slow(`few-${i}.xml`, 300);
  // Two slots: one refresh at a time (four at once took both slots and were refused the rest as busy, and
  // the tick stopped after two).
  const config = { ...r.deployment.configFor('us-iowa'), metadataFetchConcurrency: { perOrg: 4, perRegion: 2, waitMs: 0 } };
  const own = new MetadataRefresher({ db: r.region.db, repl: r.region.replication.repl, redis: r.region.replication.redis, config, log: createLogger({ level: 'silent' }) });
  await own.runTick(60_000);
  expect((await attempted()).sort()).toEqual([...ids].sort());
}, 60_000);

test('a refresher started with a shorter interval brings the schedules set under a longer one within it, spread over it', async () => {
  await threeCredentials(); // due in a day
  const config = { ...r.deployment.configFor('us-iowa'), metadataRefreshIntervalSeconds: 60 };
  const shorter = new MetadataRefresher({ db: r.region.db, repl: r.region.replication.repl, redis: r.region.replication.redis, config, log: r.region.log });
  shorter.start();
  try {
    // Before: still a day away (a lowered interval took effect only after the old one ran out).
    const within = async () => (await r.region.db.$queryRawUnsafe<{ n: number }[]>("SELECT count(*)::int AS n FROM metadata_refresh_state WHERE next_at <= now() + interval '60 seconds'"))[0]?.n === 3;
    expect(await eventually(within, 5000, 50)).toBe(true);
    const spread = await r.region.db.$queryRawUnsafe<{ n: number }[]>('SELECT count(DISTINCT next_at)::int AS n FROM metadata_refresh_state');
    expect(spread[0]?.n).toBe(3);
  } finally {
    await shorter.stop();
  }
});

test('bringing the schedules within a shorter interval goes a page at a time and does not wait for a row a writer holds', async () => {
  await r.region.db.$executeRawUnsafe('DELETE FROM metadata_refresh_state');
  // More schedules than a page, due in a day; one of them held by a writer's open transaction.
  await r.region.db.$executeRawUnsafe(
    `INSERT INTO metadata_refresh_state (credential_id, next_at) SELECT gen_random_uuid(), now() + interval '1 day' FROM generate_series(1, 2500)`,
  );
  const holder = new Client({ connectionString: r.deployment.file.regions[0]?.databaseUrl });
  await holder.connect();
  await holder.query('BEGIN');
  const [held] = (await holder.query<{ id: string }>('SELECT credential_id::text AS id FROM metadata_refresh_state ORDER BY credential_id LIMIT 1 FOR UPDATE')).rows;
  const config = { ...r.deployment.configFor('us-iowa'), metadataRefreshIntervalSeconds: 60 };
  const shorter = new MetadataRefresher({ db: r.region.db, repl: r.region.replication.repl, redis: r.region.replication.redis, config, log: r.region.log });
  try {
    shorter.start();
    const late = async () => (await r.region.db.$queryRawUnsafe<{ id: string }[]>("SELECT credential_id::text AS id FROM metadata_refresh_state WHERE next_at > now() + interval '60 seconds'")).map((x) => x.id);
    // Before: one statement over every row, waiting for the held one (and holding the others meanwhile).
    expect(await eventually(async () => (await late()).length === 1, 10_000, 50)).toBe(true);
    expect(await late()).toEqual([held?.id]);
  } finally {
    await holder.query('COMMIT');
    await holder.end();
    await shorter.stop();
  }
});

/** Points credential `x` at a document the IdP no longer serves, with three failures behind it, and makes it due. */
async function failedThrice(x: string, name: string): Promise<void> {
  idp.set(name, fixture('keycloak.xml'));
  await r.region.db.$executeRawUnsafe('UPDATE saml_provider_credentials SET idp_metadata_url = $2 WHERE id = $1::uuid', x, idp.url(name));
  await r.region.db.$executeRawUnsafe('UPDATE saml_credential_metadata SET idp_metadata_url = $2 WHERE credential_id = $1::uuid', x, idp.url(name));
  idp.remove(name);
  await r.region.db.$executeRawUnsafe('UPDATE metadata_refresh_state SET consecutive_failures = 3 WHERE credential_id = $1::uuid', x);
  await makeDue(x);
}

test('a failing refresh backs off exponentially: after three failures the next try is 8 minutes away, not a minute', async () => {
  const [x] = (await threeCredentials()) as [string, string, string];
  await failedThrice(x, 'backoff.xml');
  expect(await refresher.runOnce(5, 100)).toBe(1);
  const state = async () =>
    (await r.region.db.$queryRawUnsafe<{ failures: number; wait: number }[]>(
      'SELECT consecutive_failures AS failures, EXTRACT(EPOCH FROM next_at - now())::float8 AS wait FROM metadata_refresh_state WHERE credential_id = $1::uuid', x,
    ))[0];
  const after = await state();
  expect(after?.failures).toBe(4);
  // 60 s × 2³, not a fixed minute (the region's refresh interval, which caps it, is longer here).
  expect(after?.wait).toBeGreaterThan(7 * 60);
  expect(after?.wait).toBeLessThanOrEqual(8 * 60);
});

test('a refresh that succeeds after failures clears the failure: no error is shown for it any more', async () => {
  const [x] = (await threeCredentials()) as [string, string, string];
  idp.set('recovers.xml', fixture('keycloak.xml'));
  await r.region.db.$executeRawUnsafe('UPDATE saml_provider_credentials SET idp_metadata_url = $2 WHERE id = $1::uuid', x, idp.url('recovers.xml'));
  await r.region.db.$executeRawUnsafe('UPDATE saml_credential_metadata SET idp_metadata_url = $2 WHERE credential_id = $1::uuid', x, idp.url('recovers.xml'));
  const shown = async () => {
    const admin = await call(r.url, 'GET', '/admin/metadata-refresh', { headers: adminHeaders });
    const listed = admin.body.credentials.find((c: { credential_id: string }) => c.credential_id === x);
    const md = await call(r.url, 'GET', `${PATH}/${x}/metadata`, { headers: slashidHeaders(org) });
    return { failing: admin.body.failing, listed: { failures: listed.consecutive_failures, error: listed.last_error, code: listed.last_error_code }, refresh: md.body.result.refresh.last_error };
  };
  idp.remove('recovers.xml');
  await makeDue(x);
  expect(await refresher.runOnce(5, 100)).toBe(1);
  expect(await shown()).toEqual({ failing: 1, listed: { failures: 1, error: expect.stringMatching(/404/), code: expect.any(String) }, refresh: expect.stringMatching(/404/) });
  // The IdP serves its document again: the next refresh succeeds, and the failure is gone from both views.
  idp.set('recovers.xml', fixture('keycloak.xml'));
  await makeDue(x);
  expect(await refresher.runOnce(5, 100)).toBe(1);
  expect(await shown()).toEqual({ failing: 0, listed: { failures: 0, error: null, code: null }, refresh: null });
});

test("a credential of an older version (no trust setting) re-pointed while its refresh fetched the old URL: the old URL's document is not stored as the new one's", async () => {
  const [x] = (await threeCredentials()) as [string, string, string];
  idp.set('legacy-old.xml', fixture('okta.xml'));
  idp.set('legacy-new.xml', fixture('keycloak.xml'));
  // As an older version left it: no trust setting, no trust id; pointed at legacy-old.xml, whose document
  // (okta's) differs from the stored one (keycloak's), so the refresh goes on to write.
  await r.region.db.$executeRawUnsafe('UPDATE saml_provider_credentials SET idp_trust = NULL, idp_metadata_url = $2 WHERE id = $1::uuid', x, idp.url('legacy-old.xml'));
  await r.region.db.$executeRawUnsafe('UPDATE saml_credential_metadata SET trust_id = NULL, idp_metadata_url = $2 WHERE credential_id = $1::uuid', x, idp.url('legacy-old.xml'));
  await makeDue(x);
  idp.slow('legacy-old.xml', 1500);
  const tick = refresher.runOnce(5, 100);
  expect(await eventually(async () => idp.held() === 1, 10_000, 20)).toBe(true);
  // Meanwhile a PATCH of the URL made by a region of the older version is applied here (both rows, newer
  // versions): the credential is legacy-new.xml's, with its document.
  const later = formatVersion({ wall: Date.now() + 1000, counter: 0, region: 'europe-belgium' });
  await r.region.db.$executeRawUnsafe('UPDATE saml_provider_credentials SET idp_metadata_url = $2, version = $3 WHERE id = $1::uuid', x, idp.url('legacy-new.xml'), later);
  await r.region.db.$executeRawUnsafe('UPDATE saml_credential_metadata SET idp_metadata_url = $2, version = $3 WHERE credential_id = $1::uuid', x, idp.url('legacy-new.xml'), later);
  await tick;
  const md = await call(r.url, 'GET', `${PATH}/${x}/metadata`, { headers: slashidHeaders(org) });
  expect(md.status).toBe(200);
  expect(md.body.result.idp_metadata_url).toBe(idp.url('legacy-new.xml'));
  expect(md.body.result.metadata.entity_id).toBe('https://lxapocd5.transplace.com:8443/auth/realms/SpringBootKeycloak');
  const row = await r.region.db.samlCredentialMetadata.findUnique({ where: { credentialId: x } });
  expect(row?.version).toBe(later);
});

test('the back-off of a failing refresh is capped by the refresh interval: a region refreshing every 2 minutes tries again within them', async () => {
  const [x] = (await threeCredentials()) as [string, string, string];
  await failedThrice(x, 'capped.xml');
  const config = { ...r.deployment.configFor('us-iowa'), metadataRefreshIntervalSeconds: 120 };
  const own = new MetadataRefresher({ db: r.region.db, repl: r.region.replication.repl, redis: r.region.replication.redis, config, log: createLogger({ level: 'silent' }) });
  expect(await own.runOnce(5, 100)).toBe(1);
  const [after] = await r.region.db.$queryRawUnsafe<{ failures: number; wait: number }[]>(
    'SELECT consecutive_failures AS failures, EXTRACT(EPOCH FROM next_at - now())::float8 AS wait FROM metadata_refresh_state WHERE credential_id = $1::uuid', x,
  );
  expect(after?.failures).toBe(4);
  // 60 s × 2³ would be 8 minutes: the interval (2 minutes) caps it.
  expect(after?.wait).toBeGreaterThan(60);
  expect(after?.wait).toBeLessThanOrEqual(120);
});

/**
 * A refresh whose statement the database stops (its statement_timeout cancels it, a lock wait runs past its
 * lock_timeout, it is read-only) failed for the database's state, not the IdP's nor the service's: recorded as
 * database_unavailable (the API's word for it), with no database wording, and tried again after the first
 * back-off step, not after a back-off its earlier failures grew.
 */
test.each([
  ['57014', 'query_canceled', 'canceling statement due to statement timeout'],
  ['55P03', 'lock_not_available', 'canceling statement due to lock timeout'],
  ['25006', 'read_only_sql_transaction', 'cannot execute UPDATE in a read-only transaction'],
])('a refresh the database stops with %s is recorded as the database\'s trouble and tried again soon', async (_code, errcode, wording) => {
  const [x] = (await threeCredentials()) as [string, string, string];
  // A changed document (okta's for keycloak's): the refresh writes the metadata row, and the database stops that write.
  idp.set('db-trouble.xml', fixture('okta.xml'));
  await r.region.db.$executeRawUnsafe('UPDATE saml_provider_credentials SET idp_metadata_url = $2 WHERE id = $1::uuid', x, idp.url('db-trouble.xml'));
  await r.region.db.$executeRawUnsafe('UPDATE saml_credential_metadata SET idp_metadata_url = $2 WHERE credential_id = $1::uuid', x, idp.url('db-trouble.xml'));
  await r.region.db.$executeRawUnsafe('UPDATE metadata_refresh_state SET consecutive_failures = 3 WHERE credential_id = $1::uuid', x);
  await makeDue(x);
  await r.region.db.$executeRawUnsafe(`CREATE FUNCTION refresh_stopped() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION '${wording}' USING ERRCODE = '${errcode}'; END $$`);
  await r.region.db.$executeRawUnsafe('CREATE TRIGGER refresh_stopped BEFORE INSERT OR UPDATE ON saml_credential_metadata FOR EACH ROW EXECUTE FUNCTION refresh_stopped()');
  try {
    expect(await refresher.runOnce(5, 100)).toBe(1);
  } finally {
    await r.region.db.$executeRawUnsafe('DROP TRIGGER refresh_stopped ON saml_credential_metadata');
    await r.region.db.$executeRawUnsafe('DROP FUNCTION refresh_stopped()');
  }
  const [after] = await r.region.db.$queryRawUnsafe<{ failures: number; wait: number; code: string; error: string }[]>(
    'SELECT consecutive_failures AS failures, EXTRACT(EPOCH FROM next_at - now())::float8 AS wait, last_error_code AS code, last_error AS error FROM metadata_refresh_state WHERE credential_id = $1::uuid', x,
  );
  expect({ failures: after?.failures, code: after?.code }).toEqual({ failures: 4, code: 'database_unavailable' });
  expect(after?.error).toMatch(/database/);
  expect(after?.error).not.toContain(wording);
  // The first back-off step (a minute), not 60 s × 2³.
  expect(after?.wait).toBeLessThanOrEqual(60);
  // Tried again once due, and then it goes through.
  await makeDue(x);
  expect(await refresher.runOnce(5, 100)).toBe(1);
  const listed = (await call(r.url, 'GET', '/admin/metadata-refresh', { headers: adminHeaders })).body.credentials.find((c: { credential_id: string }) => c.credential_id === x);
  expect({ failures: listed.consecutive_failures, code: listed.last_error_code }).toEqual({ failures: 0, code: null });
});

test('a document taken within the clock skew of its validUntil is refreshed before the skew runs out, not a period later', async () => {
  // Past its validUntil by less than the default 60 s skew, as of the region's metadata clock (the fixtures' date,
  // METADATA_VALIDATION_TIME), which the fetch judges it by and the time left is measured at.
  const validUntil = new Date(Date.parse(FIXTURE_DATE) - 5_000).toISOString();
  idp.set('skew-schedule.xml', idpMetadata({ entityId: 'https://idp.skew.test/saml', ssoUrl: 'https://idp.skew.test/sso', certs: [signer('idp-a')], validUntil }));
  const before = Date.now();
  const res = await call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url('skew-schedule.xml') }, headers: slashidHeaders(org) });
  expect(res.status).toBe(201);
  const md = await call(r.url, 'GET', `${PATH}/${res.body.result.id}/metadata`, { headers: slashidHeaders(org) });
  // Within the 55 s the skew leaves it (half of it) by the real clock the schedule runs on, not the day the period is.
  expect(Date.parse(md.body.result.refresh.next_at)).toBeLessThan(before + 55_000);
});
