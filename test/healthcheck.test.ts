/**
 * The image's HEALTHCHECK, run as the Dockerfile says (there is no Docker engine on the build machines) against a
 * region started from dist/src/main.js: it asks the port the region listens on, its config file's when PORT is
 * unset (it asked 8080 then, and such a region was never healthy); with an operator port, that port instead (it
 * answers while the region's port is flooded; the check asked the flooded port), its /healthz too (stalled).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { dropDatabase } from '../src/db/migrate';
import { PROJECT_ROOT } from '../src/paths';
import { deleteKeys, freePorts, PG_BASE, REDIS_URL, uniqueName } from './support/env';

const MAIN = path.join(PROJECT_ROOT, 'dist', 'src', 'main.js');
const name = uniqueName('healthcheck');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'saml-healthcheck-'));
let port = 0;
/** The region's operator port (its process's OPERATOR_PORT; the health check is told it only where a test says). */
let operatorPort = 0;
let file = '';
let env: NodeJS.ProcessEnv;
let child: ChildProcess | undefined;
/** TypeBox, ajv-formats and the packages ajv's compiler (not its runtime helpers) loads. */
const COMPILER_PACKAGES = ['@sinclair/typebox', 'ajv-formats', 'fast-uri', 'fast-deep-equal', 'json-schema-traverse'];

/** The HEALTHCHECK's command as the Dockerfile gives it (exec form), its `node` this one; run from /app's equivalent. */
async function healthCheck(extra: Record<string, string> = {}): Promise<{ status: number | null; stderr: string }> {
  const df = fs.readFileSync(path.join(PROJECT_ROOT, 'Dockerfile'), 'utf8');
  const cmd = /^HEALTHCHECK [^\n]*\\\n\s*CMD (\[.*\])\s*$/m.exec(df)?.[1];
  const [exe, ...args] = JSON.parse(cmd ?? '[]') as string[];
  expect(exe).toBe('node');
  // Not spawnSync: a test's own server (in this process) must answer the check meanwhile.
  const check = spawn(process.execPath, args, { cwd: PROJECT_ROOT, env: { ...env, ...extra }, stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
  let stderr = '';
  check.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const status = await new Promise<number | null>((resolve) => check.once('close', (code) => resolve(code)));
  return { status, stderr };
}

/** A config file like the region's, its entry with `operatorPort`. */
function configWithOperatorPort(op: number): string {
  const other = path.join(dir, `regions-op-${op}.json`);
  const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as { regions: Record<string, unknown>[] };
  fs.writeFileSync(other, JSON.stringify({ ...parsed, regions: parsed.regions.map((r) => ({ ...r, operatorPort: op })) }));
  return other;
}

beforeAll(async () => {
  [port, operatorPort] = (await freePorts(2)) as [number, number];
  file = path.join(dir, 'regions.json');
  fs.writeFileSync(file, JSON.stringify({ redisUrl: REDIS_URL, redisKeyPrefix: `${name}:`, regions: [{ id: 'us-iowa', port, databaseUrl: `${PG_BASE}/${name}` }] }));
  // No PORT: the region listens on its entry's port.
  const { PORT: _unset, ...rest } = process.env;
  env = {
    ...rest, REGIONS_CONFIG: file, REGION: 'us-iowa', ADMIN_TOKEN: 'a'.repeat(20), TOKEN_SIGNING_SECRET: 's'.repeat(32),
    REPLICATION_KEYS: `k1:${'r'.repeat(32)}`, LOG_LEVEL: 'info',
  };
  const started = spawn(process.execPath, [MAIN], { env: { ...env, OPERATOR_PORT: String(operatorPort) }, stdio: ['ignore', 'pipe', 'inherit'] });
  child = started;
  let out = '';
  await new Promise<void>((resolve, reject) => {
    started.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('"msg":"region ready"')) resolve();
    });
    started.once('exit', (code) => reject(new Error(`the region exited (${code}) before it was ready:\n${out}`)));
  });
});
afterAll(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((resolve) => child?.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }
  await dropDatabase(`${PG_BASE}/${name}`);
  await deleteKeys(`${name}:`);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the health check of a region started without PORT asks its config file\'s port, and finds it ready', async () => {
  expect(await healthCheck()).toEqual({ status: 0, stderr: '' });
});

test('the health check reads the config with its precompiled validator: it loads neither TypeBox nor ajv\'s compiler', async () => {
  // They were ~190 ms of the check's ~300 ms of CPU (docs/performance.md); ajv's runtime helper for string lengths stays.
  const loadedFile = path.join(dir, 'loaded');
  const res = await healthCheck({ NODE_OPTIONS: `--require ${path.join(__dirname, 'support', 'loaded-packages.cjs')}`, LOADED_PACKAGES_FILE: loadedFile });
  expect(res).toEqual({ status: 0, stderr: '' });
  const loaded = fs.readFileSync(loadedFile, 'utf8').split('\n').filter(Boolean);
  expect(loaded.filter((p) => COMPILER_PACKAGES.includes(p))).toEqual([]);
});

test('the health check asks PORT when it is set, and says it found nothing there (exit 1)', async () => {
  const [other] = (await freePorts(1)) as [number];
  const res = await healthCheck({ PORT: String(other) });
  expect(res.status).toBe(1);
  expect(res.stderr).toBe(`http://127.0.0.1:${other}/readyz: fetch failed (ECONNREFUSED)\n`);
});

test('with OPERATOR_PORT set, the health check asks the operator port, not the region\'s port, and finds it ready', async () => {
  // Nothing at PORT: the check that asks the region's port fails; the operator port answers.
  const [other] = (await freePorts(1)) as [number];
  expect(await healthCheck({ OPERATOR_PORT: String(operatorPort), PORT: String(other) })).toEqual({ status: 0, stderr: '' });
});

test('with an operatorPort in its config file entry, the health check asks there (its /readyz and /healthz) and says it found nothing', async () => {
  const [free] = (await freePorts(1)) as [number];
  const res = await healthCheck({ REGIONS_CONFIG: configWithOperatorPort(free) });
  expect(res.status).toBe(1);
  expect(res.stderr).toBe(`http://127.0.0.1:${free}/readyz: fetch failed (ECONNREFUSED)\nhttp://127.0.0.1:${free}/healthz: fetch failed (ECONNREFUSED)\n`);
  // OPERATOR_PORT overrides the file's, as for the region.
  expect(await healthCheck({ REGIONS_CONFIG: configWithOperatorPort(free), OPERATOR_PORT: String(operatorPort) })).toEqual({ status: 0, stderr: '' });
});

test('OPERATOR_PORT set to \'\' is unset, as for the region: the health check asks the region\'s port', async () => {
  expect(await healthCheck({ OPERATOR_PORT: '' })).toEqual({ status: 0, stderr: '' });
});

test('an operator port the region would refuse (its own port, out of range) is a configuration error, exit 1', async () => {
  const same = await healthCheck({ OPERATOR_PORT: String(port) });
  expect(same).toEqual({ status: 1, stderr: `configuration error: the operator port (${port}) must differ from the region's port\n` });
  const bad = await healthCheck({ OPERATOR_PORT: '70000' });
  expect(bad).toEqual({ status: 1, stderr: 'configuration error: OPERATOR_PORT must be 1..65535, got 70000\n' });
});

test('an operator port whose /readyz says ready but whose /healthz says the main thread is stalled is unhealthy (exit 1)', async () => {
  // The operator thread answers /readyz from the database while the main thread is stuck; its /healthz says so.
  const server = http.createServer((req, res) => {
    const stalled = req.url === '/healthz';
    res.writeHead(stalled ? 503 : 200, { 'content-type': 'application/json' }).end(JSON.stringify(stalled ? { status: 'stalled' } : { ready: true }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const op = (server.address() as AddressInfo).port;
    const res = await healthCheck({ OPERATOR_PORT: String(op) });
    expect(res).toEqual({ status: 1, stderr: `http://127.0.0.1:${op}/healthz: 503 (stalled: the region's main thread published nothing lately)\n` });
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});

test('a region not ready only because it is a joining member (it needs a re-seed, not a restart) is healthy; joining with its database missing, or draining, is not', async () => {
  let answer: Record<string, unknown> = {};
  const server = http.createServer((_req, res) => res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify(answer)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const joining = { region: 'us-iowa', ready: false, database: 'ok', missing_migrations: [], redis: { reachable: true, status: 'ready' }, joining: true };
  try {
    const at = String((server.address() as AddressInfo).port);
    answer = joining;
    expect(await healthCheck({ PORT: at })).toEqual({ status: 0, stderr: '' });
    for (const other of [{ database: 'missing', missing_migrations: null }, { missing_migrations: ['20261206000000_x'] }, { draining: true }, { joining: undefined }]) {
      answer = { ...joining, ...other };
      expect({ other, res: await healthCheck({ PORT: at }) }).toEqual({ other, res: { status: 1, stderr: `http://127.0.0.1:${at}/readyz: 503 (not ready)\n` } });
    }
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});

test('a health check that cannot resolve the region says why, exit 1 (Docker reserves 2)', async () => {
  const res = await healthCheck({ REGION: 'nowhere' });
  expect(res.status).toBe(1);
  expect(res.stderr).toMatch(/^configuration error: REGION 'nowhere' is not in .*; known regions: us-iowa\n$/);
});
