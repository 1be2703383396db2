/**
 * Every connection the service opens starts with its session settings (src/db/session.ts): JIT off, and
 * any `options` the operator's URL already carries kept. The database is set to JIT on first, so a
 * connection that missed the settings would show it.
 */
import { Client, type ClientConfig } from 'pg';
import { createDb, poolOf } from '../../src/db/client';
import { sessionConfig } from '../../src/db/session';
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

async function shown(to: string | ClientConfig, setting: string): Promise<string> {
  const c = new Client(typeof to === 'string' ? { connectionString: to } : to);
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

test("options the operator's URL gives are kept, and so are the URL's other parameters", async () => {
  const url = new URL(m.url);
  url.searchParams.set('options', '-c statement_timeout=4321');
  url.searchParams.set('application_name', 'session-test');
  const config = sessionConfig(url.toString());
  expect(await shown(config, 'jit')).toBe('off');
  expect(await shown(config, 'statement_timeout')).toBe('4321ms');
  expect(await shown(config, 'application_name')).toBe('session-test');
});

test('without options in the URL, PGOPTIONS is kept', async () => {
  const before = process.env.PGOPTIONS;
  process.env.PGOPTIONS = '-c statement_timeout=777';
  try {
    const config = sessionConfig(m.url);
    expect(await shown(config, 'jit')).toBe('off');
    expect(await shown(config, 'statement_timeout')).toBe('777ms');
  } finally {
    if (before === undefined) delete process.env.PGOPTIONS;
    else process.env.PGOPTIONS = before;
  }
});

test('a URL node-postgres reads leniently (a raw % in the password) still connects, with the settings', async () => {
  // The test server trusts local connections, so any password connects. Rewriting such a URL re-encoded
  // the added option (jit%3Doff) and Postgres refused the connection.
  const url = m.url.replace('postgresql://postgres@', 'postgresql://postgres:100%@');
  expect(url).toContain('100%@');
  expect(await shown(sessionConfig(url), 'jit')).toBe('off');
});

test("the service's settings come after the operator's: a URL asking for JIT on still gets it off", async () => {
  const url = new URL(m.url);
  url.searchParams.set('options', '-c jit=on -c statement_timeout=4321');
  const config = sessionConfig(url.toString());
  expect(await shown(config, 'jit')).toBe('off');
  expect(await shown(config, 'statement_timeout')).toBe('4321ms');
});
