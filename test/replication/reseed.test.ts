/**
 * Bounded Redis (issue G, item 7): the change stream is capped; a region that is down while more changes
 * than the cap are written falls behind it, is reported as needing a re-seed, and `npm run reseed` (here
 * its compiled script) brings it back from a peer: identical databases, and replication goes on.
 * Tombstones (issue H, item 4): a deletion the returning region missed is not collected anywhere before
 * the re-seed (the region still holds the live row), and is collected in both once it is re-seeded.
 */
import { Client } from 'pg';
import { inFlightMs } from '../../src/replication/horizon';
import { RAISE_COLLECTED_THROUGH_SQL } from '../../src/replication/tombstones';
import { adminHeaders, call, createOrg, eventually, reseedSeen, runReseed, slashidHeaders, startCluster, type Cluster } from '../support/harness';

const REGIONS = ['us-iowa', 'asia-japan'];
const CAP = 100;
/** The regions' write bound: their watermarks stay inFlightMs of it (13 s) behind their clocks, not 30 s. */
const WRITE_TX_MS = 3000;
let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster('reseed', REGIONS, {
    extra: { streamMaxLength: CAP, tombstoneCollection: { intervalMs: 300, minAgeMs: 0 }, writeTransactionTimeoutMs: WRITE_TX_MS },
  });
}, 90_000);
afterAll(async () => {
  await cluster?.stop(0);
});

const status = async (region: string) => (await call(cluster.url(region), 'GET', '/admin/replication', { headers: adminHeaders })).body;
const digest = async (region: string) => JSON.stringify((await call(cluster.url(region), 'GET', '/admin/replication/digest', { headers: adminHeaders })).body.tables);
/** An API key row in a region's database: live, a tombstone (revoked), or absent (collected). */
async function keyState(region: string, keyId: string): Promise<string> {
  const db = new Client({ connectionString: cluster.deployment.file.regions.find((r) => r.id === region)?.databaseUrl });
  await db.connect();
  try {
    const r = await db.query('SELECT deleted_at IS NOT NULL AS deleted FROM api_keys WHERE key_id = $1', [keyId]);
    return r.rows.length === 0 ? 'absent' : r.rows[0].deleted ? 'tombstone' : 'live';
  } finally {
    await db.end();
  }
}
/** A region's collection cut-off (replication_horizon), raised to `atLeast` first when given. */
async function horizonOf(region: string, atLeast?: string): Promise<string> {
  const db = new Client({ connectionString: cluster.deployment.file.regions.find((r) => r.id === region)?.databaseUrl });
  await db.connect();
  try {
    if (atLeast) {
      await db.query(RAISE_COLLECTED_THROUGH_SQL, [atLeast]);
    }
    const r = await db.query<{ through: string }>('SELECT collected_through AS through FROM replication_horizon WHERE id = 1');
    return r.rows[0]?.through ?? '';
  } finally {
    await db.end();
  }
}
const memberState = async (region: string) => (await status('us-iowa')).members.find((m: { region: string }) => m.region === region)?.state;

test('a region that falls behind the stream cap is marked as needing a re-seed and is re-seeded from a peer with one command', async () => {
  const us = cluster.url('us-iowa');
  await createOrg(us, 'before', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });
  const keyed = await createOrg(us, 'keyed', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });
  const oldKey = /^sidk_([^.]+)\./.exec(keyed.api_key)?.[1] ?? '';
  await cluster.proc('asia-japan').stop();
  // Revoked while asia-japan is away: the change is trimmed before it reads it.
  expect((await call(us, 'POST', `/admin/organizations/${keyed.id}/api-keys`, { headers: adminHeaders })).status).toBe(201);
  const revokedAt = Date.now();
  const orgs = [];
  for (let i = 0; i < 4 * CAP; i++) orgs.push(await createOrg(us, `while away ${i}`));

  const s = await status('us-iowa');
  expect(s.stream.length).toBeLessThan(4 * CAP);
  expect(s.needs_reseed).toEqual(['asia-japan']);
  expect(s.pending.find((g: { region: string }) => g.region === 'asia-japan').needs_reseed).toBe(true);

  // us-iowa's relay, confirming the changes the cap trimmed before asia-japan read them (its group is behind
  // the cap), marks it joining while it is away: no horizon anywhere, so the revoked key's tombstone stays
  // while asia-japan still holds the key live. (Once its group has read past the trim, a change gone from
  // the inbox is delivered again instead, once: it may have been lost at the tail of an append-only file.)
  expect(await eventually(async () => (await memberState('asia-japan')) === 'joining', 30_000, 200)).toBe(true);
  cluster.proc('asia-japan').start();
  await cluster.proc('asia-japan').waitReady(60_000);
  // What the stream still holds arrives (asia-japan's group has read and acked its whole inbox); what the
  // cap trimmed does not.
  const caughtUp = async () => {
    const g = (await status('us-iowa')).pending.find((x: { region: string }) => x.region === 'asia-japan');
    return g?.pending_acks === 0 && g?.undelivered === 0;
  };
  expect(await eventually(caughtUp, 30_000, 100)).toBe(true);
  expect(await digest('asia-japan')).not.toBe(await digest('us-iowa'));
  const held = async () => {
    const t = (await status('us-iowa')).tombstones;
    // Computed after a horizon without asia-japan's hold would have passed the revocation (and 5 s more).
    return Date.parse(t.computed_at) > revokedAt + inFlightMs(WRITE_TX_MS) + 5000 && t.horizon === null && t.held_by.some((h: { region: string; reason: string }) => h.region === 'asia-japan' && h.reason === 'joining');
  };
  expect(await eventually(held, 90_000, 200)).toBe(true);
  expect(await keyState('us-iowa', oldKey)).toBe('tombstone');
  // (asia-japan may or may not hold the revocation yet: that depends on which of its deliveries the inbox
  // cap trimmed and which its origin delivered again as lost. Either way it stays joining until re-seeded.)
  expect(await memberState('asia-japan')).toBe('joining');

  // A collection cut-off in the peer above asia-japan's own, and only just (no version lies between the
  // two, so it rules nothing out in this test): the re-seeded region must take it over, or it would apply
  // what the peer refuses (a late create of a row whose tombstone was collected) and hold that row alone.
  const own = await horizonOf('asia-japan');
  const peerCutoff = await horizonOf('us-iowa', `${own || '000000000000001.000000.'}0`);
  expect(peerCutoff > own).toBe(true);

  // Every delivery to asia-japan confirmed (applied and acked, or found trimmed from its inbox unacked): no
  // relay round can find more of them trimmed and mark it behind again during the copy, which the re-seed
  // would answer with "run the re-seed again". Under load the writes above take long enough that the last
  // trimmed deliveries (found once unconfirmed for 10 s) were still being found when the re-seed started.
  expect(await eventually(async () => (await status('us-iowa')).outbox.unconfirmed === 0, 60_000, 200)).toBe(true);

  // asia-japan's process paused meanwhile: its own collector, free to run once it is active again, would
  // raise its cut-off too and hide what the re-seed did.
  cluster.proc('asia-japan').pause();
  const run = await runReseed(cluster, 'us-iowa', 'asia-japan');
  const taken = await horizonOf('asia-japan');
  cluster.proc('asia-japan').resume();
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  expect(taken >= peerCutoff).toBe(true);
  const result = JSON.parse(run.stdout);
  expect(result.tables.organizations.rows).toBeGreaterThanOrEqual(4 * CAP + 1);

  expect(await eventually(async () => (await digest('asia-japan')) === (await digest('us-iowa')), 20_000, 200)).toBe(true);
  // The digests agree at once (the re-seed copied the rows); us-iowa's view of it follows a moment later.
  expect(await reseedSeen(cluster.url('us-iowa'))).toBe(true);
  expect((await status('us-iowa')).needs_reseed).toEqual([]);
  expect(await memberState('asia-japan')).toBe('active');
  // The re-seed brought the tombstone; now both regions collect it, and the old key stays refused.
  expect(await eventually(async () => (await keyState('us-iowa', oldKey)) === 'absent' && (await keyState('asia-japan', oldKey)) === 'absent', 90_000, 200)).toBe(true);
  expect((await call(cluster.url('asia-japan'), 'GET', '/organizations/sso/saml/provider-credentials', { headers: slashidHeaders(keyed) })).status).toBe(401);
  // Replication goes on: a later write reaches the re-seeded region, and an early key works there.
  const after = await createOrg(us, 'after', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });
  for (const o of [after, orgs[0]]) {
    if (!o) continue;
    expect((await call(cluster.url('asia-japan'), 'GET', '/organizations/sso/saml/provider-credentials', { headers: slashidHeaders(o) })).status).toBe(200);
  }
}, 400_000);
