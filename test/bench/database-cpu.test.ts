/**
 * The bench's CPU of one database's Postgres backends (bench/database-cpu.ts): which backends a window counts,
 * against the real Postgres. No figure of time is asserted (the host is shared); only which backends are
 * selected, and that CPU spent by a counted one shows.
 */
import fs from 'node:fs';
import pg from 'pg';
import { backendPids, DatabaseCpu } from '../../bench/database-cpu';
import { dropDatabase, ensureDatabase } from '../../src/db/migrate';
import { PG_BASE, uniqueName } from '../support/env';

const database = uniqueName('database_cpu');
const url = `${PG_BASE}/${database}`;
const clients: pg.Client[] = [];
let server: pg.Pool;

async function connect(to: string): Promise<{ client: pg.Client; pid: number }> {
  const client = new pg.Client({ connectionString: to });
  await client.connect();
  clients.push(client);
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  return { client, pid: rows[0]?.pid ?? -1 };
}

/** Waits for a backend's process to exit (a client's end() returns before its backend has gone). */
async function exited(pid: number): Promise<void> {
  for (let i = 0; i < 100 && fs.existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 50));
}

beforeAll(async () => {
  await ensureDatabase(url);
  server = new pg.Pool({ connectionString: `${PG_BASE}/postgres`, max: 1 });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  await server.end();
  await dropDatabase(url);
});

describe('the CPU of one database\'s backends', () => {
  test('selects the backends connected to that database, not those of another database nor the listing\'s own', async () => {
    const mine = await connect(url);
    const other = await connect(`${PG_BASE}/postgres`);
    const { rows } = await server.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const listed = await backendPids(server, database);
    expect(listed).toContain(mine.pid);
    expect(listed).not.toContain(other.pid);
    expect(listed).not.toContain(rows[0]?.pid);
    await mine.client.end();
  });

  test('counts a backend open when the window opens, one started inside it, and one that ended inside it (up to its last poll)', async () => {
    const before = await connect(url);
    const window = await DatabaseCpu.open(server, database);
    const during = await connect(url);
    // Work on a backend of another database, in the window: not this database's.
    const other = await connect(`${PG_BASE}/postgres`);
    await other.client.query('SELECT count(*) FROM generate_series(1, 2000000)');
    // Work on the backend that started inside the window; it then ends, after a poll saw what it spent.
    await during.client.query('SELECT count(*) FROM generate_series(1, 2000000)');
    await window.poll();
    await during.client.end();
    await exited(during.pid);
    const spent = await window.close();
    expect(spent.backends).toBe(2);
    expect(spent.ended).toBe(1);
    expect(spent.cpu).toBeGreaterThan(0);
    await before.client.end();
  });

  test('a backend of that database that is gone before the window closes, and was never polled, adds nothing', async () => {
    const window = await DatabaseCpu.open(server, database);
    const brief = await connect(url);
    await brief.client.query('SELECT count(*) FROM generate_series(1, 2000000)');
    await brief.client.end();
    await exited(brief.pid);
    const spent = await window.close();
    expect(spent).toEqual({ cpu: 0, backends: 0, ended: 0 });
  });
});
