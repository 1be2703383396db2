/**
 * `npm run reseed` (and `members list`) with no Redis to ask (down, or hung) fail, naming it, instead of waiting
 * for ever without a word (a helper's review: still silent after 3 minutes).
 */
import { FEATURES } from '../../src/features';
import { reseed } from '../../src/replication/reseed';
import { createDeployment, freePorts, type TestDeployment } from '../support/env';

let dep: TestDeployment;
beforeAll(async () => {
  const [port] = await freePorts(1);
  dep = await createDeployment('reseed-noredis', ['us-iowa', 'asia-japan'], { redisUrl: `redis://127.0.0.1:${port}` });
});
afterAll(() => dep?.cleanup());

test('fails within seconds, naming the Redis it could not read', async () => {
  const started = Date.now();
  await expect(reseed(dep.file, 'us-iowa', 'asia-japan', FEATURES.flatMap((f) => f.tables))).rejects.toThrow(/cannot read the members in us-iowa's Redis/);
  expect(Date.now() - started).toBeLessThan(30_000);
}, 60_000);

test('npm run members -- list exits 1 when no Redis answers (it exited 0 with an empty list)', async () => {
  const { spawnSync } = await import('node:child_process');
  const path = await import('node:path');
  const { PROJECT_ROOT } = await import('../../src/paths');
  const run = spawnSync(process.execPath, [path.join(PROJECT_ROOT, 'dist', 'scripts', 'members.js'), 'list'], { env: { ...process.env, REGIONS_CONFIG: dep.configPath }, encoding: 'utf8', timeout: 60_000 });
  expect({ status: run.status, out: JSON.parse(run.stdout) }).toEqual({ status: 1, out: { members: [], departed: [], unreachable: ['us-iowa', 'asia-japan'], verification: 'off' } });
}, 60_000);
