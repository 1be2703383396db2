/**
 * A removed region's credentials are adopted (docs/operations.md, "Removing a region"): only a credential's
 * home region refreshes its IdP metadata, so a region removed for good would leave its credentials without
 * refresh. Once the members have been unchanged for `adoptAfterSeconds` and a remaining region has applied
 * what the removed one sent it, that region refreshes the removed region's credentials that rendezvous
 * hashing gives it (each credential exactly one adopter), without writing the credential rows users PATCH.
 * Three region processes; asia-japan is removed as docs/operations.md says (stopped, a config without it rolled
 * onto the others, `npm run members -- remove`).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { Client } from 'pg';
import { adminHeaders, call, createOrg, eventually, runScript, slashidHeaders, startCluster, type Cluster } from '../support/harness';
import { FIXTURE_DATE } from '../support/env';
import { fixture, startIdpServer, type IdpServer } from '../support/idp-server';
import { scrape } from '../observability/support';
import { SET_VALID_UNTIL } from '../support/credential-rows';

const PATH = '/organizations/sso/saml/provider-credentials';
const REGIONS = ['us-iowa', 'europe-belgium', 'asia-japan'];
const STAYING = ['europe-belgium', 'us-iowa'];
const GONE = 'asia-japan';
const ALL = { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '30' };
/** The refresh interval: a put-off schedule moves this far. */
const INTERVAL_SECONDS = 2;

let idp: IdpServer;
let cluster: Cluster;

beforeAll(async () => {
  idp = await startIdpServer();
  // The refresher ticks every half second (a quarter of the interval, at least 500 ms); adoption after 2 s of unchanged members.
  cluster = await startCluster('adopt', REGIONS, { extra: { metadataAllowedHosts: [idp.hostPort], metadataRefreshIntervalSeconds: INTERVAL_SECONDS, adoptAfterSeconds: 2 } });
}, 120_000);
afterAll(async () => {
  await cluster?.stop(0);
  await idp?.close();
});

interface Listed {
  credential_id: string;
  home_region: string;
  last_success_at: string | null;
}
const status = async (region: string) => (await call(cluster.url(region), 'GET', '/admin/metadata-refresh', { headers: adminHeaders })).body as {
  adoption: { departed: string[]; ready: boolean; waiting: string | null; adopters: string[] };
  credentials: Listed[];
};
/** Whether `region` refreshed credential `id` after `since` (a tick of its refresher ran since then). */
const refreshedSince = async (region: string, id: string, since: number) => {
  const c = (await status(region)).credentials.find((x) => x.credential_id === id);
  return Boolean(c?.last_success_at && Date.parse(c.last_success_at) > since);
};
/** The ids a region refreshes (listed with a successful fetch made there). */
const refreshedBy = async (region: string) => new Set((await status(region)).credentials.filter((c) => c.last_success_at).map((c) => c.credential_id));
/** The adopter rendezvous hashing picks (docs/operations.md, "Removing a region"): the highest md5 of `<region>/<credential id>`. */
const pick = (id: string) => [...STAYING].sort((a, b) => (createHash('md5').update(`${b}/${id}`).digest('hex') > createHash('md5').update(`${a}/${id}`).digest('hex') ? 1 : -1))[0];

async function sql<T = unknown>(region: string, text: string, values: unknown[] = []): Promise<T[]> {
  const db = new Client({ connectionString: cluster.deployment.file.regions.find((r) => r.id === region)?.databaseUrl });
  await db.connect();
  try {
    return (await db.query(text, values)).rows as T[];
  } finally {
    await db.end();
  }
}

test("a removed region's live credentials are refreshed by one remaining region each, once it applied what that region sent", async () => {
  const gone = cluster.url(GONE);
  const org = await createOrg(cluster.url('us-iowa'), 'adopt', { headers: ALL });
  const create = async (region: string, label: string) => {
    const res = await call(cluster.url(region), 'POST', PATH, { body: { idp_metadata_url: idp.url('okta.xml'), label }, headers: slashidHeaders(org, ALL) });
    expect(res.status).toBe(201);
    return res.body.result.id as string;
  };
  // Orphans-to-be until each remaining region is the pick of at least two.
  const orphans: string[] = [];
  while (STAYING.some((r) => orphans.filter((id) => pick(id) === r).length < 2)) orphans.push(await create(GONE, `made in ${GONE} ${orphans.length}`));
  const deleted = await create(GONE, 'deleted');
  expect((await call(gone, 'DELETE', `${PATH}/${deleted}`, { headers: slashidHeaders(org, ALL) })).status).toBe(204);
  const own = await create('europe-belgium', 'made in europe-belgium');
  const usOwn = await create('us-iowa', 'made in us-iowa');
  // One of asia-japan's whose metadata URL stops answering: its refreshes fail from now on, wherever they run.
  idp.set('adopted-expiring.xml', fixture('okta.xml'));
  const expiring = (await call(gone, 'POST', PATH, { body: { idp_metadata_url: idp.url('adopted-expiring.xml'), label: 'expiring' }, headers: slashidHeaders(org, ALL) })).body.result.id as string;
  idp.remove('adopted-expiring.xml');

  // While asia-japan is a member its credentials are its own: nothing is recorded as removed, and the
  // remaining regions' refreshers (each has refreshed its own credential since) leave them alone.
  const created = Date.now();
  expect(await eventually(() => refreshedSince('europe-belgium', own, created), 20_000, 300)).toBe(true);
  expect(await eventually(() => refreshedSince('us-iowa', usOwn, created), 20_000, 300)).toBe(true);
  for (const r of STAYING) {
    const st = await status(r);
    expect(st.adoption).toEqual({ departed: [], ready: true, waiting: null, adopters: [] });
    expect(st.credentials.map((c) => c.credential_id).filter((id) => orphans.includes(id) || id === deleted)).toEqual([]);
  }

  // europe-belgium holds a parked change of asia-japan's (as an older version parks one it cannot apply).
  await sql('europe-belgium', `INSERT INTO replication_failures (change_id, origin_region, event, failures, reason, last_error, parked_at)
                               VALUES ('01a2a000-0000-7000-8000-0000000000aa', $1, '{}'::jsonb, 1, 'unknown-table', 'test', now())`, [GONE]);

  // Removed as docs/operations.md says.
  await cluster.proc(GONE).stop(10_000);
  const file = cluster.deployment.file;
  fs.writeFileSync(cluster.deployment.configPath, JSON.stringify({ ...file, regions: file.regions.filter((r) => r.id !== GONE) }, null, 2));
  for (const r of STAYING) {
    await cluster.proc(r).stop(10_000);
    cluster.proc(r).start();
    await cluster.proc(r).waitReady(60_000);
  }
  const removed = await runScript(cluster, 'members', ['remove', GONE]);
  expect(removed.status).toBe(0);
  const listed = JSON.parse((await runScript(cluster, 'members', ['list'])).stdout) as { departed: { region: string; removed_at: string; known_in: string[]; verified_in: Record<string, boolean | null> }[] };
  // Unsigned (ackSignatures off here): nothing checked.
  expect(listed.departed).toEqual([{ region: GONE, removed_at: expect.stringMatching(/^\d{4}-/), known_in: STAYING, verified_in: Object.fromEntries(STAYING.map((r) => [r, null])) }]);
  // An unknown flag is refused with the usage, nothing done; --force records the removal where it is
  // missing and keeps the time where it is not.
  const bad = await runScript(cluster, 'members', ['remove', GONE, '--forse']);
  expect({ status: bad.status, stderr: bad.stderr }).toEqual({ status: 2, stderr: expect.stringMatching(/^usage: npm run members -- list \| activate <region> \| remove <region> \[--force\]/) });
  expect((await runScript(cluster, 'members', ['remove', GONE, '--force'])).status).toBe(0);
  const again = JSON.parse((await runScript(cluster, 'members', ['list'])).stdout) as typeof listed;
  expect(again.departed).toEqual(listed.departed);

  // us-iowa adopts its share; europe-belgium waits for its parked change, and says so.
  const mine = (r: string) => orphans.filter((id) => pick(id) === r);
  expect(await eventually(async () => /^1 change from removed regions is failing or parked here/.test((await status('europe-belgium')).adoption.waiting ?? ''), 30_000, 300)).toBe(true);
  const refreshesAll = async (region: string, ids: string[]) => {
    const got = await refreshedBy(region);
    return ids.every((id) => got.has(id));
  };
  expect(await eventually(() => refreshesAll('us-iowa', mine('us-iowa')), 30_000, 300)).toBe(true);
  const usStatus = await status('us-iowa');
  expect(usStatus.adoption).toEqual({ departed: [GONE], ready: true, waiting: null, adopters: STAYING });
  expect(usStatus.credentials.filter((c) => orphans.includes(c.credential_id)).every((c) => c.home_region === GONE)).toBe(true);
  const waiting = await status('europe-belgium');
  expect(waiting.adoption).toMatchObject({ departed: [GONE], ready: false, adopters: [], waiting: expect.stringMatching(/^1 change from removed regions is failing or parked here/) });
  expect(waiting.credentials.map((c) => c.credential_id).filter((id) => orphans.includes(id))).toEqual([]);
  // The gauge counts the removed region waiting in europe-belgium, and none in us-iowa.
  expect((await scrape(cluster.url('europe-belgium'))).value('metadata_refresh_adoption_waiting')).toBe(1);
  expect((await scrape(cluster.url('us-iowa'))).value('metadata_refresh_adoption_waiting')).toBe(0);
  // The console names it among that region's problems.
  const deployment = (await call(cluster.url('us-iowa'), 'GET', '/admin/deployment', { headers: adminHeaders })).body as { regions: { id: string; problems: string[] }[] };
  expect(deployment.regions.find((r) => r.id === 'europe-belgium')?.problems).toEqual([
    expect.stringMatching(/^does not adopt yet the credentials of asia-japan \(removed\): 1 change from removed regions is failing or parked here/),
  ]);
  expect(deployment.regions.find((r) => r.id === 'us-iowa')?.problems.filter((p) => /adopt/.test(p))).toEqual([]);
  // Not europe-belgium's share, nor the deleted one, nor another member's credential.
  const us = await refreshedBy('us-iowa');
  for (const id of [...mine('europe-belgium'), deleted, own]) expect(us.has(id)).toBe(false);
  expect(us.has(usOwn)).toBe(true);

  // Its stored metadata expired (by the regions' metadata clock, FIXTURE_DATE): a sign-in refused where it is not refreshed says where it is, not the removed
  // home (whose /metadata answers no more). europe-belgium, waiting, does not know the adopters yet.
  for (const r of STAYING) {
    await sql(r, SET_VALID_UNTIL, [expiring, new Date(Date.parse(FIXTURE_DATE) - 3600_000).toISOString()]);
  }
  const loginMessage = async (region: string) => {
    const res = await fetch(`${cluster.url(region)}/sso/saml/${expiring}/login`, { redirect: 'manual' });
    return { status: res.status, message: res.status === 409 ? ((await res.json()) as { errors: { message: string }[] }).errors[0]?.message ?? '' : '' };
  };
  const unknownAdopter = await loginMessage('europe-belgium');
  expect(unknownAdopter.status).toBe(409);
  expect(unknownAdopter.message).toContain(`its refreshes run in the region that adopts the credentials of ${GONE} (removed from the deployment;`);
  expect(unknownAdopter.message).not.toContain(`its refreshes run in region ${GONE}`);

  // The parked change dealt with (here: discarded by the operator), europe-belgium adopts its share, and only that.
  const discarded = await call(cluster.url('europe-belgium'), 'POST', '/admin/replication/parked/discard', {
    headers: adminHeaders, body: { change_ids: ['01a2a000-0000-7000-8000-0000000000aa'] },
  });
  expect(discarded.body).toMatchObject({ discarded: [{ change_id: '01a2a000-0000-7000-8000-0000000000aa', origin_region: GONE }], not_parked: [] });
  expect(await eventually(() => refreshesAll('europe-belgium', mine('europe-belgium')), 30_000, 300)).toBe(true);
  const eu = await refreshedBy('europe-belgium');
  for (const id of [...mine('us-iowa'), deleted]) expect(eu.has(id)).toBe(false);
  expect(eu.has(own)).toBe(true);
  // Both adopt now: the region that does not refresh the expired credential names the one that does.
  const notHere = STAYING.find((r) => r !== pick(expiring)) as string;
  const named = await loginMessage(notHere);
  expect(named.status).toBe(409);
  expect(named.message).toContain(`its refreshes run in region ${pick(expiring)}, which adopted it from ${GONE} (removed from the deployment), and whose GET ${PATH}/${expiring}/metadata says how they fail`);

  // us-iowa waits again (a parked change of asia-japan's): the schedules of its share are put off, not
  // dropped (their failures and back-off are kept for when it adopts again), and it adopts again after.
  await sql('us-iowa', `INSERT INTO replication_failures (change_id, origin_region, event, failures, reason, last_error, parked_at)
                        VALUES ('01a2a000-0000-7000-8000-0000000000ab', $1, '{}'::jsonb, 1, 'unknown-table', 'test', now())`, [GONE]);
  expect(await eventually(async () => (await status('us-iowa')).adoption.ready === false, 30_000, 300)).toBe(true);
  // A refresh batch that began before (its scope read while still ready) ends within ms here; then none adopts.
  await new Promise((res) => setTimeout(res, 1500));
  let waitingSince = new Date();
  // Each came due and was put off (next_at moved past a refresh interval from then) without a fetch.
  // On a loaded host that batch can end after the 1.5 s: the fetch it records (last_attempt_at is written as
  // it ends) then falls after waitingSince, and read against that start the condition never held. Such a
  // fetch moves the start of the wait to the present instead. A region that went on refreshing would move it
  // every interval: a refresh sets next_at to its own attempt plus the interval, never past the new start plus
  // the interval, so only schedules put off after the start count and the wait still fails then.
  const putOff = async () => {
    const rows = await sql<{ n: number; fetched: number }>(
      'us-iowa',
      `SELECT count(*) FILTER (WHERE next_at > $2::timestamptz + make_interval(secs => $3) AND last_attempt_at < $2::timestamptz)::int AS n,
              count(*) FILTER (WHERE last_attempt_at >= $2::timestamptz)::int AS fetched
         FROM metadata_refresh_state WHERE credential_id = ANY($1::uuid[])`,
      [mine('us-iowa'), waitingSince, INTERVAL_SECONDS],
    );
    if ((rows[0]?.fetched ?? 0) > 0) waitingSince = new Date();
    return rows[0]?.n === mine('us-iowa').length;
  };
  expect(await eventually(putOff, 30_000, 300)).toBe(true);
  // While it waits, the put-off schedule is not shown as one: us-iowa does not refresh the credential now.
  const waitingView = await call(cluster.url('us-iowa'), 'GET', `${PATH}/${mine('us-iowa')[0]}/metadata`, { headers: slashidHeaders(org) });
  expect(waitingView.body.result.refresh).toEqual({ home_region: GONE });
  const resumed = Date.now();
  await sql('us-iowa', `DELETE FROM replication_failures WHERE origin_region = $1`, [GONE]);
  expect(await eventually(async () => (await Promise.all(mine('us-iowa').map((id) => refreshedSince('us-iowa', id, resumed)))).every(Boolean), 90_000, 500)).toBe(true);

  // The credential rows were not written: their home is still the removed region, everywhere.
  for (const r of STAYING) {
    const md = await call(cluster.url(r), 'GET', `${PATH}/${orphans[0]}/metadata`, { headers: slashidHeaders(org) });
    expect(md.body.result.refresh.home_region).toBe(GONE);
    // The schedule is shown where it lives: in the adopter.
    expect(md.body.result.refresh.next_at !== undefined).toBe(r === pick(orphans[0] as string));
  }
}, 240_000);
