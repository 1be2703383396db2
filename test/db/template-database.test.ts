/**
 * The tests' region databases are copies of one migrated template per jest run (test/support/template-db.ts):
 * a region's start finds its database migrated, each copy has an identity of its own, a deployment can leave
 * its databases for the regions to create, and a template is one run's alone (nobody connects to it; one left
 * by a killed run is dropped by the next).
 */
import { spawnSync } from 'node:child_process';
import pino from 'pino';
import { Client } from 'pg';
import { dropDatabase, listMigrations } from '../../src/db/migrate';
import { startRegion } from '../../src/region';
import { createDeployment, PG_BASE, type TestDeployment } from '../support/env';
import { logLines } from '../support/log-lines';
import { createTemplate, dropTemplate, TEMPLATE_ENV, TEMPLATE_MIGRATIONS_ENV, TEMPLATE_SWITCH_ENV, usableTemplate } from '../support/template-db';

// TEST_DATABASE_TEMPLATE=off: no template to test (each region makes its own database).
const withTemplate = process.env[TEMPLATE_SWITCH_ENV] === 'off' ? test.skip : test;

const deployments: TestDeployment[] = [];
afterAll(async () => {
  for (const d of deployments) await d.cleanup();
});

async function query<T extends object>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

const databaseName = (url: string) => new URL(url).pathname.slice(1);
const exists = async (url: string) =>
  (await query(`${PG_BASE}/postgres`, 'SELECT 1 FROM pg_database WHERE datname = $1', [databaseName(url)])).length === 1;

/** Starts `region` of `dep` in this process and returns its `database ready` line. */
async function databaseReadyLine(dep: TestDeployment, region: string) {
  const { lines, sink } = logLines();
  const running = await startRegion(dep.configFor(region), { port: 0, drainTimeoutMs: 5000, log: pino({ level: 'info' }, sink) });
  await running.stop();
  return lines.find((l) => l.msg === 'database ready');
}

withTemplate('this run has a template of the migrations in prisma/migrations, and nobody can connect to it', async () => {
  const template = usableTemplate();
  expect(template).toMatch(/^t_template_/);
  await expect(query(`${PG_BASE}/${template}`, 'SELECT 1')).rejects.toMatchObject({ code: '55000' });
});

withTemplate("a deployment's region databases exist before its regions start, migrated: the start creates and applies nothing", async () => {
  const dep = await createDeployment('tmplcopy', ['us-iowa', 'europe-belgium']);
  deployments.push(dep);
  for (const r of dep.file.regions) expect(await exists(r.databaseUrl)).toBe(true);
  expect(await databaseReadyLine(dep, 'us-iowa')).toMatchObject({ created: false, applied: [] });
  const names = await query<{ migration_name: string }>(dep.file.regions[0]?.databaseUrl ?? '', 'SELECT migration_name FROM "_prisma_migrations" ORDER BY migration_name');
  expect(names.map((n) => n.migration_name)).toEqual(listMigrations().map((m) => m.name));
});

withTemplate('each copy has an identity of its own (the id of its first migration record), as databases migrated one by one have', async () => {
  const dep = await createDeployment('tmplidentity', ['us-iowa', 'europe-belgium']);
  deployments.push(dep);
  const identity = async (url: string) =>
    (await query<{ id: string }>(url, 'SELECT id FROM "_prisma_migrations" ORDER BY started_at, migration_name LIMIT 1'))[0]?.id;
  const [a, b] = await Promise.all(dep.file.regions.map((r) => identity(r.databaseUrl)));
  expect(a).toMatch(/^[0-9a-f-]{36}$/);
  expect(b).toMatch(/^[0-9a-f-]{36}$/);
  expect(a).not.toBe(b);
});

withTemplate('absentDatabases leaves those regions\' databases to their start, which creates them and applies every migration', async () => {
  const dep = await createDeployment('tmplabsent', ['us-iowa', 'europe-belgium'], {}, {}, { absentDatabases: ['us-iowa'] });
  deployments.push(dep);
  const [iowa, belgium] = dep.file.regions.map((r) => r.databaseUrl);
  expect(await exists(iowa ?? '')).toBe(false);
  expect(await exists(belgium ?? '')).toBe(true);
  expect(await databaseReadyLine(dep, 'us-iowa')).toMatchObject({ created: true, applied: listMigrations().map((m) => m.name) });
});

withTemplate("a run's setup drops the template a killed run of this host left, and keeps a running one's", async () => {
  const ours = { name: process.env[TEMPLATE_ENV], digest: process.env[TEMPLATE_MIGRATIONS_ENV] };
  // A pid no process has now: that of a process that ended.
  const gone = spawnSync(process.execPath, ['-e', '0']).pid;
  const ourName = ours.name ?? '';
  const stale = ourName.replace(/_\d+_[0-9a-f]+$/, `_${gone}_abcdef`);
  expect(stale).not.toBe(ourName);
  await query(`${PG_BASE}/postgres`, `CREATE DATABASE "${stale}"`);
  let made: string | null = null;
  try {
    made = await createTemplate(PG_BASE);
    expect(made).toMatch(/^t_template_/);
    expect(await exists(`${PG_BASE}/${stale}`)).toBe(false);
    // This run's own template (its jest process is alive) is kept, and copies are still made from it.
    expect(await exists(`${PG_BASE}/${ourName}`)).toBe(true);
  } finally {
    await dropTemplate(PG_BASE, made ?? undefined);
    await dropDatabase(`${PG_BASE}/${stale}`);
    // createTemplate set this process's environment to the template it made: this run's again.
    process.env[TEMPLATE_ENV] = ourName;
    process.env[TEMPLATE_MIGRATIONS_ENV] = ours.digest ?? '';
  }
  expect(made && (await exists(`${PG_BASE}/${made}`))).toBe(false);
});
