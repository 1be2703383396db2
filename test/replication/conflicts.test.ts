/**
 * No acknowledged write is silently discarded on a natural key. Rounds of concurrent Infisical config
 * creates (one config per organization) and API-key rotations in two region processes, every fourth round
 * across a partition (one region's link to Redis held, so it keeps serving but neither sends nor receives).
 * After each round both regions converge, and:
 * - every 2xx answer's write is present in the converged state of both regions (0 discarded);
 * - an all_regions create that lost answered 409 (naming the winner), never 2xx;
 * - a create that answered 408 across the partition and lost answers 409 when replayed with its
 *   Idempotency-Key, and its change reads "superseded" on the org-scoped status route.
 * CONFLICT_ROUNDS (default 20) sets the number of rounds (`CONFLICT_ROUNDS=200 npx jest test/replication/conflicts.test.ts`).
 */
import { Client } from 'pg';
import { DelayProxy, type DelayTable } from '../../scripts/harness/delay-proxy';
import { bearer, configBody, issueToken, makeCerts, SSO } from '../infisical/support/fixtures';
import { REDIS_URL } from '../support/env';

/** A lost write's 409: which region's write won and when, in the resource's terms (not its table or version). */
const LOST = /lost to a concurrent write and is not kept: (a write made in [a-z0-9-]+( at \d{4}-\d\d-\d\dT[\d:.]+Z)? won \(seen in [a-z0-9, -]+\)|another write won)\. /;
import { adminHeaders, call, createOrg, eventually, slashidHeaders, startCluster, type Cluster } from '../support/harness';

const A = 'us-iowa';
const B = 'europe-belgium';
const ROUNDS = Number(process.env.CONFLICT_ROUNDS ?? 20);
const ALL = { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '20' };

let cluster: Cluster;
let proxy: DelayProxy;
const link: DelayTable = { self: 0, peers: {}, jitter: 0, cut: [] };
const cert = makeCerts().pem;

const figures = {
  rounds: 0,
  partitionRounds: 0,
  successAnswers: 0,
  discarded: 0,
  allRegionsLosers: 0,
  allRegionsLosersWith409: 0,
  replayedLosersWith409: 0,
  supersededOnStatusRoute: 0,
  unexpected: [] as string[],
};

beforeAll(async () => {
  const redis = new URL(REDIS_URL);
  proxy = new DelayProxy({ listenHost: '127.0.0.1', listenPort: 0, targetHost: redis.hostname, targetPort: Number(redis.port || 6379), delays: () => link });
  await proxy.listen();
  const viaProxy = `redis://127.0.0.1:${proxy.port}${redis.pathname}`;
  cluster = await startCluster('conflicts', [A, B], { regionEnv: { [B]: { REDIS_URL: viaProxy } } });
}, 90_000);

afterAll(async () => {
  link.cut = [];
  await cluster?.stop();
  await proxy?.close();
  // The figures of this run, for the record.
  process.stdout.write(`conflict figures: ${JSON.stringify(figures)}\n`);
});

const partition = () => (link.cut = ['127.0.0.1']);
const heal = () => (link.cut = []);

async function configIn(region: string, orgId: string, token: string) {
  const res = await call(cluster.url(region), 'GET', `${SSO}?organizationId=${orgId}`, { headers: bearer(token) });
  return res.status === 200 ? (res.body as { issuer: string; entryPoint: string }) : null;
}

/** Waits until both regions return the same config, and returns it. */
async function converged(orgId: string, token: string) {
  let seen: unknown = null;
  const ok = await eventually(async () => {
    const [a, b] = await Promise.all([configIn(A, orgId, token), configIn(B, orgId, token)]);
    seen = [a, b];
    return a !== null && JSON.stringify(a) === JSON.stringify(b);
  }, 30_000, 50);
  if (!ok) throw new Error(`regions did not converge: ${JSON.stringify(seen)}`);
  return (seen as [{ issuer: string; entryPoint: string }])[0];
}

async function keyWorks(region: string, org: { id: string }, apiKey: string) {
  const res = await call(cluster.url(region), 'GET', '/organizations/sso/saml/provider-credentials', { headers: slashidHeaders({ id: org.id, api_key: apiKey }) });
  return res.status === 200;
}

async function rotate(region: string, orgId: string, headers: Record<string, string>) {
  return call(cluster.url(region), 'POST', `/admin/organizations/${orgId}/api-keys`, { headers: { ...adminHeaders, ...headers } });
}

/**
 * The two keys of two rotations are present: each works in every region, unless the other rotation had
 * already received it and revoked it (then that rotation is simply the later one, as any later rotation
 * revokes earlier keys). A rotation's new key is created with its transaction's first version, which is
 * also the version of the tombstones it wrote, so the revoking rotation can be told from the rows.
 */
async function expectKeysPresent(org: { id: string }, keys: string[]) {
  const idOf = (k: string) => /^sidk_([^.]+)\./.exec(k)?.[1] ?? '';
  const pg = new Client({ connectionString: cluster.deployment.file.regions[0]?.databaseUrl });
  await pg.connect();
  try {
    /** `k` was revoked by the other rotation, whose key is live (judged from the rows). */
    const revokedByOther = async (k: string): Promise<boolean> => {
      const rows = await pg.query<{ key_id: string; version: string; created_version: string; deleted: boolean }>(
        'SELECT key_id, version, created_version, deleted_at IS NOT NULL AS deleted FROM api_keys WHERE key_id = ANY($1)',
        [keys.map(idOf)],
      );
      const byId = new Map(rows.rows.map((r) => [r.key_id, r]));
      const revoked = byId.get(idOf(k));
      const others = keys.filter((o) => o !== k).map((o) => byId.get(idOf(o)));
      return revoked?.deleted === true && others.some((o) => o && !o.deleted && o.created_version === revoked.version);
    };
    // Each key works in both regions, or was revoked by the other rotation: judged as soon as either shows
    // (waiting out the 15 s for a revoked key to work made a round of such an order 15 s longer).
    const settled = async (k: string): Promise<'works' | 'revoked' | 'neither'> => {
      let state: 'works' | 'revoked' | 'neither' = 'neither';
      await eventually(async () => {
        if ((await keyWorks(A, org, k)) && (await keyWorks(B, org, k))) state = 'works';
        else if (await revokedByOther(k)) state = 'revoked';
        return state !== 'neither';
      }, 15_000, 100);
      return state;
    };
    const states = [];
    for (const k of keys) states.push(await settled(k));
    // Not both revoked (each by the other), and none that neither works nor was revoked.
    return states.includes('works') && !states.includes('neither');
  } finally {
    await pg.end();
  }
}

async function concurrentRound(round: number) {
  const org = await createOrg(cluster.url(A), `conflict ${round}`, { headers: ALL });
  const token = await issueToken(cluster.url(A), org.id);
  const bodies = [A, B].map((r) => configBody(org.id, cert, { issuer: `issuer of round ${round} in ${r}` }));
  const [creates, rotations] = await Promise.all([
    Promise.all([A, B].map((r, i) => call(cluster.url(r), 'POST', SSO, { body: bodies[i], headers: bearer(token, ALL) }))),
    Promise.all([A, B].map((r) => rotate(r, org.id, ALL))),
  ]);
  const config = await converged(org.id, token);
  creates.forEach((c, i) => {
    const mine = bodies[i]?.issuer;
    if (c.status === 200) {
      figures.successAnswers++;
      if (config.issuer !== mine) {
        figures.discarded++;
        figures.unexpected.push(`round ${round}: 200 create in ${[A, B][i]} discarded`);
      }
    } else {
      figures.allRegionsLosers++;
      // Lost after commit (superseded in a region), or refused before it (the other create had reached
      // this region first: Infisical's own 409); either way a 409 and nothing of it kept.
      if (c.status === 409 && config.issuer !== mine && (LOST.test(c.body.message) || /already has a SAML config/.test(c.body.message))) figures.allRegionsLosersWith409++;
      else figures.unexpected.push(`round ${round}: create in ${[A, B][i]} answered ${c.status} ${JSON.stringify(c.body)}`);
    }
    // A committed write names its change (a write refused before commit has none).
    if (c.status === 200) expect(c.headers.get('x-change-id')).toMatch(/^[0-9a-f-]{36}$/);
  });
  for (const r of rotations) {
    if (r.status === 201) figures.successAnswers++;
    else figures.unexpected.push(`round ${round}: rotation answered ${r.status} ${JSON.stringify(r.body)}`);
  }
  const keys = rotations.filter((r) => r.status === 201).map((r) => (r.body as { api_key: string }).api_key);
  if (!(await expectKeysPresent(org, keys))) {
    figures.discarded += keys.length;
    figures.unexpected.push(`round ${round}: a rotated key does not work in every region`);
  }
}

async function partitionRound(round: number) {
  figures.partitionRounds++;
  const org = await createOrg(cluster.url(A), `partitioned ${round}`, { headers: ALL });
  const token = await issueToken(cluster.url(A), org.id);
  partition();
  try {
    // The connected region creates and updates first (local_region: it cannot know about the other side).
    const first = await call(cluster.url(A), 'POST', SSO, { body: configBody(org.id, cert, { issuer: `first in ${A}` }), headers: bearer(token) });
    const patched = await call(cluster.url(A), 'PATCH', SSO, { body: { organizationId: org.id, entryPoint: `https://idp.example.com/round-${round}` }, headers: bearer(token) });
    const rotatedA = await rotate(A, org.id, {});
    // The cut-off region accepts a later create under all_regions: it cannot reach the level, so 408.
    const idemKey = `round-${round}`;
    const laterBody = configBody(org.id, cert, { issuer: `later in ${B}` });
    // Both sent at once: neither can reach all_regions while the cut lasts, so each waits out its own timeout.
    const [later, rotatedB] = await Promise.all([
      call(cluster.url(B), 'POST', SSO, {
        body: laterBody,
        headers: bearer(token, { ...ALL, 'SlashID-Required-Consistency-Timeout': '2', 'Idempotency-Key': idemKey }),
      }),
      rotate(B, org.id, { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '2' }),
    ]);
    for (const r of [first, patched, rotatedA]) {
      if (r.status === 200 || r.status === 201) figures.successAnswers++;
      else figures.unexpected.push(`round ${round}: connected-side write answered ${r.status}`);
    }
    expect(later.status).toBe(408);
    expect(later.body.message).toMatch(/GET \/api\/v1\/replication\/changes\//);
    expect(rotatedB.status).toBe(408);
    heal();
    const config = await converged(org.id, token);
    if (config.issuer !== `first in ${A}` || config.entryPoint !== `https://idp.example.com/round-${round}`) {
      figures.discarded++;
      figures.unexpected.push(`round ${round}: the older config or its PATCH was lost: ${JSON.stringify(config)}`);
    }
    // The 408'd create lost: its replay says so, and so does its change on the org-scoped route.
    figures.allRegionsLosers++;
    const replay = await call(cluster.url(B), 'POST', SSO, { body: laterBody, headers: bearer(token, { ...ALL, 'Idempotency-Key': idemKey }) });
    if (replay.status === 409) figures.replayedLosersWith409++;
    else figures.unexpected.push(`round ${round}: replay of the lost create answered ${replay.status} ${JSON.stringify(replay.body)}`);
    const changeId = later.headers.get('x-change-id') ?? '';
    const status = await call(cluster.url(B), 'GET', `/api/v1/replication/changes/${changeId}`, { headers: bearer(token) });
    if (status.status === 200 && status.body.state === 'superseded') figures.supersededOnStatusRoute++;
    else figures.unexpected.push(`round ${round}: status of the lost create: ${status.status} ${JSON.stringify(status.body)}`);
    // Both rotations keep a working key: neither knew the other's.
    const keys = [rotatedA, rotatedB].map((r) => (r.body as { api_key?: string }).api_key ?? (r.body as { result?: { api_key: string } }).result?.api_key ?? '');
    if (!(await expectKeysPresent(org, keys))) {
      figures.discarded += 1;
      figures.unexpected.push(`round ${round}: a key rotated across the partition does not work everywhere`);
    }
  } finally {
    heal();
  }
}

test(`${ROUNDS} rounds of concurrent creates and rotations in two regions discard no acknowledged write`, async () => {
  for (let round = 0; round < ROUNDS; round++) {
    figures.rounds++;
    if (round % 4 === 3) await partitionRound(round);
    else await concurrentRound(round);
  }
  expect(figures.unexpected).toEqual([]);
  expect(figures.discarded).toBe(0);
  expect(figures.allRegionsLosersWith409 + figures.replayedLosersWith409).toBe(figures.allRegionsLosers);
  expect(figures.supersededOnStatusRoute).toBe(figures.partitionRounds);
}, 60_000 + ROUNDS * 15_000);

describe('following a change with the organization\'s own credentials', () => {
  test('the status route shows a change to its organization only, in both dialects, and every write names its change', async () => {
    const org = await createOrg(cluster.url(A), 'follower', { headers: ALL });
    const other = await createOrg(cluster.url(A), 'stranger', { headers: ALL });
    const token = await issueToken(cluster.url(A), org.id);
    const created = await call(cluster.url(A), 'POST', SSO, { body: configBody(org.id, cert), headers: bearer(token, ALL) });
    expect(created.status).toBe(200);
    const changeId = created.headers.get('x-change-id') ?? '';
    const patched = await call(cluster.url(B), 'PATCH', SSO, { body: { organizationId: org.id, isActive: false }, headers: bearer(token) });
    expect(patched.headers.get('x-change-id')).toMatch(/^[0-9a-f-]{36}$/);
    const rotated = await rotate(A, org.id, {});
    expect(rotated.headers.get('x-change-id')).toMatch(/^[0-9a-f-]{36}$/);

    for (const region of [A, B]) {
      const own = await call(cluster.url(region), 'GET', `/organizations/replication/changes/${changeId}`, { headers: slashidHeaders({ id: org.id, api_key: (rotated.body as { api_key: string }).api_key }) });
      expect(own.status).toBe(200);
      expect(own.body.result).toMatchObject({ change_id: changeId, state: 'complete', complete: true, pending_regions: [], superseded: [] });
      const infisical = await call(cluster.url(region), 'GET', `/api/v1/replication/changes/${changeId}`, { headers: bearer(token) });
      expect(infisical.body).toMatchObject({ change_id: changeId, state: 'complete' });
      // Another organization's credentials learn nothing, not even that the change exists.
      const stranger = await call(cluster.url(region), 'GET', `/organizations/replication/changes/${changeId}`, { headers: slashidHeaders(other) });
      expect(stranger.status).toBe(404);
      const strangerToken = await issueToken(cluster.url(region), other.id);
      expect((await call(cluster.url(region), 'GET', `/api/v1/replication/changes/${changeId}`, { headers: bearer(strangerToken) })).status).toBe(404);
    }
  });

  test('a local_region create that lost is not silent: its change reads superseded and names the winner', async () => {
    const org = await createOrg(cluster.url(A), 'silent', { headers: ALL });
    const token = await issueToken(cluster.url(A), org.id);
    partition();
    let lost;
    try {
      const kept = await call(cluster.url(A), 'POST', SSO, { body: configBody(org.id, cert, { issuer: 'kept' }), headers: bearer(token) });
      expect(kept.status).toBe(200);
      lost = await call(cluster.url(B), 'POST', SSO, { body: configBody(org.id, cert, { issuer: 'lost' }), headers: bearer(token) });
      expect(lost.status).toBe(200);
    } finally {
      heal();
    }
    expect((await converged(org.id, token)).issuer).toBe('kept');
    const changeId = lost.headers.get('x-change-id') ?? '';
    let status: { state?: string; superseded?: { region: string; winner: { table: string; originRegion: string } }[] } = {};
    expect(await eventually(async () => {
      status = (await call(cluster.url(B), 'GET', `/api/v1/replication/changes/${changeId}`, { headers: bearer(token) })).body;
      return status.state === 'superseded';
    })).toBe(true);
    expect(status.superseded?.[0]).toMatchObject({ region: A, winner: { table: 'infisical_saml_configs', originRegion: A } });
  });

  test('a replay under all_regions answers 408 again while its change is still pending, then the stored answer', async () => {
    const org = await createOrg(cluster.url(A), 'replayer', { headers: ALL });
    const token = await issueToken(cluster.url(A), org.id);
    const body = configBody(org.id, cert);
    const headers = bearer(token, { ...ALL, 'SlashID-Required-Consistency-Timeout': '2', 'Idempotency-Key': 'replay-after-408' });
    partition();
    try {
      const first = await call(cluster.url(B), 'POST', SSO, { body, headers });
      expect(first.status).toBe(408);
      expect(first.body.message).toMatch(/GET \/api\/v1\/replication\/changes\//);
      const again = await call(cluster.url(B), 'POST', SSO, { body, headers });
      expect(again.status).toBe(408);
      // The retry's 408 is the replay's: marked so, with the first request's change.
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(again.headers.get('x-change-id')).toBe(first.headers.get('x-change-id'));
    } finally {
      heal();
    }
    const replay = await call(cluster.url(B), 'POST', SSO, { body, headers: { ...headers, 'SlashID-Required-Consistency-Timeout': '20' } });
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
  });

  test('a create that lost, replayed under all_regions in the region whose write won, answers 409 there too, not 408 "keeps replicating"', async () => {
    const org = await createOrg(cluster.url(A), 'lost-elsewhere', { headers: ALL });
    const token = await issueToken(cluster.url(A), org.id);
    const body = configBody(org.id, cert, { issuer: 'lost' });
    const headers = bearer(token, { ...ALL, 'SlashID-Required-Consistency-Timeout': '2', 'Idempotency-Key': 'lost-replayed-elsewhere' });
    partition();
    let first;
    try {
      expect((await call(cluster.url(A), 'POST', SSO, { body: configBody(org.id, cert, { issuer: 'kept' }), headers: bearer(token) })).status).toBe(200);
      first = await call(cluster.url(B), 'POST', SSO, { body, headers });
      expect(first.status).toBe(408);
    } finally {
      heal();
    }
    expect((await converged(org.id, token)).issuer).toBe('kept');
    // us-iowa applied europe-belgium's change (its key row with it) and judged its config superseded.
    const changeId = first.headers.get('x-change-id') ?? '';
    expect(await eventually(async () => (await call(cluster.url(A), 'GET', `/api/v1/replication/changes/${changeId}`, { headers: bearer(token) })).body.state === 'superseded')).toBe(true);
    // The retry in us-iowa replays the key europe-belgium stored: its change lost, in us-iowa itself.
    const replay = await call(cluster.url(A), 'POST', SSO, { body, headers: { ...headers, 'SlashID-Required-Consistency-Timeout': '20' } });
    expect({ status: replay.status, replayed: replay.headers.get('idempotent-replayed') }).toEqual({ status: 409, replayed: 'true' });
    expect(replay.body.message).toMatch(LOST);
  });
});
