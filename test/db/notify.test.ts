/**
 * LISTEN on a connection of its own (src/db/notify.ts): notifications arrive while it listens, a lost
 * connection is reported at once and re-established, and notifications sent after that arrive again.
 */
import { Client } from 'pg';
import { ensureDatabase } from '../../src/db/migrate';
import { listen, type ChannelListener } from '../../src/db/notify';
import { createLogger } from '../../src/logger';
import { eventually } from '../support/harness';
import { createDeployment, PG_BASE, type TestDeployment } from '../support/env';

let dep: TestDeployment;
let url: string;
let admin: Client;
let listener: ChannelListener | null = null;
beforeAll(async () => {
  dep = await createDeployment('notify', ['us-iowa']);
  url = dep.file.regions[0]?.databaseUrl ?? '';
  await ensureDatabase(url);
  admin = new Client({ connectionString: url });
  await admin.connect();
});
afterAll(async () => {
  await listener?.stop();
  await admin?.end();
  await dep?.cleanup();
});

test('reports a lost connection at once, listens again, and receives what is sent after', async () => {
  const states: boolean[] = [];
  const payloads: string[] = [];
  listener = listen({ databaseUrl: url, channel: 'test_channel', log: createLogger({ level: 'silent' }), retryMs: 50, onNotify: (p) => payloads.push(p), onState: (up) => states.push(up) });
  expect(await eventually(async () => states.at(-1) === true)).toBe(true);
  await admin.query("SELECT pg_notify('test_channel', 'one')");
  expect(await eventually(async () => payloads.includes('one'))).toBe(true);

  // The listener's backend goes away (a restart, a network cut).
  const killed = await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN test_channel' AND datname = current_database()");
  expect(killed.rowCount).toBe(1);
  expect(await eventually(async () => states.includes(false))).toBe(true);
  expect(await eventually(async () => states.at(-1) === true)).toBe(true);
  await admin.query("SELECT pg_notify('test_channel', 'two')");
  expect(await eventually(async () => payloads.includes('two'))).toBe(true);
  // Down was reported before up again: a cache drops everything in between.
  expect(states.indexOf(false)).toBeLessThan(states.lastIndexOf(true));
  // Stopped, it no longer listens, and says so.
  await listener.stop();
  listener = null;
  expect(states.at(-1)).toBe(false);
});

test('a database that refuses connections for a while is warned about once, not once per attempt, and its return is logged', async () => {
  await listener?.stop();
  const lines: { level: string; msg: string }[] = [];
  const at = (level: string) => (_obj: unknown, msg: string) => void lines.push({ level, msg });
  const log = { warn: at('warn'), info: at('info'), error: at('error'), debug: at('debug') } as unknown as Parameters<typeof listen>[0]['log'];
  const states: boolean[] = [];
  listener = listen({ databaseUrl: url, channel: 'test_refused', log, retryMs: 10, onNotify: () => undefined, onState: (up) => states.push(up) });
  expect(await eventually(async () => states.at(-1) === true)).toBe(true);
  const name = decodeURIComponent(new URL(url).pathname.slice(1));
  // ALTER DATABASE from another database: a session cannot disallow connections to its own.
  const maintenance = new Client({ connectionString: `${PG_BASE}/postgres` });
  await maintenance.connect();
  await maintenance.query(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS false`);
  try {
    await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN test_refused' AND datname = current_database()");
    // Twenty attempts refused in a row.
    expect(await eventually(async () => states.filter((s) => !s).length >= 20)).toBe(true);
  } finally {
    await maintenance.query(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS true`);
    await maintenance.end();
  }
  expect(await eventually(async () => states.at(-1) === true)).toBe(true);
  expect(lines.filter((l) => l.level === 'warn').map((l) => l.msg)).toEqual(['lost the LISTEN connection; reconnecting']);
  expect(lines.filter((l) => l.level === 'info').map((l) => l.msg)).toEqual(['LISTEN connection back']);
});
