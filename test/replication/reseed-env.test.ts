/**
 * `npm run reseed` takes the deployment's Redis as a region does: REDIS_KEY_PREFIX (and REDIS_URL) over the
 * config file's, checked the same way. It read the file alone, so against a cluster run with
 * REDIS_KEY_PREFIX=x it looked for the members under the file's prefix, found none ("not registered"), and a
 * bad REDIS_KEY_PREFIX went unnoticed. `npm run members` checks the prefix the same way now too.
 */
import { createRedis } from '../../src/redis';
import { adminHeaders, call, createOrg, reseedSeen, runScript, startCluster, type Cluster } from '../support/harness';
import { deleteKeys, REDIS_URL, uniqueName } from '../support/env';

const [PEER, TARGET] = ['us-iowa', 'asia-japan'];
/** The cluster's prefix, set in the environment; the config file names another (the deployment's own). */
const PREFIX = `${uniqueName('reseedenv')}:`;
const BAD_PREFIX = /: REDIS_KEY_PREFIX must be 1 to 64 of A-Z a-z 0-9 _ \. : -, got 'saml\*'$/m;
let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster('reseedenv', [PEER, TARGET], { env: { REDIS_KEY_PREFIX: PREFIX } });
}, 120_000);
afterAll(async () => {
  await cluster?.stop(0);
  await deleteKeys(PREFIX);
});

/** How many keys the shared Redis holds under `prefix`. */
async function keysUnder(prefix: string): Promise<number> {
  const redis = createRedis(REDIS_URL, 'reseed-env-test', { queueWhileOffline: true });
  try {
    let [cursor, n] = ['0', 0];
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      n += keys.length;
      cursor = next;
    } while (cursor !== '0');
    return n;
  } finally {
    redis.disconnect();
  }
}

test('re-seeds a cluster run with REDIS_KEY_PREFIX set from that prefix, not the config file\'s (it found no members there and failed)', async () => {
  const org = await createOrg(cluster.url(PEER), 'before the re-seed', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });
  const run = await runScript(cluster, 'reseed', ['--from', PEER, '--to', TARGET], { REDIS_KEY_PREFIX: PREFIX });
  expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 0, stderr: '' });
  expect(JSON.parse(run.stdout).tables.organizations.rows).toBeGreaterThanOrEqual(1);
  // The region's own view follows the re-seed a moment later (reseedSeen).
  expect(await reseedSeen(cluster.url(PEER))).toBe(true);
  const status = (await call(cluster.url(PEER), 'GET', '/admin/replication', { headers: adminHeaders })).body;
  expect(status.needs_reseed).toEqual([]);
  expect(status.members.find((m: { region: string }) => m.region === TARGET)?.state).toBe('active');
  expect((await call(cluster.url(TARGET), 'GET', `/admin/organizations/${org.id}`, { headers: adminHeaders })).status).toBe(200);
  // Nothing was written under the prefix the file names: the regions use the environment's.
  expect(await keysUnder(cluster.deployment.file.redisKeyPrefix)).toBe(0);
}, 120_000);

test('a REDIS_KEY_PREFIX a region would refuse stops the re-seed and `members` with exit 2 and the region\'s message, before anything is read or written', async () => {
  const reseed = await runScript(cluster, 'reseed', ['--from', PEER, '--to', TARGET], { REDIS_KEY_PREFIX: 'saml*' });
  expect(reseed.status).toBe(2);
  expect(reseed.stderr).toMatch(BAD_PREFIX);
  expect(reseed.stdout).toBe('');
  const members = await runScript(cluster, 'members', ['list'], { REDIS_KEY_PREFIX: 'saml*' });
  expect(members.status).toBe(2);
  expect(members.stderr).toMatch(BAD_PREFIX);
  expect(members.stdout).toBe('');
  expect(await keysUnder(cluster.deployment.file.redisKeyPrefix)).toBe(0);
}, 60_000);
