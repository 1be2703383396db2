/**
 * The operator commands' messages for common mistakes say what is wrong and what to do, and a command they quote
 * works as written: a missing regions file names REGIONS_CONFIG (they said only that ./regions.config.json could not
 * be read: ENOENT); a target database that refuses connections is named as the target's, with what to check (the
 * re-seed said `connect ECONNREFUSED …`); `members -- remove` of an unknown name quotes the whole command (it
 * quoted `remove <region> --force`). Each command runs as its own process (dist/), from an empty directory.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/paths';
import { createRedis, replicationKeys } from '../../src/redis';
import { createDeployment, freePorts, REDIS_URL, type TestDeployment } from '../support/env';

let dep: TestDeployment;
let emptyDir: string;
/** A port nothing listens on: asia-japan's database's, a DATABASE_URL's, and a removed region's Redis's. */
let closedPort = 0;
beforeAll(async () => {
  const [port = 0] = await freePorts(1);
  closedPort = port;
  // asia-japan's database at a port nothing listens on.
  dep = await createDeployment('script-messages', ['us-iowa', 'asia-japan'], {}, { 'asia-japan': { databaseUrl: `postgresql://postgres@127.0.0.1:${port}/nothing_here` } });
  emptyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'script-messages-'));
});
afterAll(async () => {
  await dep?.cleanup();
  fs.rmSync(emptyDir, { recursive: true, force: true });
});

/** Runs dist/scripts/<name>.js from an empty directory, with `env` over this process's (REGIONS_CONFIG and INIT_CWD left out). */
function script(name: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ status: number; stdout: string; stderr: string }> {
  const base: NodeJS.ProcessEnv = { ...process.env, REDIS_URL: '', REDIS_KEY_PREFIX: '' };
  delete base.REGIONS_CONFIG;
  delete base.INIT_CWD;
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(PROJECT_ROOT, 'dist', 'scripts', `${name}.js`), ...args], { env: { ...base, ...env }, cwd: emptyDir, encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
      const code = (err as { code?: unknown } | null)?.code;
      resolve({ status: typeof code === 'number' ? code : err ? -1 : 0, stdout, stderr });
    });
  });
}

test.each([
  ['reseed', ['--from', 'us-iowa', '--to', 'asia-japan'], 'reseed failed: '],
  ['members', ['list'], 'members failed: '],
  ['cluster', [], 'configuration error: '],
])('npm run %s with no REGIONS_CONFIG and no ./regions.config.json says to set REGIONS_CONFIG (exit 2)', async (name, args, prefix) => {
  const run = await script(name, args);
  expect({ status: run.status, stderr: run.stderr }).toEqual({
    status: 2,
    stderr: `${prefix}REGIONS_CONFIG is not set and there is no ${path.join(fs.realpathSync(emptyDir), 'regions.config.json')}; point REGIONS_CONFIG at the deployment's regions file\n`,
  });
}, 60_000);

test('npm run reseed names the target\'s database that refuses connections, and what to check', async () => {
  const run = await script('reseed', ['--from', 'us-iowa', '--to', 'asia-japan'], { REGIONS_CONFIG: dep.configPath });
  const target = dep.file.regions.find((r) => r.id === 'asia-japan')?.databaseUrl ?? '';
  const address = target.replace('postgresql://postgres@', '');
  expect({ status: run.status, stdout: run.stdout, stderr: run.stderr }).toEqual({
    status: 1,
    stdout: '',
    stderr: `reseed failed: the target asia-japan's database at ${address} cannot be reached or prepared (connection refused: nothing listens at that address and port). Check that Postgres runs there, and the databaseUrl of asia-japan in the regions config\n`,
  });
}, 60_000);

test('npm run reseed takes --to-database-url as its target\'s database (a region started with DATABASE_URL quotes it so), and names it when it refuses connections', async () => {
  const databaseUrl = `postgresql://postgres@127.0.0.1:${closedPort}/region_own`;
  const run = await script('reseed', ['--from', 'asia-japan', '--to', 'us-iowa', '--to-database-url', databaseUrl], { REGIONS_CONFIG: dep.configPath });
  expect({ status: run.status, stdout: run.stdout, stderr: run.stderr }).toEqual({
    status: 1,
    stdout: '',
    stderr: `reseed failed: the target us-iowa's database at 127.0.0.1:${closedPort}/region_own cannot be reached or prepared (connection refused: nothing listens at that address and port). Check that Postgres runs there, and the URL given with --to-database-url (over the databaseUrl of us-iowa in the regions config)\n`,
  });
  // One a region would refuse as its DATABASE_URL, the region's message, exit 2.
  const other = await script('reseed', ['--from', 'asia-japan', '--to', 'us-iowa', '--to-database-url', 'mysql://root@127.0.0.1/x'], { REGIONS_CONFIG: dep.configPath });
  expect({ status: other.status, stderr: other.stderr }).toEqual({ status: 2, stderr: 'reseed failed: --to-database-url must start with postgresql://\n' });
  // The flag without its value: the usage, exit 2.
  const bare = await script('reseed', ['--from', 'asia-japan', '--to', 'us-iowa', '--to-database-url'], { REGIONS_CONFIG: dep.configPath });
  expect({ status: bare.status, stderr: bare.stderr }).toEqual({ status: 2, stderr: expect.stringMatching(/^usage: npm run reseed -- /) as unknown as string });
}, 60_000);

test('npm run reseed refuses a --to-database-url naming another region\'s database, before touching it (exit 2)', async () => {
  // us-iowa's database as its entry names it, written otherwise (another user, an option): the same database.
  const peer = new URL(dep.file.regions.find((r) => r.id === 'us-iowa')?.databaseUrl ?? '');
  const address = `${peer.hostname}:${peer.port || '5432'}${peer.pathname}`;
  peer.username = 'someone';
  peer.search = '?application_name=reseed';
  const run = await script('reseed', ['--from', 'us-iowa', '--to', 'asia-japan', '--to-database-url', peer.toString()], { REGIONS_CONFIG: dep.configPath });
  expect({ status: run.status, stdout: run.stdout, stderr: run.stderr }).toEqual({
    status: 2,
    stdout: '',
    stderr: `reseed failed: the database to re-seed as asia-japan's (${address}) is us-iowa's in the regions config; each region needs its own. Nothing was done: name the database asia-japan runs on (--to-database-url, or its databaseUrl)\n`,
  });
}, 60_000);

test.each([
  ['a flag given twice', ['--to-database-url', 'postgresql://postgres@127.0.0.1:1/first', '--to-database-url', 'postgresql://postgres@127.0.0.1:1/second']],
  ['a flag written with =', ['--to-database-url=postgresql://postgres@127.0.0.1:1/region_own']],
  ['an argument it does not know', ['--to-databse-url', 'postgresql://postgres@127.0.0.1:1/region_own']],
])('npm run reseed answers %s with its usage, and does nothing (exit 2)', async (_what, extra) => {
  // Each took the first value, or was ignored, and the re-seed went on with the database of the region's entry.
  const run = await script('reseed', ['--from', 'us-iowa', '--to', 'asia-japan', ...extra], { REGIONS_CONFIG: dep.configPath });
  expect({ status: run.status, stdout: run.stdout, stderr: run.stderr }).toEqual({ status: 2, stdout: '', stderr: expect.stringMatching(/^usage: npm run reseed -- [^\n]*\n$/) as unknown as string });
}, 60_000);

test('npm run reseed refuses a mistaken --from-database-url or --database-url by name, before touching anything (exit 2)', async () => {
  // A third region, so that --database-url has an origin to name besides the peer and the target.
  const third = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'script-messages-3-')), 'regions.config.json');
  const closed = `postgresql://postgres@127.0.0.1:${closedPort}`;
  fs.writeFileSync(third, JSON.stringify({ ...dep.file, regions: [...dep.file.regions, { id: 'europe-belgium', port: closedPort, databaseUrl: `${closed}/belgium` }] }));
  const target = new URL(dep.file.regions.find((r) => r.id === 'asia-japan')?.databaseUrl ?? '');
  const mistakes: [string[], string][] = [
    [['--from-database-url', 'mysql://root@127.0.0.1/x'], '--from-database-url must start with postgresql://'],
    [['--database-url', `europe-belgium=mysql://root@127.0.0.1/x`], '--database-url must start with postgresql://'],
    [['--database-url', `${closed}/belgium_own`], `--database-url takes <region>=<the database that region runs on> (got '${closed}/belgium_own')`],
    [['--database-url', `nowhere=${closed}/x`], '--database-url: unknown region nowhere (known: us-iowa, asia-japan, europe-belgium)'],
    [['--database-url', `us-iowa=${closed}/x`], '--database-url: us-iowa is the peer; give its database with --from-database-url'],
    [['--database-url', `asia-japan=${closed}/x`], '--database-url: asia-japan is the target; give its database with --to-database-url'],
    [['--database-url', `europe-belgium=${closed}/a`, '--database-url', `europe-belgium=${closed}/b`], '--database-url: europe-belgium is given twice'],
    // The target's entry pasted as the peer's: the target's rows would be read as the peer's.
    [['--from-database-url', target.toString()], `the database given with --from-database-url for us-iowa (${target.host}${target.pathname}) is asia-japan's in the regions config; each region has its own. Nothing was done: name the database us-iowa runs on`],
  ];
  try {
    for (const [extra, message] of mistakes) {
      const run = await script('reseed', ['--from', 'us-iowa', '--to', 'asia-japan', ...extra], { REGIONS_CONFIG: third });
      expect({ status: run.status, stdout: run.stdout, stderr: run.stderr }).toEqual({ status: 2, stdout: '', stderr: `reseed failed: ${message}\n` });
    }
  } finally {
    fs.rmSync(path.dirname(third), { recursive: true, force: true });
  }
  // Given twice, or without its value: the usage, as any flag.
  for (const extra of [['--from-database-url', `${closed}/a`, '--from-database-url', `${closed}/b`], ['--database-url']]) {
    const run = await script('reseed', ['--from', 'us-iowa', '--to', 'asia-japan', ...extra], { REGIONS_CONFIG: dep.configPath });
    expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 2, stderr: expect.stringMatching(/^usage: npm run reseed -- [^\n]*--from-database-url[^\n]*\n$/) as unknown as string });
  }
}, 60_000);

test('npm run reseed reads no DATABASE_URL of its environment: one exported for another tool does not become the target\'s database', async () => {
  const run = await script('reseed', ['--from', 'us-iowa', '--to', 'asia-japan'], { REGIONS_CONFIG: dep.configPath, DATABASE_URL: `postgresql://postgres@127.0.0.1:5432/another_tools_database` });
  const target = dep.file.regions.find((r) => r.id === 'asia-japan')?.databaseUrl ?? '';
  // The target named is the regions file's entry (nothing listens there), not the exported one.
  expect({ status: run.status, stderr: run.stderr }).toEqual({
    status: 1,
    stderr: `reseed failed: the target asia-japan's database at ${target.replace('postgresql://postgres@', '')} cannot be reached or prepared (connection refused: nothing listens at that address and port). Check that Postgres runs there, and the databaseUrl of asia-japan in the regions config\n`,
  });
}, 60_000);

test('npm run members -- remove of a name no Redis knows quotes the whole --force command, which works as written', async () => {
  const run = await script('members', ['remove', 'no-such-region'], { REGIONS_CONFIG: dep.configPath });
  expect(run.status).toBe(1);
  const [, quoted = ''] = /Nothing was done; `([^`]*)` records the removal all the same\.\n$/.exec(run.stderr) ?? [];
  expect(quoted).toBe(`REGIONS_CONFIG=${dep.configPath} npm run members -- remove no-such-region --force`);
  const [, config = '', args = ''] = /^REGIONS_CONFIG=(\S+) npm run members -- (.*)$/.exec(quoted) ?? [];
  const forced = await script('members', args.split(' '), { REGIONS_CONFIG: config });
  expect({ status: forced.status, stderr: forced.stderr }).toEqual({ status: 0, stderr: '' });
  const redis = createRedis(REDIS_URL, 'script-messages-test', { queueWhileOffline: true });
  try {
    expect(await redis.hexists(replicationKeys(dep.file.redisKeyPrefix).departed, 'no-such-region')).toBe(1);
  } finally {
    redis.disconnect();
  }
}, 60_000);

test('npm run members -- remove names a --redis-url Redis that refuses connections, with why and what to check, and counts it unreachable', async () => {
  const url = `redis://127.0.0.1:${closedPort}`;
  const run = await script('members', ['remove', 'gone-region', '--force', '--redis-url', url], { REGIONS_CONFIG: dep.configPath });
  expect({ status: run.status, stderr: run.stderr }).toEqual({
    status: 0,
    stderr: `warning: Redis at ${url} (region gone-region) cannot be reached (connection refused: nothing listens at that address and port). Check that Redis runs there, and the URL given with --redis-url\n`,
  });
  // Removed (recorded) in the deployment's Redis, which answered; its own is left for a run once it is up.
  expect(JSON.parse(run.stdout)).toEqual({ region: 'gone-region', removed: false, inboxDeleted: false, unreachable: ['gone-region'] });
}, 60_000);
