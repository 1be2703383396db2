/**
 * `npm run reseed` takes the deployment's Redis as a region does: REDIS_KEY_PREFIX (and REDIS_URL) over the
 * config file's, checked the same way. It read the file alone, so against a cluster run with
 * REDIS_KEY_PREFIX=x it looked for the members under the file's prefix, found none ("not registered"), and a
 * bad REDIS_KEY_PREFIX went unnoticed. `npm run members` checks the prefix the same way now too.
 * The re-seed command a region quotes when its start check finds its database replaced gives what the command
 * needs (REGIONS_CONFIG, REDIS_KEY_PREFIX), as the start line of a joining region does: it quoted
 * `npm run reseed …` alone.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { dropDatabase } from '../../src/db/migrate';
import { PROJECT_ROOT } from '../../src/paths';
import { createRedis } from '../../src/redis';
import { adminHeaders, call, createOrg, eventually, reseedSeen, runScript, startCluster, type Cluster } from '../support/harness';
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

/** Runs a command as a region quoted it (`NAME=value … npm run reseed -- <args>`), with nothing else to find the deployment by. */
function runQuoted(command: string): Promise<{ status: number; stderr: string }> {
  const [, assignments = '', args = ''] = /^((?:[A-Z_]+=\S+ )*)npm run reseed -- (.*)$/.exec(command) ?? [];
  const env: NodeJS.ProcessEnv = { ...process.env };
  // Neither the test's environment nor a ./regions.config.json (the shipped one, in the project root) stands in
  // for what the command leaves out: it runs from an empty directory.
  for (const name of ['REGIONS_CONFIG', 'REDIS_URL', 'REDIS_KEY_PREFIX', 'INIT_CWD']) delete env[name];
  for (const word of assignments.trim().split(' ').filter(Boolean)) env[word.slice(0, word.indexOf('='))] = word.slice(word.indexOf('=') + 1);
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'reseed-quoted-'));
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(PROJECT_ROOT, 'dist', 'scripts', 'reseed.js'), ...args.split(' ')], { env, cwd, encoding: 'utf8', timeout: 60_000 }, (err, _stdout, stderr) => {
      fs.rmSync(cwd, { recursive: true, force: true });
      const code = (err as { code?: unknown } | null)?.code;
      resolve({ status: typeof code === 'number' ? code : err ? -1 : 0, stderr });
    });
  });
}

test('a region started on a replaced database quotes the re-seed command in full (REGIONS_CONFIG, REDIS_KEY_PREFIX), and the command as quoted seeds it', async () => {
  const org = await createOrg(cluster.url(PEER), 'before the drop', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });
  const p = cluster.proc(TARGET);
  await p.stop();
  await dropDatabase(cluster.deployment.file.regions.find((r) => r.id === TARGET)?.databaseUrl as string);
  p.start();
  await p.waitReady();
  const refusal = () => cluster.logs(TARGET).map((l) => (l.startsWith('{') ? String(JSON.parse(l).msg) : '')).find((m) => m.startsWith("this region's database is not the one it ran on before"));
  expect(await eventually(async () => refusal() !== undefined, 10_000, 100)).toBe(true);
  const [, command = ''] = /marked as needing a re-seed: run (.*?) \(if no region is caught up/.exec(refusal() ?? '') ?? [];
  expect(command).toBe(`REGIONS_CONFIG=${cluster.deployment.configPath} REDIS_KEY_PREFIX=${PREFIX} npm run reseed -- --from '<a caught-up region>' --to ${TARGET}`);
  const seeded = await runQuoted(command.replace("'<a caught-up region>'", PEER));
  expect(seeded).toEqual({ status: 0, stderr: '' });
  expect(await reseedSeen(cluster.url(PEER))).toBe(true);
  expect((await call(cluster.url(TARGET), 'GET', `/admin/organizations/${org.id}`, { headers: adminHeaders })).status).toBe(200);
}, 120_000);
