/**
 * The re-seed copies from a peer only once the peer has caught up: every change another origin committed
 * before the re-seed started must be applied at the peer (its delivery to the peer confirmed), and the peer
 * must hold no failing or parked change. A change the target's inbox cap trimmed reaches it only through
 * the copy, so a copy from a peer that lacks it would lose it for good. The command waits (--wait) for the
 * peer, then refuses, naming what is missing; --force copies anyway.
 */
import { Client } from 'pg';
import { updateMember } from '../../src/replication/membership';
import { createRedis, replicationKeys } from '../../src/redis';
import { adminHeaders, call, createOrg, runReseed, startCluster, type Cluster } from '../support/harness';
import { REDIS_URL } from '../support/env';

const [ORIGIN, PEER, TARGET] = ['us-iowa', 'europe-belgium', 'asia-japan'];
let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster('reseedcaught', [ORIGIN, PEER, TARGET]);
}, 120_000);
afterAll(async () => {
  await cluster?.stop();
});

test('refuses to copy from a peer that has not applied an origin\'s change, and copies once it has', async () => {
  cluster.proc(PEER).pause();
  let refused;
  try {
    await createOrg(cluster.url(ORIGIN), 'the peer lacks this');
    refused = await runReseed(cluster, PEER, TARGET, ['--wait', '2']);
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
  const peer = new Client({ connectionString: cluster.deployment.configFor(PEER).region.databaseUrl });
  await peer.connect();
  try {
    await peer.query(insert, [ORIGIN]);
    const refused = await runReseed(cluster, PEER, TARGET, ['--wait', '1']);
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

test('a peer that needs a re-seed itself is refused (its origins count what its cap trimmed as confirmed)', async () => {
  const redis = createRedis(REDIS_URL, 'reseed-test', { queueWhileOffline: true });
  const keys = replicationKeys(cluster.deployment.file.redisKeyPrefix);
  try {
    await updateMember(redis, keys, PEER, { state: 'joining' });
    const refused = await runReseed(cluster, PEER, TARGET, ['--wait', '1']);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(new RegExp(`${PEER} is joining in .*re-seed from an active region`));
  } finally {
    await updateMember(redis, keys, PEER, { state: 'active' });
    redis.disconnect();
  }
}, 120_000);
