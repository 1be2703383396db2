/**
 * GET /readyz: ready only while the region's database answers and carries every migration of this build;
 * Redis is reported, not required. The image and compose health checks use it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Client } from 'pg';
import pino from 'pino';
import YAML from 'yaml';
import { createDb } from '../../src/db/client';
import { listMigrations } from '../../src/db/migrate';
import { createReadiness } from '../../src/observability/readiness';
import { PROJECT_ROOT } from '../../src/paths';
import { startRegion } from '../../src/region';
import { createDeployment, freePorts, PG_BASE } from '../support/env';
import { call, eventually } from '../support/harness';
import { startInProcess, type InProcessRegion } from '../support/in-process';

let r: InProcessRegion;
beforeAll(async () => {
  r = await startInProcess('readiness');
});
afterAll(() => r?.stop());

const dbName = () => decodeURIComponent(new URL(r.deployment.file.regions[0]?.databaseUrl ?? '').pathname.slice(1));

/** Runs `sql` on the server's maintenance database (not the region's). */
async function admin(sql: string, params: unknown[] = []): Promise<void> {
  const c = new Client({ connectionString: `${PG_BASE}/postgres` });
  await c.connect();
  try {
    await c.query(sql, params);
  } finally {
    await c.end();
  }
}

test('answers 200 when the database answers and is migrated, and says Redis is reachable', async () => {
  const res = await call(r.url, 'GET', '/readyz');
  expect(res.status).toBe(200);
  expect(res.body).toEqual({ region: 'us-iowa', ready: true, database: 'ok', missing_migrations: [], redis: { reachable: true, status: 'ready' } });
});

test('answers 503 while the database refuses connections, and 200 again once it accepts them', async () => {
  const name = dbName();
  try {
    await admin(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS false`);
    await admin('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
    let last: { status: number; body: unknown } = { status: 0, body: null };
    expect(await eventually(async () => (last = await call(r.url, 'GET', '/readyz')).status === 503, 10_000)).toBe(true);
    expect(last.body).toEqual({ region: 'us-iowa', ready: false, database: 'unreachable', missing_migrations: null, redis: { reachable: true, status: 'ready' } });
    // Liveness is unaffected: the process still serves.
    expect((await call(r.url, 'GET', '/healthz')).status).toBe(200);
  } finally {
    await admin(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS true`);
  }
  expect(await eventually(async () => (await call(r.url, 'GET', '/readyz')).status === 200, 10_000)).toBe(true);
});

test('answers 503 naming a migration the database has not applied', async () => {
  const last = listMigrations().at(-1)?.name ?? '';
  const { db } = r.region;
  const [row] = await db.$queryRawUnsafe<Record<string, unknown>[]>('SELECT * FROM "_prisma_migrations" WHERE migration_name = $1', last);
  expect(row).toBeDefined();
  await db.$executeRawUnsafe('UPDATE "_prisma_migrations" SET rolled_back_at = now() WHERE migration_name = $1', last);
  try {
    const res = await call(r.url, 'GET', '/readyz');
    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({ ready: false, database: 'ok', missing_migrations: [last] });
  } finally {
    await db.$executeRawUnsafe('UPDATE "_prisma_migrations" SET rolled_back_at = NULL WHERE migration_name = $1', last);
  }
  expect((await call(r.url, 'GET', '/readyz')).status).toBe(200);
});

test('a database that answers but was never migrated is reported as missing every migration, not as unreachable', async () => {
  const name = `${dbName()}_empty`;
  await admin(`CREATE DATABASE "${name}"`);
  const db = createDb(`${PG_BASE}/${name}`);
  try {
    const check = createReadiness({ db, redisStatus: () => 'ready', log: pino({ level: 'silent' }) });
    expect(await check()).toEqual({
      ready: false,
      database: 'ok',
      missing_migrations: listMigrations().map((m) => m.name),
      redis: { reachable: true, status: 'ready' },
    });
  } finally {
    await db.$disconnect();
    await admin(`DROP DATABASE "${name}"`);
  }
});

test('stays ready without Redis, and says so', async () => {
  const [port] = await freePorts(1);
  const deployment = await createDeployment('readiness-no-redis', ['us-iowa'], { redisUrl: `redis://127.0.0.1:${port}` });
  const region = await startRegion(deployment.configFor('us-iowa'), { port: 0, drainTimeoutMs: 2000 });
  try {
    const res = await call(region.url, 'GET', '/readyz');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ ready: true, database: 'ok', redis: { reachable: false } });
  } finally {
    await region.stop();
    await deployment.cleanup();
  }
});

// The image and compose run src/healthcheck.ts, which asks /readyz (test/healthcheck.test.ts runs it).
test('the image and compose health checks ask /readyz', () => {
  const df = fs.readFileSync(path.join(PROJECT_ROOT, 'Dockerfile'), 'utf8');
  expect(df).toMatch(/^HEALTHCHECK [^\n]*\\\n\s+CMD \["node", "dist\/src\/healthcheck\.js"\]/m);
  expect(fs.readFileSync(path.join(PROJECT_ROOT, 'src', 'healthcheck.ts'), 'utf8')).toMatch(/\/readyz/);
  const compose = YAML.parse(fs.readFileSync(path.join(PROJECT_ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
    services: Record<string, { healthcheck?: { test?: string[] } }>;
  };
  for (const s of ['us-iowa', 'europe-belgium', 'asia-japan']) expect(compose.services[s]?.healthcheck?.test?.join(' ')).toContain('dist/src/healthcheck.js');
});
