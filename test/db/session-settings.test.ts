/**
 * Every connection the service opens starts with its session settings (src/db/session.ts): JIT off, and
 * any `options` the operator's URL already carries kept. The database is set to JIT on first, so a
 * connection that missed the settings would show it.
 */
import { Client } from 'pg';
import { createDb, poolOf } from '../../src/db/client';
import { withSessionSettings } from '../../src/db/session';
import { createApplyPool } from '../../src/replication/pg-tx';
import { migratedDb, type MigratedDb } from '../support/migrated-db';

let m: MigratedDb;
beforeAll(async () => {
  m = await migratedDb('session');
  const name = new URL(m.url).pathname.slice(1);
  await m.db.$executeRawUnsafe(`ALTER DATABASE "${name}" SET jit = on`);
  await m.db.$executeRawUnsafe(`ALTER DATABASE "${name}" SET statement_timeout = '0'`);
});
afterAll(async () => {
  await m?.close();
});

async function shown(url: string, setting: string): Promise<string> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return String((await c.query<Record<string, string>>(`SHOW ${setting}`)).rows[0]?.[setting]);
  } finally {
    await c.end();
  }
}

test('a plain connection to the test database has JIT on (so the checks below can fail)', async () => {
  expect(await shown(m.url, 'jit')).toBe('on');
});

test('the region database client, through Prisma and on its pool, runs with JIT off', async () => {
  const db = createDb(m.url, { poolSize: 1 });
  try {
    expect((await poolOf(db).query<{ jit: string }>('SHOW jit')).rows[0]?.jit).toBe('off');
    expect(await db.$queryRawUnsafe<{ jit: string }[]>('SHOW jit')).toEqual([{ jit: 'off' }]);
  } finally {
    await db.$disconnect();
  }
});

test('the applier pool runs with JIT off', async () => {
  const pool = createApplyPool(m.url, 1);
  try {
    expect((await pool.query<{ jit: string }>('SHOW jit')).rows[0]?.jit).toBe('off');
  } finally {
    await pool.end();
  }
});

test("options the operator's URL gives are kept, and the rest of the URL is unchanged", async () => {
  const url = new URL(m.url);
  url.searchParams.set('options', '-c statement_timeout=4321');
  url.searchParams.set('application_name', 'session-test');
  const withSettings = withSessionSettings(url.toString());
  expect(await shown(withSettings, 'jit')).toBe('off');
  expect(await shown(withSettings, 'statement_timeout')).toBe('4321ms');
  expect(await shown(withSettings, 'application_name')).toBe('session-test');
  const after = new URL(withSettings);
  expect([after.username, after.password, after.host, after.pathname]).toEqual([url.username, url.password, url.host, url.pathname]);
});

test('a connection string that is not a URL is used as given', () => {
  expect(withSessionSettings('host=/var/run/postgresql dbname=x')).toBe('host=/var/run/postgresql dbname=x');
});
