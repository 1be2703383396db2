/**
 * LISTEN on a connection of its own (src/db/notify.ts): notifications arrive while it listens, a lost
 * connection is reported at once and re-established, and notifications sent after that arrive again.
 */
import { Client } from 'pg';
import { ensureDatabase } from '../../src/db/migrate';
import { listen, type ChannelListener } from '../../src/db/notify';
import { createLogger } from '../../src/logger';
import { eventually } from '../support/harness';
import { createDeployment, type TestDeployment } from '../support/env';

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
});
