/**
 * `npm start` (dist/src/main.js) failing to start for the operator's reasons, and stopped while it starts: what a
 * process manager or a container runtime sees. A failure is one line naming what to fix (it was a stack trace),
 * and a SIGTERM during the start ends the process (as PID 1 of a container, node ignored it: no handler yet).
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import { dropDatabase } from '../src/db/migrate';
import { PROJECT_ROOT } from '../src/paths';
import { deleteKeys, freePorts, PG_BASE, REDIS_URL, uniqueName } from './support/env';
import { databaseExists } from './support/region-databases';

const MAIN = path.join(PROJECT_ROOT, 'dist', 'src', 'main.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'saml-startup-'));
/** The Redis key prefixes of the regions this file starts (regionEnv's): a region that got as far as Redis left keys. */
const madePrefixes: string[] = [];
afterAll(async () => {
  fs.rmSync(dir, { recursive: true, force: true });
  for (const prefix of madePrefixes) await deleteKeys(prefix);
});

function regionEnv(databaseUrl: string, port: number, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const file = path.join(dir, `${Math.random()}.json`);
  const redisKeyPrefix = `${uniqueName('startup')}:`;
  madePrefixes.push(redisKeyPrefix);
  const config = { redisUrl: REDIS_URL, redisKeyPrefix, regions: [{ id: 'us-iowa', port, databaseUrl }] };
  fs.writeFileSync(file, JSON.stringify(config));
  return {
    ...process.env, REGIONS_CONFIG: file, REGION: 'us-iowa', ADMIN_TOKEN: 'a'.repeat(20), TOKEN_SIGNING_SECRET: 's'.repeat(32),
    REPLICATION_KEYS: `k1:${'r'.repeat(32)}`, LOG_LEVEL: 'warn', ...extra,
  };
}

test('a database that refuses connections stops the start with one line naming the database (not its password), exit 1', async () => {
  const [port, closed] = await freePorts(2);
  const res = spawnSync(process.execPath, [MAIN], { env: regionEnv(`postgresql://saml:hunter2-secret@127.0.0.1:${closed}/saml_x`, port ?? 0), encoding: 'utf8' });
  expect(res.status).toBe(1);
  expect(res.stderr).toBe(
    `fatal: cannot prepare the region's database at 127.0.0.1:${closed}/saml_x (its databaseUrl in REGIONS_CONFIG, or DATABASE_URL): ` +
      `connect ECONNREFUSED 127.0.0.1:${closed} (ECONNREFUSED)\n`,
  );
});

// The test Postgres runs without TLS (ssl = off).
test('a databaseUrl that asks for TLS of a server without it stops the start with one line saying so, exit 1', async () => {
  const [port] = await freePorts(1);
  const res = spawnSync(process.execPath, [MAIN], { env: regionEnv(`${PG_BASE}/saml_tls?sslmode=verify-full`, port ?? 0), encoding: 'utf8' });
  expect(res.status).toBe(1);
  expect(res.stderr).toMatch(/^fatal: cannot prepare the region's database at [^ ]+\/saml_tls \(its databaseUrl in REGIONS_CONFIG, or DATABASE_URL\): .*SSL.*\n$/);
});

test('a HOST that does not resolve stops the start with one line naming HOST, exit 1', async () => {
  const name = uniqueName('startup_host');
  const [port] = await freePorts(1);
  try {
    const res = spawnSync(process.execPath, [MAIN], { env: regionEnv(`${PG_BASE}/${name}`, port ?? 0, { HOST: 'no-such-host.invalid' }), encoding: 'utf8' });
    expect(res.status).toBe(1);
    expect(res.stderr).toMatch(/^fatal: cannot listen on no-such-host\.invalid: the host name does not resolve \(\w+\)\. Set "host" of its entry in REGIONS_CONFIG, or HOST\.\n$/);
  } finally {
    await dropDatabase(`${PG_BASE}/${name}`);
  }
});

test('a port taken (the region\'s or its operator port) stops the start with one line before the database is created or the region registers, exit 1', async () => {
  const name = uniqueName('startup_port');
  const [port, operatorPort] = await freePorts(2);
  const redis = new Redis(REDIS_URL);
  const prefixes: string[] = [];
  try {
    for (const taken of [port, operatorPort]) {
      const squatter = net.createServer((socket) => socket.destroy());
      await new Promise<void>((resolve) => squatter.listen(taken, '127.0.0.1', resolve));
      try {
        const env = regionEnv(`${PG_BASE}/${name}`, port ?? 0, { OPERATOR_PORT: String(operatorPort) });
        const res = spawnSync(process.execPath, [MAIN], { env, encoding: 'utf8' });
        expect(res.status).toBe(1);
        expect(await databaseExists(name)).toBe(false);
        const prefix = JSON.parse(fs.readFileSync(env.REGIONS_CONFIG as string, 'utf8')).redisKeyPrefix as string;
        prefixes.push(prefix);
        expect(await redis.keys(`${prefix}*`)).toEqual([]);
        expect(res.stderr).toBe(
          `fatal: cannot listen on 127.0.0.1:${taken}: the port is in use (this region or an earlier cluster still running?). ` +
            'Stop that process, or give this region another port: "port" (or "operatorPort") of its entry in REGIONS_CONFIG, or PORT (OPERATOR_PORT) for this process.\n',
        );
      } finally {
        await new Promise((r) => squatter.close(r));
      }
    }
  } finally {
    redis.disconnect();
    for (const prefix of prefixes) await deleteKeys(prefix);
    await dropDatabase(`${PG_BASE}/${name}`);
  }
});

test('a region started without its secrets names the file npm run cluster keeps them in for its REGIONS_CONFIG, whether it exists, and how to load it', () => {
  const clusterDir = fs.mkdtempSync(path.join(dir, 'cluster-'));
  const configPath = path.join(clusterDir, 'my.config.json');
  fs.writeFileSync(configPath, JSON.stringify({ redisUrl: REDIS_URL, redisKeyPrefix: `${uniqueName('startup')}:`, regions: [{ id: 'us-iowa', port: 1, databaseUrl: `${PG_BASE}/unused` }] }));
  const env = { ...process.env, REGIONS_CONFIG: 'my.config.json', INIT_CWD: clusterDir, REGION: 'us-iowa', ADMIN_TOKEN: '', TOKEN_SIGNING_SECRET: '', REPLICATION_KEYS: '' };
  const start = (extra: Record<string, string> = {}) => spawnSync(process.execPath, [MAIN], { env: { ...env, ...extra }, encoding: 'utf8' });

  // No cluster of this config ran here: said, with where a cluster of another config keeps them.
  const none = start();
  expect(none.status).toBe(2);
  expect(none.stderr).toContain('ADMIN_TOKEN, TOKEN_SIGNING_SECRET, REPLICATION_KEYS are not set.');
  expect(none.stderr).toContain('npm run cluster keeps the secrets of a cluster of my.config.json in .cluster/my.config.env, and there is no such file');
  expect(none.stderr).toContain('.cluster/<its name>.env next to it; load that with set -a; . <file>; set +a');

  // The cluster's file (as npm run cluster writes it): named as the shell in INIT_CWD reaches it, with the command.
  const secrets = `ADMIN_TOKEN=${'a'.repeat(20)}\nTOKEN_SIGNING_SECRET=${'s'.repeat(32)}\nREPLICATION_KEYS=k1:${'r'.repeat(32)}\n`;
  fs.mkdirSync(path.join(clusterDir, '.cluster'));
  fs.writeFileSync(path.join(clusterDir, '.cluster', 'my.config.env'), secrets, { mode: 0o600 });
  const kept = start();
  expect(kept.status).toBe(2);
  expect(kept.stderr).toContain(
    'npm run cluster keeps the secrets of my.config.json in .cluster/my.config.env, which exists: `set -a; . .cluster/my.config.env; set +a` exports them in this shell; then start again',
  );
  // One secret missing alone: the same, in its own message.
  for (const [name, says] of [['REPLICATION_KEYS', 'REPLICATION_KEYS must be set'], ['TOKEN_SIGNING_SECRET', 'TOKEN_SIGNING_SECRET must be set'], ['ADMIN_TOKEN', 'ADMIN_TOKEN must be set']] as const) {
    const given = { ADMIN_TOKEN: 'a'.repeat(20), TOKEN_SIGNING_SECRET: 's'.repeat(32), REPLICATION_KEYS: `k1:${'r'.repeat(32)}`, [name]: '' };
    const one = start(given);
    expect(one.status).toBe(2);
    expect(one.stderr).toContain(says);
    expect(one.stderr).toContain('`set -a; . .cluster/my.config.env; set +a` exports them');
  }
  // What it says to run does export them (a shell in INIT_CWD).
  const loaded = spawnSync('bash', ['-c', 'set -a; . .cluster/my.config.env; set +a; node -e "process.stdout.write(process.env.REPLICATION_KEYS)"'], { cwd: clusterDir, encoding: 'utf8' });
  expect(loaded.stdout).toBe(`k1:${'r'.repeat(32)}`);
  // A value given but refused is not a missing secret: no file named.
  const short = start({ ADMIN_TOKEN: 'short', TOKEN_SIGNING_SECRET: 's'.repeat(32), REPLICATION_KEYS: `k1:${'r'.repeat(32)}` });
  expect(short.stderr).toBe('configuration error: ADMIN_TOKEN must be set to a secret of at least 16 characters\n');

  // A file without the secret asked for: said so, not "load it".
  fs.writeFileSync(path.join(clusterDir, '.cluster', 'my.config.env'), 'OTHER=1\n');
  const lacking = start();
  expect(lacking.stderr).toContain('.cluster/my.config.env (where npm run cluster keeps the secrets of my.config.json) exists but has no ADMIN_TOKEN, TOKEN_SIGNING_SECRET, REPLICATION_KEYS line');
});

test('a SIGTERM while the start waits for the database ends the process, with the status of a process the signal ended', async () => {
  // A "database" that takes the connection and never answers: the start waits there.
  const held: net.Socket[] = [];
  let connected!: () => void;
  const reached = new Promise<void>((resolve) => (connected = resolve));
  const silent = net.createServer((socket) => {
    held.push(socket);
    connected();
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const dbPort = (silent.address() as net.AddressInfo).port;
  const [port] = await freePorts(1);
  const child = spawn(process.execPath, [MAIN], { env: regionEnv(`postgresql://postgres@127.0.0.1:${dbPort}/saml_x`, port ?? 0, { LOG_LEVEL: 'info' }), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  try {
    await reached;
    child.kill('SIGTERM');
    expect(await exited).toEqual({ code: 128 + os.constants.signals.SIGTERM, signal: null });
    expect(out).toMatch(/"signal":"SIGTERM","msg":"signal received"/);
  } finally {
    child.kill('SIGKILL');
    for (const s of held) s.destroy();
    silent.close();
  }
});

test('a migration whose SQL fails stops the start with one line naming the migration, what the database said and what to do, exit 1', async () => {
  const name = uniqueName('startup_migration');
  const migrations = path.join(dir, 'failing-migrations');
  fs.cpSync(path.join(PROJECT_ROOT, 'prisma', 'migrations'), migrations, { recursive: true });
  fs.mkdirSync(path.join(migrations, '29991231000000_bad'));
  fs.writeFileSync(path.join(migrations, '29991231000000_bad', 'migration.sql'), 'ALTER TABLE "no_such_table" ADD COLUMN "x" TEXT;\n');
  const [port] = await freePorts(1);
  try {
    const res = spawnSync(process.execPath, [MAIN], { env: regionEnv(`${PG_BASE}/${name}`, port ?? 0, { MIGRATIONS_DIR: migrations }), encoding: 'utf8' });
    expect(res.status).toBe(1);
    expect(res.stderr).toMatch(
      new RegExp(
        `^fatal: cannot prepare the region's database at [^ ]+/${name} \\(its databaseUrl in REGIONS_CONFIG, or DATABASE_URL\\): ` +
          'migration 29991231000000_bad failed and was rolled back: relation "no_such_table" does not exist \\(42P01\\)\\. [^\\n]*\\n$',
      ),
    );
  } finally {
    await dropDatabase(`${PG_BASE}/${name}`);
  }
});

test('the ready lines of a region listening on an IPv6 address bracket it in their URLs', async () => {
  const name = uniqueName('startup_ipv6');
  const [port, operatorPort] = await freePorts(2);
  const env = regionEnv(`${PG_BASE}/${name}`, port ?? 0, { HOST: '::1', OPERATOR_PORT: String(operatorPort), LOG_LEVEL: 'info' });
  const child = spawn(process.execPath, [MAIN], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const ready = new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.includes('"msg":"region ready"')) resolve();
  }));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await Promise.race([ready, exited]);
    const urlOf = (msg: string) => JSON.parse(out.split('\n').find((l) => l.includes(`"msg":"${msg}"`)) ?? '{}').url;
    expect(urlOf('region ready')).toBe(`http://[::1]:${port}`);
    expect(urlOf('operator listener ready')).toBe(`http://[::1]:${operatorPort}`);
  } finally {
    child.kill('SIGTERM');
    await exited;
    await dropDatabase(`${PG_BASE}/${name}`);
  }
});
