/**
 * The operator commands answer --help with their usage on stdout and exit 0, before reading any config; a
 * config they cannot read is a configuration error (exit 2). Each loads only what its path needs: `--help` and
 * a usage mistake no package at all, and a mistake found in the config no Prisma or pg (a preload
 * records the packages a run loads, test/support/loaded-packages.cjs).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../src/paths';

/** What only the re-seed's work needs: its databases. */
const DATABASE_PACKAGES = ['@prisma/client', '@prisma/adapter-pg', 'pg'];
/** TypeBox, ajv-formats and the packages ajv's compiler (not its runtime helpers) loads. */
const COMPILER_PACKAGES = ['@sinclair/typebox', 'ajv-formats', 'fast-uri', 'fast-deep-equal', 'json-schema-traverse'];

/** Runs dist/scripts/<script>.js with `env` over this process's; with the packages it loaded, in order. */
function runRecorded(script: string, args: string[], env: Record<string, string>) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-loaded-'));
  const file = path.join(dir, 'loaded');
  const res = spawnSync(process.execPath, [path.join(PROJECT_ROOT, `dist/scripts/${script}.js`), ...args], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, ...env, NODE_OPTIONS: `--require ${path.join(__dirname, 'support', 'loaded-packages.cjs')}`, LOADED_PACKAGES_FILE: file },
  });
  const loaded = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
  fs.rmSync(dir, { recursive: true, force: true });
  return { ...res, loaded };
}

/** package.json's scripts, by name. */
const NPM_SCRIPTS = (JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
/** The project's file an npm script's command runs (build-if-stale, run first by many, is not the command), if any. */
const commandFile = (script: string): string | undefined =>
  [...(NPM_SCRIPTS[script] ?? '').matchAll(/\bnode (\S+\.js)\b/g)].map((m) => m[1]).filter((f) => f !== 'scripts/build-if-stale.js').at(-1);

/** Each npm script that runs a file of the project's, and how its usage starts. */
const USAGES: Record<string, RegExp> = {
  // It ignored its arguments: `npm start -- --help` started a region.
  start: /^usage: REGION=<region id> ADMIN_TOKEN=… TOKEN_SIGNING_SECRET=… REPLICATION_KEYS=… npm start\n/,
  cluster: /^usage: npm run cluster \[-- <region id> \.\.\.\]/,
  reseed: /^usage: npm run reseed -- --from <peer region> --to <region to re-seed>/,
  members: /^usage: npm run members -- list \| activate <region> \| remove <region>/,
  // The development IdPs: without it they started serving on their default ports.
  'idp:fixtures': /^usage: \[PORT=9400\] \[HOST=127\.0\.0\.1\] npm run idp:fixtures/,
  'idp:simulator': /^usage: \[PORT=9401\] \[HOST=127\.0\.0\.1\] \[USER_EMAIL=alice@example\.com\] npm run idp:simulator/,
  // The harness's commands (runMain): test:conflicts said "unknown option --help" and exited 64.
  'test:conflicts': /^usage: npm run test:conflicts -- \[--rounds N\]/,
  // -h was taken for a positional argument and the whole schedule ran (as root: network namespaces).
  'test:faults': /^usage: npm run test:faults -- \[--short\]/,
  harness: /^usage: npm run harness -- up \[options\]/,
  bench: /^npm run bench \[-- <part>\] \[-- options\]/,
  // It wrote src/config-validate.ts.
  'config:validator': /^usage: npm run config:validator\n/,
  // Plain JavaScript, outside dist/: it was in no list here, and crashed on --help with ENOENT (read as its report's path).
  'test:durations': /^usage: npm run test:durations -- <jest --json report>/,
};
test("every npm script that runs a file of the project's is asked for its --help below", () => {
  const commands = Object.keys(NPM_SCRIPTS).filter((script) => commandFile(script) !== undefined);
  expect(commands.sort()).toEqual(Object.keys(USAGES).sort());
});

test.each(Object.entries(USAGES))('npm run %s -- --help prints its usage and exits 0', (script, usage) => {
  for (const flag of ['--help', '-h']) {
    // A config that does not exist: --help must not need one.
    const res = spawnSync(process.execPath, [path.join(PROJECT_ROOT, commandFile(script) ?? ''), flag], {
      encoding: 'utf8',
      timeout: 30_000,
      env: { ...process.env, REGIONS_CONFIG: '/nonexistent/regions.json' },
    });
    expect({ status: res.status, stderr: res.stderr }).toEqual({ status: 0, stderr: '' });
    expect(res.stdout).toMatch(usage);
  }
});

test.each([['us-iowa'], ['--port=8081'], ['--']])('npm start -- %s exits 2 with its usage, before reading any config: a region takes no arguments', (arg) => {
  const res = spawnSync(process.execPath, [path.join(PROJECT_ROOT, commandFile('start') ?? ''), arg], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, REGIONS_CONFIG: '/nonexistent/regions.json' },
  });
  expect({ status: res.status, stdout: res.stdout }).toEqual({ status: 2, stdout: '' });
  expect(res.stderr).toMatch(new RegExp(`^npm start takes no arguments \\(got '${arg}'\\)\n${USAGES.start.source.slice(1)}`));
});

// It said REDIS_URL overrides "the region's entry of the file": it replaces the file's default redisUrl only
// (loadConfig), so a region whose entry names its own Redis kept it, whatever an operator set.
test('npm start -- --help says what REDIS_URL and REDIS_KEY_PREFIX override', () => {
  const res = spawnSync(process.execPath, [path.join(PROJECT_ROOT, commandFile('start') ?? ''), '--help'], { encoding: 'utf8', timeout: 30_000 });
  const usage = res.stdout.replace(/\s+/g, ' ');
  expect(usage).toContain("PORT, OPERATOR_PORT, HOST, DATABASE_URL and REGION_REDIS_URL override the region's entry of the file");
  expect(usage).toContain('REDIS_URL and REDIS_KEY_PREFIX its default redisUrl (not an entry\'s own) and its redisKeyPrefix');
});

test.each([
  ['harness/cli', ['up'], 'npm run harness -- up'],
  ['harness/fault-schedule', [], 'npm run test:faults'],
  // It said "e.g. sudo -E the conflict test", which is no command.
  ['harness/conflicts', [], 'npm run test:conflicts'],
])('npm run %s without root exits 2 and names the command to run as root', (script, args, command) => {
  const res = spawnSync(process.execPath, [path.join(PROJECT_ROOT, `dist/scripts/${script}.js`), ...args], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, NODE_OPTIONS: `--require ${path.join(__dirname, 'support', 'not-root.cjs')}` },
  });
  expect({ status: res.status, stdout: res.stdout }).toEqual({ status: 2, stdout: '' });
  expect(res.stderr).toContain(`${command} needs root: it creates network namespaces`);
  expect(res.stderr).toContain(`Run it as root (e.g. sudo -E ${command}).`);
});

test.each([
  ['cluster', ['--help'], 0],
  ['reseed', ['--help'], 0],
  ['members', ['-h'], 0],
  ['reseed', ['--from', 'us-iowa'], 2],
  ['members', ['remove'], 2],
])('npm run %s -- %j answers before loading any package (neither the config\'s schema nor Prisma nor ioredis)', (script, args, status) => {
  // They loaded them all before answering (~0.2–0.35 s of CPU a run): the commands' modules were imported at the top.
  const res = runRecorded(script, args, { REGIONS_CONFIG: '/nonexistent/regions.json' });
  expect({ status: res.status, loaded: res.loaded }).toEqual({ status, loaded: [] });
});

test.each([
  ['reseed', ['--from', 'us-iowa', '--to', 'europe-belgium']],
  ['members', ['list']],
])('npm run %s with a config it cannot read exits 2, as a configuration error of the cluster or a region does', (script, args) => {
  const res = runRecorded(script, args, { REGIONS_CONFIG: '/nonexistent/regions.json' });
  expect({ status: res.status, stdout: res.stdout }).toEqual({ status: 2, stdout: '' });
  expect(res.stderr).toMatch(new RegExp(`^${script} failed: .*/nonexistent/regions\\.json`));
  expect(res.loaded.filter((p) => DATABASE_PACKAGES.includes(p))).toEqual([]);
});

test.each([
  ['a region the config does not name', ['--from', 'us-iowa', '--to', 'mars'], /^reseed failed: unknown region: mars \(known: us-iowa, europe-belgium\)/],
  ['one region as both peer and target', ['--from', 'us-iowa', '--to', 'us-iowa'], /^reseed failed: --from and --to must name two different regions/],
])('npm run reseed naming %s exits 2, a usage mistake, before connecting anywhere', (_what, args, message) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-reseed-'));
  const config = path.join(dir, 'regions.json');
  // Nothing listens at these addresses: a re-seed that went on would fail there, with another message.
  const unreachable = { databaseUrl: 'postgresql://postgres@127.0.0.1:1/none' };
  fs.writeFileSync(config, JSON.stringify({ redisUrl: 'redis://127.0.0.1:1', redisKeyPrefix: 'cli-reseed:', regions: [{ id: 'us-iowa', port: 8081, ...unreachable }, { id: 'europe-belgium', port: 8082, ...unreachable }] }));
  const res = runRecorded('reseed', args, { REGIONS_CONFIG: config });
  fs.rmSync(dir, { recursive: true, force: true });
  expect({ status: res.status, stdout: res.stdout }).toEqual({ status: 2, stdout: '' });
  expect(res.stderr).toMatch(message);
  // Nor loading the re-seed's Prisma, pg and ioredis (it loaded them before reading its arguments). The config is
  // checked by its precompiled validator (ajv's runtime helper only): no TypeBox, no compile (~180 ms of CPU).
  expect(res.loaded).toContain('ajv');
  expect(res.loaded.filter((p) => COMPILER_PACKAGES.includes(p))).toEqual([]);
  expect(res.loaded.filter((p) => [...DATABASE_PACKAGES, 'ioredis'].includes(p))).toEqual([]);
});

test.each([
  ['one port', { port: 8081 }, /^configuration error: .*: regions 'us-iowa' \(port\) and 'europe-belgium' \(port\) both listen on 127\.0\.0\.1:8081, and this command runs them on one machine; give each its own port$/m],
  ["one's operator port on the other's port, on a wildcard host", { port: 8082, operatorPort: 8081, host: '0.0.0.0' }, /regions 'us-iowa' \(port\) and 'europe-belgium' \(operatorPort\) both listen on 0\.0\.0\.0:8081/],
  ['one database', { port: 8082, databaseUrl: 'postgresql://other@127.0.0.1:1/none?sslmode=disable' }, /regions 'us-iowa' and 'europe-belgium' have one database \(127\.0\.0\.1:1\/none\); each region needs its own databaseUrl$/m],
])('npm run cluster with two regions on %s exits 2, a configuration error, before starting any', (_what, second, message) => {
  // The file may give regions one port (each on a host of its own), but the cluster runs them on one machine:
  // the second to the port stopped with "the port is in use (… an earlier cluster still running?)".
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-cluster-'));
  const config = path.join(dir, 'regions.json');
  const unreachable = 'postgresql://postgres@127.0.0.1:1/none';
  fs.writeFileSync(config, JSON.stringify({ redisUrl: 'redis://127.0.0.1:1', redisKeyPrefix: 'cli-cluster:', regions: [{ id: 'us-iowa', port: 8081, databaseUrl: unreachable }, { id: 'europe-belgium', databaseUrl: `${unreachable}2`, ...second }] }));
  const res = spawnSync(process.execPath, [path.join(PROJECT_ROOT, 'dist/scripts/cluster.js')], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, REGIONS_CONFIG: config },
  });
  const secretsMade = fs.existsSync(path.join(dir, '.cluster'));
  fs.rmSync(dir, { recursive: true, force: true });
  expect({ status: res.status, stdout: res.stdout, secretsMade }).toEqual({ status: 2, stdout: '', secretsMade: false });
  expect(res.stderr).toMatch(message);
});

test('npm run cluster reports every clash of its config in one run, one line each, before exiting 2', () => {
  // A shared port and a shared database (and a third region on the first's port): three lines, not the first only.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-cluster-'));
  const config = path.join(dir, 'regions.json');
  const unreachable = 'postgresql://postgres@127.0.0.1:1/none';
  const regions = [
    { id: 'us-iowa', port: 8081, databaseUrl: unreachable },
    { id: 'europe-belgium', port: 8081, databaseUrl: `${unreachable}2` },
    { id: 'asia-japan', port: 8081, operatorPort: 9181, databaseUrl: unreachable },
  ];
  fs.writeFileSync(config, JSON.stringify({ redisUrl: 'redis://127.0.0.1:1', redisKeyPrefix: 'cli-cluster:', regions }));
  const res = spawnSync(process.execPath, [path.join(PROJECT_ROOT, 'dist/scripts/cluster.js')], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, REGIONS_CONFIG: config } });
  fs.rmSync(dir, { recursive: true, force: true });
  expect({ status: res.status, stdout: res.stdout }).toEqual({ status: 2, stdout: '' });
  expect(res.stderr.trimEnd().split('\n')).toEqual([
    `configuration error: ${config}: regions 'us-iowa' (port) and 'europe-belgium' (port) both listen on 127.0.0.1:8081, and this command runs them on one machine; give each its own port`,
    `configuration error: ${config}: regions 'us-iowa' (port) and 'asia-japan' (port) both listen on 127.0.0.1:8081, and this command runs them on one machine; give each its own port`,
    `configuration error: ${config}: regions 'us-iowa' and 'asia-japan' have one database (127.0.0.1:1/none); each region needs its own databaseUrl`,
  ]);
});
