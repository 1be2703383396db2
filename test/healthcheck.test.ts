/**
 * The image's HEALTHCHECK, run as the Dockerfile says (there is no Docker engine on the build machines) against a
 * region started from dist/src/main.js: it asks the port the region listens on, its config file's when PORT is
 * unset (it asked 8080 then, and such a region was never healthy).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { dropDatabase } from '../src/db/migrate';
import { PROJECT_ROOT } from '../src/paths';
import { deleteKeys, freePorts, PG_BASE, REDIS_URL, uniqueName } from './support/env';

const MAIN = path.join(PROJECT_ROOT, 'dist', 'src', 'main.js');
const name = uniqueName('healthcheck');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'saml-healthcheck-'));
let port = 0;
let env: NodeJS.ProcessEnv;
let child: ChildProcess | undefined;

/** The HEALTHCHECK's command as the Dockerfile gives it (exec form), its `node` this one; run from /app's equivalent. */
function healthCheck(extra: Record<string, string> = {}): { status: number | null; stderr: string } {
  const df = fs.readFileSync(path.join(PROJECT_ROOT, 'Dockerfile'), 'utf8');
  const cmd = /^HEALTHCHECK [^\n]*\\\n\s*CMD (\[.*\])\s*$/m.exec(df)?.[1];
  const [exe, ...args] = JSON.parse(cmd ?? '[]') as string[];
  expect(exe).toBe('node');
  const res = spawnSync(process.execPath, args, { cwd: PROJECT_ROOT, env: { ...env, ...extra }, encoding: 'utf8', timeout: 10_000 });
  return { status: res.status, stderr: res.stderr };
}

beforeAll(async () => {
  [port] = (await freePorts(1)) as [number];
  const file = path.join(dir, 'regions.json');
  fs.writeFileSync(file, JSON.stringify({ redisUrl: REDIS_URL, redisKeyPrefix: `${name}:`, regions: [{ id: 'us-iowa', port, databaseUrl: `${PG_BASE}/${name}` }] }));
  // No PORT: the region listens on its entry's port.
  const { PORT: _unset, ...rest } = process.env;
  env = {
    ...rest, REGIONS_CONFIG: file, REGION: 'us-iowa', ADMIN_TOKEN: 'a'.repeat(20), TOKEN_SIGNING_SECRET: 's'.repeat(32),
    REPLICATION_KEYS: `k1:${'r'.repeat(32)}`, LOG_LEVEL: 'info',
  };
  const started = spawn(process.execPath, [MAIN], { env, stdio: ['ignore', 'pipe', 'inherit'] });
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

test('the health check of a region started without PORT asks its config file\'s port, and finds it ready', () => {
  expect(healthCheck()).toEqual({ status: 0, stderr: '' });
});

test('the health check asks PORT when it is set, and says it found nothing there (exit 1)', async () => {
  const [other] = (await freePorts(1)) as [number];
  const res = healthCheck({ PORT: String(other) });
  expect(res.status).toBe(1);
  expect(res.stderr).toBe(`http://127.0.0.1:${other}/readyz: fetch failed (ECONNREFUSED)\n`);
});

test('a health check that cannot resolve the region says why, exit 1 (Docker reserves 2)', () => {
  const res = healthCheck({ REGION: 'nowhere' });
  expect(res.status).toBe(1);
  expect(res.stderr).toMatch(/^configuration error: REGION 'nowhere' is not in .*; known regions: us-iowa\n$/);
});
