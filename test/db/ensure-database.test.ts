/**
 * The region's start creates its database if missing (src/db/migrate.ts, ensureDatabase). A production role is
 * often let into its own database only (pg_hba, a pooler that lists that database alone, a managed server);
 * the start connected to the `postgres` maintenance database even when its own existed, and failed there.
 * Here a proxy in front of the real Postgres refuses every connection to `postgres`, as such a server would.
 */
import net from 'node:net';
import { dropDatabase, ensureDatabase, migrate } from '../../src/db/migrate';
import { PG_BASE, uniqueName } from '../support/env';

const upstream = new URL(PG_BASE);
const seen: string[] = [];

/** The `database` parameter of a startup message (protocol 3.0: length, version, then key\0value\0 pairs). */
function startupDatabase(packet: Buffer): string | undefined {
  const fields = packet.subarray(8).toString('utf8').split('\0');
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === 'database') return fields[i + 1];
  return undefined;
}

const proxy = net.createServer((client) => {
  let buffered = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    if (buffered.length < 4 || buffered.length < buffered.readInt32BE(0)) return;
    client.off('data', onData);
    const database = startupDatabase(buffered) ?? '';
    seen.push(database);
    if (database === 'postgres') return void client.destroy();
    const server = net.connect(Number(upstream.port || 5432), upstream.hostname, () => {
      server.write(buffered);
      client.pipe(server).pipe(client);
    });
    server.on('error', () => client.destroy());
    client.on('error', () => server.destroy());
  };
  client.on('data', onData);
});

let proxied = '';
beforeAll(async () => {
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const u = new URL(PG_BASE);
  u.host = `127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
  proxied = u.toString().replace(/\/$/, '');
});
afterAll(() => new Promise<void>((resolve) => proxy.close(() => resolve())));

test('an existing database is used without connecting to the maintenance database, and migrated', async () => {
  const name = uniqueName('ensure_db');
  await ensureDatabase(`${PG_BASE}/${name}`);
  try {
    seen.length = 0;
    await expect(ensureDatabase(`${proxied}/${name}`)).resolves.toBe(false);
    expect(seen).not.toContain('postgres');
    expect((await migrate(`${proxied}/${name}`)).length).toBeGreaterThan(0);
  } finally {
    await dropDatabase(`${PG_BASE}/${name}`);
  }
});

test('a missing database is still created through the maintenance database', async () => {
  const name = uniqueName('ensure_db_new');
  try {
    await expect(ensureDatabase(`${PG_BASE}/${name}`)).resolves.toBe(true);
    await expect(ensureDatabase(`${PG_BASE}/${name}`)).resolves.toBe(false);
  } finally {
    await dropDatabase(`${PG_BASE}/${name}`);
  }
});
