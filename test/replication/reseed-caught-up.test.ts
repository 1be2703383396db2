/**
 * The re-seed copies from a peer only once the peer has caught up: every change another origin committed
 * before the re-seed started must be applied at the peer (its delivery to the peer confirmed), and the peer
 * must hold no failing or parked change. A change the target's inbox cap trimmed reaches it only through
 * the copy, so a copy from a peer that lacks it would lose it for good. The command waits (--wait) for the
 * peer, then refuses, naming what is missing; --force copies anyway.
 */
import { Client } from 'pg';
import { readMembers, removeMember, updateMember, writeMember } from '../../src/replication/member-record';
import { RAISE_COLLECTED_THROUGH_SQL } from '../../src/replication/tombstones';
import { createRedis, replicationKeys } from '../../src/redis';
import { compareStreamIds } from '../../src/replication/stream';
import { adminHeaders, call, createOrg, eventually, runReseed, runScript, startCluster, type Cluster } from '../support/harness';
import { REDIS_URL } from '../support/env';

const [ORIGIN, PEER, TARGET] = ['us-iowa', 'europe-belgium', 'asia-japan'];
let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster('reseedcaught', [ORIGIN, PEER, TARGET]);
}, 120_000);
afterAll(async () => {
  await cluster?.stop(0);
});

/** A connection to a region's database (the caller ends it). */
async function databaseOf(region: string): Promise<Client> {
  const db = new Client({ connectionString: cluster.deployment.configFor(region).region.databaseUrl });
  await db.connect();
  return db;
}

test('refuses to copy from a peer that has not applied an origin\'s change, and copies once it has', async () => {
  cluster.proc(PEER).pause();
  let refused;
  try {
    await createOrg(cluster.url(ORIGIN), 'the peer lacks this');
    refused = await runReseed(cluster, PEER, TARGET, ['--wait', '1']);
  } finally {
    cluster.proc(PEER).resume();
  }
  expect(refused.status).toBe(1);
  expect(refused.stderr).toMatch(new RegExp(`${PEER} has not caught up.*${ORIGIN} has 1 change\\(s\\) ${PEER} has not applied yet.*--force`));
  // Once the peer applied it (its relay confirms within seconds), the same command copies.
  const copied = await runReseed(cluster, PEER, TARGET, ['--wait', '30']);
  expect({ status: copied.status, stderr: copied.stderr }).toEqual({ status: 0, stderr: '' });
  expect(JSON.parse(copied.stdout)).toMatchObject({ from: PEER, to: TARGET });
}, 120_000);

test('--force copies without the check', async () => {
  cluster.proc(PEER).pause();
  try {
    await createOrg(cluster.url(ORIGIN), 'forced');
    const forced = await runReseed(cluster, PEER, TARGET, ['--force']);
    expect({ status: forced.status, stderr: forced.stderr }).toEqual({ status: 0, stderr: '' });
  } finally {
    cluster.proc(PEER).resume();
  }
}, 120_000);

test('an origin whose process is down (its database and Redis up) does not hold the check back: the peer\'s ack in its Redis counts', async () => {
  // all_regions: answered once every region acked, the peer among them; the origin stops right after, before
  // its relay records those acks in its database (every 2 s).
  const res = await call(cluster.url(ORIGIN), 'POST', '/admin/organizations', { body: { name: 'acked, then the origin stops' }, headers: { ...adminHeaders, 'SlashID-Required-Consistency': 'all_regions' } });
  cluster.proc(ORIGIN).pause();
  try {
    expect(res.status).toBe(201);
    const copied = await runReseed(cluster, PEER, TARGET, ['--wait', '3']);
    expect({ status: copied.status, stderr: copied.stderr }).toEqual({ status: 0, stderr: '' });
  } finally {
    cluster.proc(ORIGIN).resume();
  }
}, 120_000);

/** With a row the test writes into the peer's `table`, the re-seed is refused saying `why`; --force copies anyway. */
async function refusedForPeerRow(table: string, insert: string, why: RegExp): Promise<void> {
  const peer = await databaseOf(PEER);
  try {
    await peer.query(insert, [ORIGIN]);
    // No wait: the row stays until the test takes it out, so waiting would not change the answer.
    const refused = await runReseed(cluster, PEER, TARGET, ['--wait', '0']);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(why);
    const forced = await runReseed(cluster, PEER, TARGET, ['--force']);
    expect({ status: forced.status, stderr: forced.stderr }).toEqual({ status: 0, stderr: '' });
  } finally {
    await peer.query(`DELETE FROM ${table}`);
    await peer.end();
  }
}

test('a peer that discarded a change is refused (it lacks that change for good); --force copies anyway', async () => {
  await refusedForPeerRow(
    'replication_discarded',
    `INSERT INTO replication_discarded (change_id, origin_region, event, failures, reason, last_error, first_failed_at, parked_at)
     VALUES ('01a2a000-0000-7000-8000-0000000000dd', $1, '{}'::jsonb, 1, 'unknown-table', 'test', now(), now())`,
    new RegExp(`${PEER} discarded 1 change\\(s\\) it could not apply.*re-seed from another region; --force copies anyway`),
  );
}, 120_000);

test('a peer holding a parked change is refused, naming it (it lacks that change until an upgrade or an operator resolves it); --force copies anyway', async () => {
  await refusedForPeerRow(
    'replication_failures',
    `INSERT INTO replication_failures (change_id, origin_region, event, failures, reason, last_error, parked_at)
     VALUES ('01a2a000-0000-7000-8000-0000000000ee', $1, '{}'::jsonb, 3, 'apply-failed', 'test', now())`,
    new RegExp(`${PEER} has not caught up.*${PEER} holds 0 change\\(s\\) failing and 1 parked`),
  );
}, 120_000);

test('a peer holding a change still failing there (not parked yet) is refused, naming it; --force copies anyway', async () => {
  await refusedForPeerRow(
    'replication_failures',
    `INSERT INTO replication_failures (change_id, origin_region, event, failures, reason, last_error)
     VALUES ('01a2a000-0000-7000-8000-0000000000ef', $1, '{}'::jsonb, 1, 'apply-failed', 'test')`,
    new RegExp(`${PEER} has not caught up.*${PEER} holds 1 change\\(s\\) failing and 0 parked`),
  );
}, 120_000);

test('a peer that needs a re-seed itself is refused (its origins count what its cap trimmed as confirmed)', async () => {
  const redis = createRedis(REDIS_URL, 'reseed-test', { queueWhileOffline: true });
  const keys = replicationKeys(cluster.deployment.file.redisKeyPrefix);
  try {
    await updateMember(redis, keys, PEER, { state: 'joining' });
    const refused = await runReseed(cluster, PEER, TARGET, ['--wait', '1']);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(new RegExp(`${PEER} is joining in .*re-seed from an active region`));
    // Another member is active: the message sends the operator to it, not to marking regions active.
    expect(refused.stderr).not.toMatch(/No member is active/);
  } finally {
    await updateMember(redis, keys, PEER, { state: 'active' });
    redis.disconnect();
  }
}, 120_000);

test('with every member joining (each region\'s database replaced at once), the refusal says how to start over: activate the one to keep', async () => {
  const redis = createRedis(REDIS_URL, 'reseed-test', { queueWhileOffline: true });
  const keys = replicationKeys(cluster.deployment.file.redisKeyPrefix);
  try {
    for (const r of [ORIGIN, PEER, TARGET]) await updateMember(redis, keys, r, { state: 'joining' });
    const refused = await runReseed(cluster, PEER, TARGET, ['--wait', '1']);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(new RegExp(`${PEER} is joining in .*No member is active there.*npm run members -- activate <region>.*Starting over`));
  } finally {
    for (const r of [ORIGIN, PEER, TARGET]) await updateMember(redis, keys, r, { state: 'active' });
    redis.disconnect();
  }
}, 120_000);

test('a member the config does not name (added at runtime, the config left as it was) is refused: its Redis would get no mark, its changes no check', async () => {
  const redis = createRedis(REDIS_URL, 'reseed-test', { queueWhileOffline: true });
  const keys = replicationKeys(cluster.deployment.file.redisKeyPrefix);
  try {
    await writeMember(redis, keys, 'mars-base', { state: 'active' });
    const before = await redis.hget(keys.members, TARGET);
    const refused = await runReseed(cluster, PEER, TARGET, ['--force']);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/records mars-base as member, which this config does not name \(added at runtime\?\): re-seed with a config that names every member/);
    // Refused before anything was done: the target's entry is as it was (a re-seed marks it joining first).
    expect(await redis.hget(keys.members, TARGET)).toBe(before);
  } finally {
    // Removed as `npm run members -- remove` does it: the running regions write back an entry deleted alone.
    await removeMember(redis, keys, 'mars-base');
    redis.disconnect();
  }
}, 120_000);

test('copies every row of a table longer than one page of the copy: 1,200 organizations the target lacks', async () => {
  // Rows the peer holds and the target lacks (the target's inbox cap trimmed their changes), made by hand
  // in the peer's database: the copy reads 500 rows a page. Inserted in descending key order, so that the
  // table's physical order is not its key order: a page read without its ORDER BY would skip rows.
  const [peer, target] = await Promise.all([databaseOf(PEER), databaseOf(TARGET)]);
  const restored = async (db: Client) => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM organizations WHERE name LIKE 'trimmed %'`)).rows[0]?.n;
  try {
    await peer.query(
      `INSERT INTO organizations (id, name, created_at, updated_at, version, created_version, origin_region)
       SELECT ('01a2c000-0000-7000-8000-' || lpad(g::text, 12, '0'))::uuid, 'trimmed ' || g, now(), now(), v, v, $2
         FROM generate_series(1200, 1, -1) g, LATERAL (SELECT $1 || '.' || lpad(g::text, 6, '0') || '.' || $2 AS v) x`,
      [String(Date.now()).padStart(15, '0'), PEER],
    );
    expect(await restored(target)).toBe(0);
    // No writes meanwhile: the copy reports each of the peer's rows once (a page boundary counted twice
    // would over-report it).
    const held = (await peer.query<{ n: number }>('SELECT count(*)::int AS n FROM organizations')).rows[0]?.n;
    const copied = await runReseed(cluster, PEER, TARGET, ['--wait', '30']);
    expect({ status: copied.status, stderr: copied.stderr }).toEqual({ status: 0, stderr: '' });
    expect(JSON.parse(copied.stdout).tables.organizations.rows).toBe(held);
    expect(await restored(target)).toBe(1200);
  } finally {
    // Made by hand, they have no change to replicate: taken out of both again.
    await peer.query(`DELETE FROM organizations WHERE name LIKE 'trimmed %'`);
    await target.query(`DELETE FROM organizations WHERE name LIKE 'trimmed %'`);
    await peer.end();
    await target.end();
  }
}, 120_000);

test('removes every stale row whose tombstone the peer collected, more than one page of them: 1,200 organizations', async () => {
  // The target's database restored from an old backup: it holds rows created long ago that were deleted
  // since, and whose tombstones the peer collected (below its cut-off). The removal reads 500 rows a page.
  const [peer, target] = await Promise.all([databaseOf(PEER), databaseOf(TARGET)]);
  const stale = async () => (await target.query<{ n: number }>(`SELECT count(*)::int AS n FROM organizations WHERE name LIKE 'restored %'`)).rows[0]?.n;
  try {
    await peer.query(RAISE_COLLECTED_THROUGH_SQL, ['000002000000000.000000.']);
    await target.query(
      `INSERT INTO organizations (id, name, created_at, updated_at, version, created_version, origin_region)
       SELECT ('01a2d000-0000-7000-8000-' || lpad(g::text, 12, '0'))::uuid, 'restored ' || g, now(), now(), v, v, $1
         FROM generate_series(1, 1200) g, LATERAL (SELECT '000001000000000.' || lpad(g::text, 6, '0') || '.' || $1 AS v) x`,
      [TARGET],
    );
    // And a row the target holds alone that was created after the peer's cut-off (its own write, or a
    // third origin's, that has not reached the peer yet): the peer lacking it says nothing, so it stays.
    const recent = `${String(Date.now()).padStart(15, '0')}.000001.${TARGET}`;
    await target.query(
      `INSERT INTO organizations (id, name, created_at, updated_at, version, created_version, origin_region)
       VALUES ('01a2d000-0000-7000-8000-100000000001', 'recent, not at the peer yet', now(), now(), $1, $1, $2)`,
      [recent, TARGET],
    );
    // An idempotency key the target holds and the peer lacks, created below the cut-off and not expired:
    // each region prunes those itself, so an absent key in the peer says nothing of its deletion. It stays.
    await target.query(
      `INSERT INTO idempotency_keys (id, org_id, endpoint, idempotency_key, request_hash, response_status, response_body,
                                     created_at, expires_at, updated_at, version, created_version, origin_region)
       VALUES ('reseed-kept-key', '01a2d000-0000-7000-8000-100000000002', 'POST /test', 'k', 'h', 201, '{}'::jsonb,
               now(), now() + interval '1 day', now(), $1, $1, $2)`,
      ['000001000000000.000001.' + TARGET, TARGET],
    );
    const copied = await runReseed(cluster, PEER, TARGET, ['--wait', '30']);
    expect({ status: copied.status, stderr: copied.stderr }).toEqual({ status: 0, stderr: '' });
    expect(JSON.parse(copied.stdout).tables.organizations.removed).toBe(1200);
    expect(JSON.parse(copied.stdout).tables.idempotency_keys.removed).toBe(0);
    expect(await stale()).toBe(0);
    // The target took the peer's cut-off over (so it refuses from now on what the peer refuses).
    const cutoff = async (db: Client) => (await db.query<{ t: string }>('SELECT collected_through AS t FROM replication_horizon WHERE id = 1')).rows[0]?.t ?? '';
    expect(await cutoff(target) >= await cutoff(peer)).toBe(true);
    expect((await target.query(`SELECT version FROM organizations WHERE id = '01a2d000-0000-7000-8000-100000000001'`)).rows).toEqual([{ version: recent }]);
    expect((await target.query(`SELECT count(*)::int AS n FROM idempotency_keys WHERE id = 'reseed-kept-key'`)).rows).toEqual([{ n: 1 }]);
  } finally {
    await target.query(`DELETE FROM idempotency_keys WHERE id = 'reseed-kept-key'`);
    await target.query(`DELETE FROM organizations WHERE name LIKE 'restored %' OR id = '01a2d000-0000-7000-8000-100000000001'`);
    await peer.end();
    await target.end();
  }
}, 120_000);

test('a target marked behind again while the copy runs stays joining, and the re-seed fails saying so (it does not report success)', async () => {
  const redis = createRedis(REDIS_URL, 'reseed-test-behind', { queueWhileOffline: true });
  const keys = replicationKeys(cluster.deployment.file.redisKeyPrefix);
  const target = await databaseOf(TARGET);
  const entry = async () => (await readMembers(redis, keys)).members.get(TARGET);
  try {
    // The copy is held at its first table until the test lets it go.
    await target.query('BEGIN');
    await target.query('LOCK TABLE organizations IN ACCESS EXCLUSIVE MODE');
    const run = runReseed(cluster, PEER, TARGET, ['--wait', '30']);
    // The re-seed marked the target joining under its token; a relay then finds the target's inbox trimmed
    // past changes it had not applied, and marks it joining again (relay-confirm.ts markBehind): the copy may lack them.
    expect(await eventually(async () => typeof (await entry())?.reseed === 'string', 30_000, 100)).toBe(true);
    await updateMember(redis, keys, TARGET, { state: 'joining' });
    await target.query('COMMIT');
    const res = await run;
    expect(res.status).toBe(1);
    expect(res.stderr).toMatch(new RegExp(`${TARGET} was marked as needing a re-seed again while this one copied.*it stays joining; run the re-seed again`));
    expect(await entry()).toMatchObject({ state: 'joining', reseed: null });
  } finally {
    await target.query('ROLLBACK').catch(() => undefined);
    await target.end();
    await updateMember(redis, keys, TARGET, { state: 'active' });
    redis.disconnect();
  }
}, 120_000);

test('bad arguments are refused before anything is done: no --to is a usage error (exit 2), a --wait that is not whole seconds exits 2 naming it', async () => {
  const redis = createRedis(REDIS_URL, 'reseed-test-args', { queueWhileOffline: true });
  const keys = replicationKeys(cluster.deployment.file.redisKeyPrefix);
  try {
    const before = await redis.hget(keys.members, TARGET);
    const usage = await runScript(cluster, 'reseed', ['--from', PEER]);
    expect(usage.status).toBe(2);
    expect(usage.stderr).toMatch(/^usage: npm run reseed -- --from <peer region> --to <region to re-seed>/);
    const badWait = await runReseed(cluster, PEER, TARGET, ['--wait', 'soon']);
    expect({ status: badWait.status, stdout: badWait.stdout }).toEqual({ status: 2, stdout: '' });
    expect(badWait.stderr).toBe("reseed failed: --wait takes whole seconds (got 'soon')\n");
    // Nothing was marked (a re-seed marks the target joining under a token first).
    expect(await redis.hget(keys.members, TARGET)).toBe(before);
  } finally {
    redis.disconnect();
  }
}, 120_000);

test('a pending entry the inbox still holds is not acked as trimmed, even when it is the oldest entry left: its change is still to be applied', async () => {
  const redis = createRedis(REDIS_URL, 'reseed-test-pending', { queueWhileOffline: true });
  const keys = replicationKeys(cluster.deployment.file.redisKeyPrefix);
  const inbox = keys.inbox(TARGET);
  const pending = async () => ((await redis.xpending(inbox, TARGET, '-', '+', 1000)) as [string, string, number, number][]).map((r) => r[0]);
  cluster.proc(TARGET).pause();
  let copied;
  try {
    // A change delivered to the target while it is paused, read and not acked yet (by its applier's blocked
    // read, or else by a consumer of the test): pending, as an entry the applier has not applied yet. Made
    // the oldest entry of the inbox.
    const last = (await redis.xrevrange(inbox, '+', '-', 'COUNT', 1))[0]?.[0] ?? '0-0';
    await createOrg(cluster.url(ORIGIN), 'pending in the target inbox');
    let ids: string[] = [];
    expect(await eventually(async () => {
      await redis.call('XREADGROUP', 'GROUP', TARGET, 'reseed-test', 'COUNT', '1000', 'STREAMS', inbox, '>');
      ids = (await pending()).filter((id) => compareStreamIds(id, last) > 0);
      return ids.length > 0;
    }, 30_000, 100)).toBe(true);
    await redis.xtrim(inbox, 'MINID', ids[0] as string);
    copied = await runReseed(cluster, PEER, TARGET, ['--wait', '30']);
    const still = await pending();
    expect(ids.filter((id) => !still.includes(id))).toEqual([]);
  } finally {
    cluster.proc(TARGET).resume();
    redis.disconnect();
  }
  expect({ status: copied?.status, stderr: copied?.stderr }).toEqual({ status: 0, stderr: '' });
}, 120_000);

test('a target no region\'s Redis records as a member (not started yet) is refused, naming it, and nothing is marked', async () => {
  const redis = createRedis(REDIS_URL, 'reseed-test-unregistered', { queueWhileOffline: true });
  const keys = replicationKeys(cluster.deployment.file.redisKeyPrefix);
  // Paused, no region's processes write its entry back meanwhile: the target's would register it again, the
  // others put back the entry of a member they knew (an entry deleted alone was lost, not removed).
  for (const r of [ORIGIN, PEER, TARGET]) cluster.proc(r).pause();
  const entry = await redis.hget(keys.members, TARGET);
  let refused;
  try {
    expect(entry).not.toBeNull();
    await redis.hdel(keys.members, TARGET);
    refused = await runReseed(cluster, PEER, TARGET, ['--wait', '1']);
    expect(await redis.hget(keys.members, TARGET)).toBeNull();
  } finally {
    if (entry !== null) await redis.hset(keys.members, TARGET, entry);
    for (const r of [ORIGIN, PEER, TARGET]) cluster.proc(r).resume();
    redis.disconnect();
  }
  expect(refused?.status).toBe(1);
  expect(refused?.stderr).toMatch(new RegExp(`${TARGET} is not registered in ${ORIGIN}'s Redis yet: start ${TARGET} first`));
}, 120_000);

test('a peer whose own inbox cap trimmed changes it had not applied is refused, even with --force (it lacks them for good)', async () => {
  // Last in this file: the peer is left lacking a change (its origin's relay marks it behind afterwards).
  const redis = createRedis(REDIS_URL, 'reseed-test-peer-behind', { queueWhileOffline: true });
  const keys = replicationKeys(cluster.deployment.file.redisKeyPrefix);
  const inbox = keys.inbox(PEER);
  cluster.proc(PEER).pause();
  let refused;
  try {
    // Two changes delivered to the paused peer and read, not acked (pending); the older one then trimmed.
    const last = (await redis.xrevrange(inbox, '+', '-', 'COUNT', 1))[0]?.[0] ?? '0-0';
    await createOrg(cluster.url(ORIGIN), 'trimmed from the peer inbox');
    await createOrg(cluster.url(ORIGIN), 'left in the peer inbox');
    let ids: string[] = [];
    expect(await eventually(async () => {
      await redis.call('XREADGROUP', 'GROUP', PEER, 'reseed-test', 'COUNT', '1000', 'STREAMS', inbox, '>');
      ids = ((await redis.xpending(inbox, PEER, '-', '+', 1000)) as [string, string, number, number][]).map((r) => r[0]).filter((id) => compareStreamIds(id, last) > 0);
      return ids.length >= 2;
    }, 30_000, 100)).toBe(true);
    await redis.xtrim(inbox, 'MINID', ids[ids.length - 1] as string);
    refused = await runReseed(cluster, PEER, TARGET, ['--force']);
  } finally {
    cluster.proc(PEER).resume();
    redis.disconnect();
  }
  expect(refused?.status).toBe(1);
  expect(refused?.stderr).toMatch(new RegExp(`${PEER} fell behind its inbox cap too; re-seed from another region`));
}, 120_000);
