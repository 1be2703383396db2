/**
 * The re-seed marks its target joining in every region's Redis before it copies (no region collects a
 * tombstone the target may lack meanwhile). Where that mark cannot be written, the re-seed stops there,
 * saying what failed and what to do, and copies nothing: it went on, copied, and then failed at its end
 * with "was marked as needing a re-seed again while this one copied", which was not what happened.
 */
import { Client } from 'pg';
import { createRedis, replicationKeys } from '../../src/redis';
import { removeMember } from '../../src/replication/member-record';
import { createOrg, eventually, runReseed, startCluster, type Cluster } from '../support/harness';
import { REDIS_URL } from '../support/env';

const [ORIGIN, PEER, TARGET] = ['us-iowa', 'europe-belgium', 'asia-japan'];
let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster('reseedmark', [ORIGIN, PEER, TARGET]);
}, 120_000);
afterAll(async () => {
  await cluster?.stop();
});

test('a target no longer registered when the re-seed marks it joining (removed while the re-seed waited) stops the re-seed there, naming it; nothing is copied', async () => {
  const keys = replicationKeys(cluster.deployment.file.redisKeyPrefix);
  const redis = createRedis(REDIS_URL, 'reseed-mark-test', { queueWhileOffline: true });
  const peerDbName = new URL(cluster.deployment.configFor(PEER).region.databaseUrl).pathname.slice(1);
  const watcher = new Client({ connectionString: cluster.deployment.configFor(ORIGIN).region.databaseUrl });
  await watcher.connect();
  // Stopped: a running target would register itself again at once.
  await cluster.proc(TARGET).stop();
  const appName = `reseed-mark-${process.pid}`;
  const previousAppName = process.env.PGAPPNAME;
  process.env.PGAPPNAME = appName;
  cluster.proc(PEER).pause();
  let result;
  try {
    // The peer lacks this change: the re-seed waits for it, past its check of the members.
    const org = await createOrg(cluster.url(ORIGIN), 'made while the target is down');
    const running = runReseed(cluster, PEER, TARGET, ['--wait', '60']);
    // It connects to the peer's database once the members are checked.
    const waiting = await eventually(async () => {
      const r = await watcher.query('SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND datname = $2', [appName, peerDbName]);
      return r.rows.length > 0;
    }, 30_000);
    expect(waiting).toBe(true);
    // Removed as `npm run members -- remove` does it (a removal recorded, then the entry deleted): an entry deleted
    // alone is one the running regions write back.
    expect(await removeMember(redis, keys, TARGET)).toMatchObject({ removed: true });
    cluster.proc(PEER).resume();
    result = await running;
    // Nothing was copied: the organization made while the target was down is not there.
    const target = new Client({ connectionString: cluster.deployment.configFor(TARGET).region.databaseUrl });
    await target.connect();
    try {
      expect((await target.query('SELECT 1 FROM organizations WHERE id = $1', [org.id])).rows).toEqual([]);
    } finally {
      await target.end();
    }
  } finally {
    cluster.proc(PEER).resume();
    if (previousAppName === undefined) delete process.env.PGAPPNAME;
    else process.env.PGAPPNAME = previousAppName;
    redis.disconnect();
    await watcher.end();
  }
  expect(result.status).toBe(1);
  expect(result.stderr).toMatch(
    new RegExp(`could not mark ${TARGET} joining in ${TARGET}'s Redis: it is not registered there \\(removed, or that Redis lost its data, since this re-seed began\\)\\. Nothing was copied\\. Start ${TARGET} \\(it registers itself\\), then re-seed`),
  );
  expect(result.stderr).not.toMatch(/marked as needing a re-seed again/);
}, 180_000);
