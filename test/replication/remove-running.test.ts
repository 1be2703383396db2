/**
 * `npm run members -- remove <region>` refuses a region that still runs (its applier read its inbox during
 * the check): a running region registers itself again seconds later, so the removal did not hold, though it
 * answered "removed": true. `--force` removes it all the same; a region stopped just before is removed
 * at once (docs/operations.md, "Removing a region").
 */
import { createRedis, replicationKeys } from '../../src/redis';
import { readMembers } from '../../src/replication/member-record';
import { eventually, runScript, startCluster, type Cluster } from '../support/harness';
import { REDIS_URL } from '../support/env';

const [STAYING, GONE] = ['us-iowa', 'asia-japan'];
let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster('remove-running', [STAYING, GONE]);
}, 120_000);
afterAll(async () => {
  await cluster?.stop();
});

test('a running region is not removed (nothing is done, and the message says to stop it or use --force); --force removes it, and it registers itself again', async () => {
  const redis = createRedis(REDIS_URL, 'remove-running-test', { queueWhileOffline: true });
  const keys = replicationKeys(cluster.deployment.file.redisKeyPrefix);
  try {
    const refused = await runScript(cluster, 'members', ['remove', GONE]);
    expect(refused.status).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toMatch(
      new RegExp(`(^|\\n)members failed: ${GONE} is still running: its process.s connection \\S+:\\d+:\\S+ \\(from \\S+\\) issued a command \\d+ s ago, and a running region registers itself again\\. Stop its processes \\(its /healthz no longer answers\\), then remove it; --force removes it all the same\\. Nothing was done\\.\\n$`),
    );
    expect((await readMembers(redis, keys)).members.has(GONE)).toBe(true);
    expect(await redis.hget(keys.departed, GONE)).toBeNull();
    expect(await redis.exists(keys.inbox(GONE))).toBe(1);

    // --force: removed, and back in the record seconds later (why the check is there).
    const forced = await runScript(cluster, 'members', ['remove', GONE, '--force']);
    expect(forced.stderr).toMatch(/^warning: .* still names asia-japan; regions using it keep counting it\n$/);
    expect(JSON.parse(forced.stdout)).toMatchObject({ region: GONE, removed: true });
    expect(await eventually(async () => (await readMembers(redis, keys)).members.has(GONE), 15_000, 200)).toBe(true);
  } finally {
    redis.disconnect();
  }
}, 120_000);

test('a region stopped just before is removed at once', async () => {
  const redis = createRedis(REDIS_URL, 'remove-running-test', { queueWhileOffline: true });
  const keys = replicationKeys(cluster.deployment.file.redisKeyPrefix);
  try {
    await cluster.proc(GONE).stop(10_000);
    const removed = await runScript(cluster, 'members', ['remove', GONE]);
    expect(removed.stderr).toMatch(/still names asia-japan/);
    expect(removed.status).toBe(0);
    expect(JSON.parse(removed.stdout)).toMatchObject({ region: GONE, removed: true });
    expect((await readMembers(redis, keys)).members.has(GONE)).toBe(false);
  } finally {
    redis.disconnect();
  }
}, 120_000);
