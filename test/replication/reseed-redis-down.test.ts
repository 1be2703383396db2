/**
 * `npm run reseed` (and `members list`) with no Redis to ask (down, or hung) fail, naming it, instead of waiting
 * for ever without a word (a helper's review: still silent after 3 minutes). A Redis that refuses connections
 * (nothing listening on its port) or a URL naming no host is said as that, with the URL and the setting to check,
 * before anything is done: the re-seed said "Command timed out" after ~10 s, having created and migrated the
 * target's database, and `members activate` said the region was not a member.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { FEATURES } from '../../src/features';
import { PROJECT_ROOT } from '../../src/paths';
import { reseed } from '../../src/replication/reseed';
import { createDeployment, freePorts, type TestDeployment } from '../support/env';
import { databaseExists } from '../support/region-databases';

let dep: TestDeployment;
let refusedUrl: string;
beforeAll(async () => {
  const [port] = await freePorts(1);
  refusedUrl = `redis://127.0.0.1:${port}`;
  dep = await createDeployment('reseed-noredis', ['us-iowa', 'asia-japan'], { redisUrl: refusedUrl }, {}, { absentDatabases: ['asia-japan'] });
});
afterAll(() => dep?.cleanup());

/** Runs an operator script (dist/scripts/<name>.js) against the deployment's config. */
function script(name: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [path.join(PROJECT_ROOT, 'dist', 'scripts', `${name}.js`), ...args], {
    env: { ...process.env, REDIS_URL: '', REDIS_KEY_PREFIX: '', REGIONS_CONFIG: dep.configPath, ...env }, encoding: 'utf8', timeout: 60_000,
  });
}

const REFUSED = (url: string) => `Redis at ${url} (regions us-iowa, asia-japan) cannot be reached (connection refused: nothing listens at that address and port). Check that Redis runs there, and the redisUrl of `;

test('npm run reseed against a Redis that refuses connections says so, naming its URL and what to check, and creates nothing (it said "Command timed out")', async () => {
  const run = script('reseed', ['--from', 'us-iowa', '--to', 'asia-japan']);
  expect({ status: run.status, stdout: run.stdout }).toEqual({ status: 1, stdout: '' });
  expect(run.stderr).toBe(`reseed failed: ${REFUSED(refusedUrl)}${dep.configPath} (or set REDIS_URL)\n`);
  // Said before anything was done: the target's database was created and migrated before the Redis was asked.
  expect(await databaseExists(`${dep.name}_asia_japan`)).toBe(false);
}, 60_000);

test('a REDIS_URL whose host does not resolve is named as that, and as the setting to check', async () => {
  const run = script('reseed', ['--from', 'us-iowa', '--to', 'asia-japan'], { REDIS_URL: 'redis://no-such-redis-host.invalid:6379' });
  expect(run.status).toBe(1);
  expect(run.stderr).toBe(
    `reseed failed: Redis at redis://no-such-redis-host.invalid:6379 (regions us-iowa, asia-japan) cannot be reached (its host name does not resolve). Check that Redis runs there, and REDIS_URL (set in the environment, over the redisUrl of ${dep.configPath})\n`,
  );
}, 60_000);

test('fails within seconds, naming the Redis it could not read', async () => {
  const started = Date.now();
  await expect(reseed(dep.file, 'us-iowa', 'asia-japan', FEATURES.flatMap((f) => f.tables))).rejects.toThrow(/cannot read the members in us-iowa's Redis/);
  expect(Date.now() - started).toBeLessThan(30_000);
}, 60_000);

test('npm run members -- list exits 1 when no Redis answers (it exited 0 with an empty list), saying why', async () => {
  const run = script('members', ['list']);
  expect({ status: run.status, out: JSON.parse(run.stdout) }).toEqual({ status: 1, out: { members: [], departed: [], unreachable: ['us-iowa', 'asia-japan'], verification: 'off' } });
  expect(run.stderr).toBe(
    `warning: ${REFUSED(refusedUrl)}${dep.configPath} (or set REDIS_URL)\n` +
      'members failed: no Redis of the deployment could be reached (above); the list is empty for that, not because there are no members\n',
  );
}, 60_000);

test.each([['activate'], ['remove']])('npm run members -- %s with no Redis reachable says so, not that the region is not a member', async (command) => {
  const run = script('members', [command, 'us-iowa']);
  expect({ status: run.status, stdout: run.stdout }).toEqual({ status: 1, stdout: '' });
  expect(run.stderr).toBe(`members failed: no Redis of the deployment could be reached, so nothing was done: ${REFUSED(refusedUrl)}${dep.configPath} (or set REDIS_URL)\n`);
}, 60_000);
