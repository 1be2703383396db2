/**
 * When the database ends the region's sessions under running statements (a restart, an administrator's
 * pg_terminate_backend), a read runs again on another connection and a write whose transaction did not
 * commit runs again, so the client sees neither the lost connection nor a 500 (the stop 38 note: every
 * read on a connection ended under the pool answered 500, 25 of 100 reads sent as the sessions were ended).
 *
 * Deterministic: the statements are held on a lock taken from a session of the test's own, their backends
 * ended while they wait, and the lock released afterwards.
 */
import { createServer, connect, type Server } from 'node:net';
import { Client } from 'pg';
import type { Config } from '../../src/config';
import { startRegion, type RunningRegion } from '../../src/region';
import { adminHeaders, call, createOrg, eventually, slashidHeaders } from '../support/harness';
import { fixture, startIdpServer, type IdpServer } from '../support/idp-server';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { isConnectionLost, isConnectRefused } from '../../src/db/pg-errors';
import { ConnectionLost } from '../../src/replication/pg-tx';
import { asAppError } from '../../src/http/errors';
import { apiKeyCacheOf } from '../../src/organizations/api-key-cache';

const PATH = '/organizations/sso/saml/provider-credentials';
let r: InProcessRegion;
let idp: IdpServer;
let locker: Client;
let admin: Client;
let database: string;

beforeAll(async () => {
  idp = await startIdpServer();
  idp.set('lost.xml', fixture('okta.xml'));
  r = await startInProcess('dblost', ['us-iowa', 'europe-belgium'], { metadataAllowedHosts: [idp.hostPort] }, 'us-iowa', { operatorPort: 0 });
  const url = r.deployment.configFor('us-iowa').region.databaseUrl;
  database = new URL(url).pathname.slice(1);
  locker = new Client({ connectionString: url });
  admin = new Client({ connectionString: url });
  await locker.connect();
  await admin.connect();
});
afterAll(async () => {
  await locker?.end();
  await admin?.end();
  await r?.stop();
  await idp?.close();
});

/** Backends of the region (not the test's) waiting on a lock in a statement that names `table`. */
async function waiting(table: string): Promise<number[]> {
  const res = await admin.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid NOT IN ($2, pg_backend_pid()) AND wait_event_type = 'Lock' AND query ILIKE '%' || $3 || '%'`,
    [database, (locker as Client & { processID: number }).processID, table],
  );
  return res.rows.map((row) => row.pid);
}

/** Backends ended so far (one still listed while it exits is not counted again). */
const ended = new Set<number>();

/**
 * Ends the sessions of `count` statements waiting on `table` once they wait; with `idleToo`, every idle
 * session of the region at the same moment (as a restart does: the pool's idle connections die with them).
 */
async function endWhenWaiting(table: string, count: number, idleToo = false): Promise<void> {
  let pids: number[] = [];
  expect(await eventually(async () => (pids = (await waiting(table)).filter((pid) => !ended.has(pid))).length >= count, 10_000, 20)).toBe(true);
  pids.forEach((pid) => ended.add(pid));
  await admin.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE pid = ANY($1::int[]) OR ($2 AND datname = $3 AND state = 'idle' AND pid NOT IN ($4, pg_backend_pid()))`,
    [pids, idleToo, database, (locker as Client & { processID: number }).processID],
  );
}

/** A 408 whose message says the write may have been kept, with the change to follow (X-Change-Id): its id. */
function followUp408(res: { status: number; body: any; headers: Headers }, message: RegExp): string | null {
  const changeId = res.headers.get('x-change-id');
  expect({ status: res.status, changeId, message: res.body?.errors?.[0]?.message }).toEqual({
    status: 408,
    changeId: expect.stringMatching(/^[0-9a-f-]{36}$/),
    message: expect.stringMatching(message),
  });
  return changeId;
}

async function credential(org: { id: string; api_key: string }, label: string): Promise<string> {
  const created = await call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url('lost.xml'), label }, headers: slashidHeaders(org) });
  expect(created.status).toBe(201);
  return created.body.result.id as string;
}

test('a read whose connection is ended under it is answered from another connection', async () => {
  const org = await createOrg(r.url, 'dblost-read');
  const id = await credential(org, 'read');
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE saml_provider_credentials IN ACCESS EXCLUSIVE MODE');
  // One credential on the pool's prepared read; the list's one statement (its page and its count), also prepared on the pool.
  const one = call(r.url, 'GET', `${PATH}/${id}`, { headers: slashidHeaders(org) });
  const list = call(r.url, 'GET', PATH, { headers: slashidHeaders(org) });
  try {
    await endWhenWaiting('saml_provider_credentials', 2);
  } finally {
    await locker.query('COMMIT');
  }
  expect({ status: (await one).status, label: (await one).body.result?.label }).toEqual({ status: 200, label: 'read' });
  expect({ status: (await list).status, ids: (await list).body.result?.map((c: { id: string }) => c.id) }).toEqual({ status: 200, ids: [id] });
});

test('an admin read whose statements (a WITH query among them) are ended under them is answered from other connections', async () => {
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE saml_credential_metadata IN ACCESS EXCLUSIVE MODE');
  const listing = call(r.url, 'GET', '/admin/metadata-refresh', { headers: adminHeaders });
  try {
    // The admin pool's two connections take its first two statements, the held ones' list (a WITH query)
    // among them: both wait on the table, and are ended.
    expect(await eventually(async () => (await waiting('held AS MATERIALIZED')).length === 1, 10_000, 20)).toBe(true);
    await endWhenWaiting('saml_credential_metadata', 2);
  } finally {
    await locker.query('COMMIT');
  }
  const res = await listing;
  expect({ status: res.status, region: res.body.region }).toEqual({ status: 200, region: 'us-iowa' });
});

test('the operator port\'s reads (its own pool, in its own thread) run again on another connection too', async () => {
  const operator = r.region.operator?.url as string;
  expect((await call(operator, 'GET', '/readyz')).status).toBe(200); // its pool has a connection now
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE "_prisma_migrations" IN ACCESS EXCLUSIVE MODE');
  const ready = call(operator, 'GET', '/readyz');
  try {
    await endWhenWaiting('_prisma_migrations', 1);
  } finally {
    await locker.query('COMMIT');
  }
  const res = await ready;
  expect({ status: res.status, ready: res.body.ready, database: res.body.database }).toEqual({ status: 200, ready: true, database: 'ok' });
});

test('a write whose connection is ended before it commits runs again and is kept once', async () => {
  const org = await createOrg(r.url, 'dblost-write');
  const id = await credential(org, 'before');
  // Warm the row's guess: the PATCH is then one round trip carrying its COMMIT (sent, not confirmed).
  expect((await call(r.url, 'GET', `${PATH}/${id}`, { headers: slashidHeaders(org) })).status).toBe(200);
  await locker.query('BEGIN');
  await locker.query('SELECT 1 FROM saml_provider_credentials WHERE id = $1 FOR UPDATE', [id]);
  const patch = call(r.url, 'PATCH', `${PATH}/${id}`, { body: { label: 'after' }, headers: slashidHeaders(org) });
  try {
    await endWhenWaiting('saml_provider_credentials', 1);
    // It runs again on another connection, waits on the same lock, and is ended again (twice in all).
    await endWhenWaiting('saml_provider_credentials', 1);
  } finally {
    await locker.query('COMMIT');
  }
  const res = await patch;
  expect({ status: res.status, body: res.body }).toEqual({ status: 204, body: null });
  const read = await call(r.url, 'GET', `${PATH}/${id}`, { headers: slashidHeaders(org) });
  expect(read.body.result.label).toBe('after');
});

test('a write whose first round trip is ended with every idle connection of the pool runs again on a live one', async () => {
  const org = await createOrg(r.url, 'dblost-idle');
  const id = await credential(org, 'before');
  // A second process of the region, which has seen no row: its PATCH is two round trips (lock and read,
  // then the write with COMMIT), and the first is ended before any COMMIT was sent.
  const fresh = await startRegion(r.deployment.configFor('us-iowa'), { port: 0, drainTimeoutMs: 5000 });
  try {
    // Idle connections in its pool, all of which the database ends with the write's.
    await Promise.all(Array.from({ length: 12 }, () => call(fresh.url, 'GET', PATH, { headers: slashidHeaders(org) })));
    await locker.query('BEGIN');
    await locker.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`saml_provider_credentials:${id}`]);
    const patch = call(fresh.url, 'PATCH', `${PATH}/${id}`, { body: { label: 'after idle' }, headers: slashidHeaders(org) });
    try {
      await endWhenWaiting('saml_provider_credentials', 1, true);
    } finally {
      await locker.query('COMMIT');
    }
    const res = await patch;
    expect({ status: res.status, body: res.body }).toEqual({ status: 204, body: null });
    expect((await call(r.url, 'GET', `${PATH}/${id}`, { headers: slashidHeaders(org) })).body.result.label).toBe('after idle');
  } finally {
    await fresh.stop();
  }
});

/**
 * A TCP proxy to Postgres that, once armed with a text, forwards the first client batch carrying it and
 * COMMIT, then closes both sides before the server's answer comes back: the commit goes through and the
 * region never hears of it. Armed with `refuseMs`, it then closes every connection and refuses new ones
 * for that long, as a database that went away would. With `hold`, the batch's own connection is left open
 * and its answer withheld (the region waits on it until its bound), while the others go at once.
 */
function commitCutter(): Promise<{ server: Server; port: number; arm(text: string, refuseMs?: number, hold?: boolean): Promise<void> }> {
  let armed: { text: string; refuseMs: number; hold: boolean; done(): void } | null = null;
  // Until then, a new connection is closed at once (the database does not answer).
  let refuseUntil = 0;
  const open = new Set<() => void>();
  const server = createServer((client) => {
    if (Date.now() < refuseUntil) return void client.destroy();
    const upstream = connect(5432, '127.0.0.1');
    const close = () => {
      client.destroy();
      upstream.destroy();
      open.delete(close);
    };
    open.add(close);
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    upstream.pipe(client);
    client.on('data', (chunk: Buffer) => {
      const text = chunk.toString('latin1');
      if (armed && text.includes(armed.text) && text.includes('COMMIT')) {
        const { done, refuseMs, hold } = armed;
        armed = null;
        upstream.unpipe(client);
        if (hold) {
          return void upstream.write(chunk, () => {
            refuseUntil = Date.now() + refuseMs;
            for (const other of [...open]) if (other !== close) other();
            done();
          });
        }
        upstream.write(chunk, () =>
          setTimeout(() => {
            close();
            // With refuseMs, the database stops answering altogether for that long: every connection closed.
            if (refuseMs > 0) {
              refuseUntil = Date.now() + refuseMs;
              for (const other of [...open]) other();
            }
            done();
          }, 300),
        );
        return;
      }
      upstream.write(chunk);
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, port: (server.address() as { port: number }).port, arm: (text, refuseMs = 0, hold = false) => new Promise((done) => (armed = { text, refuseMs, hold, done })) }),
    ),
  );
}

describe('a write whose COMMIT went out as its connection was lost (a proxy cuts it before the answer)', () => {
  let cutter: Awaited<ReturnType<typeof commitCutter>>;
  let region: RunningRegion;
  let org: { id: string; api_key: string };
  /** The region's config with its database reached through the cutter. */
  let throughCutter: Config;
  beforeAll(async () => {
    cutter = await commitCutter();
    const config = r.deployment.configFor('us-iowa');
    const proxied = new URL(config.region.databaseUrl);
    proxied.hostname = '127.0.0.1';
    proxied.port = String(cutter.port);
    throughCutter = { ...config, region: { ...config.region, databaseUrl: proxied.toString() } };
    region = await startRegion(throughCutter, { port: 0, drainTimeoutMs: 5000 });
    org = await createOrg(region.url, 'dblost-commit');
  });
  afterAll(async () => {
    await region?.stop();
    await new Promise((resolve) => cutter?.server.close(resolve));
  });
  const create = async (label: string) => {
    const created = await call(region.url, 'POST', PATH, { body: { idp_metadata_url: idp.url('lost.xml'), label }, headers: slashidHeaders(org) });
    expect(created.status).toBe(201);
    return created.body.result.id as string;
  };
  const outboxed = async (label: string) =>
    (await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM replication_outbox WHERE event::text LIKE '%' || $1 || '%'`, [label])).rows[0]?.n;

  test('found kept: answered as done, and not run again', async () => {
    const id = await create('before');
    const label = `kept-${id.slice(-8)}`;
    const cut = cutter.arm(label);
    const res = await call(region.url, 'PATCH', `${PATH}/${id}`, { body: { label }, headers: slashidHeaders(org) });
    await cut;
    expect({ status: res.status, body: res.body }).toEqual({ status: 204, body: null });
    // Committed once: the one change of the PATCH is in the outbox (not delivered: the other region is not running).
    expect(await outboxed(label)).toBe(1);
    expect((await call(region.url, 'GET', `${PATH}/${id}`, { headers: slashidHeaders(org) })).body.result.label).toBe(label);
  });

  test('not to be found out (the database does not answer): a 408 naming the change to follow', async () => {
    const id = await create('before');
    const label = `unknown-${id.slice(-8)}`;
    const cut = cutter.arm(label, 1500);
    const res = await call(region.url, 'PATCH', `${PATH}/${id}`, { body: { label }, headers: slashidHeaders(org) });
    await cut;
    // As a commit past its bound: 408, its change to follow (a 503 says "nothing was done" by contract).
    const changeId = followUp408(res, /was not confirmed: the connection to the database was lost as it committed.*may have been kept\. Follow its change \(X-Change-Id\)/);
    // It was kept; once the database answers, the change says so and the resource shows it.
    expect(await eventually(async () => (await call(region.url, 'GET', `${PATH}/${id}`, { headers: slashidHeaders(org) })).body?.result?.label === label)).toBe(true);
    const change = await call(region.url, 'GET', `/admin/replication/changes/${changeId}`, { headers: adminHeaders });
    expect(change.status).toBe(200);
    expect(await outboxed(label)).toBe(1);
  });

  test('past its bound with its COMMIT sent and the database not answering: a 408 naming the change to follow', async () => {
    // A process of the region whose writes may run 1.5 s; its PATCH's one batch (the row's guess is warm)
    // reaches the database, which commits it, and the answer never comes back.
    const bounded = await startRegion({ ...throughCutter, writeTransactionTimeoutMs: 1500 }, { port: 0, drainTimeoutMs: 5000 });
    try {
      const created = await call(bounded.url, 'POST', PATH, { body: { idp_metadata_url: idp.url('lost.xml'), label: 'before' }, headers: slashidHeaders(org) });
      expect(created.status).toBe(201);
      const id = created.body.result.id as string;
      const label = `late-${id.slice(-8)}`;
      // Past the bound the process asks the database whether it committed: no answer for 4 s (every connection closed).
      const cut = cutter.arm(label, 4000, true);
      const res = await call(bounded.url, 'PATCH', `${PATH}/${id}`, { body: { label }, headers: slashidHeaders(org) });
      await cut;
      const changeId = followUp408(res, /was not confirmed within the 2 s a write transaction may run .*may have been kept\. Follow its change \(X-Change-Id\)/);
      // It was kept: once the database answers, the resource shows it, and the change named is the one in the outbox.
      expect(await eventually(async () => (await call(bounded.url, 'GET', `${PATH}/${id}`, { headers: slashidHeaders(org) })).body?.result?.label === label)).toBe(true);
      expect(await outboxed(label)).toBe(1);
      expect((await admin.query('SELECT 1 FROM replication_outbox WHERE change_id = $1', [changeId])).rowCount).toBe(1);
    } finally {
      await bounded.stop();
    }
  }, 30_000);

  test('a key rotation whose outcome is not known drops the cached keys: the previous key does not work once it is found kept', async () => {
    const owner = await createOrg(region.url, 'dblost-rotate');
    const cache = apiKeyCacheOf(region.db);
    expect(await eventually(async () => cache?.active === true)).toBe(true);
    for (let i = 0; i < 2; i++) expect((await call(region.url, 'GET', PATH, { headers: slashidHeaders(owner) })).status).toBe(200);
    // The database's notifications (and the listener's own drop when it reconnects) come 20 s late, so only
    // what the writing process does itself can take the old key out.
    const late = cache?.invalidate.bind(cache);
    if (cache && late) cache.invalidate = () => void setTimeout(late, 20_000).unref();
    // The batch of the outbox row (its event names the key table) carries the COMMIT.
    const cut = cutter.arm('"api_keys"', 1500);
    const rotated = await call(region.url, 'POST', `/admin/organizations/${owner.id}/api-keys`, { headers: adminHeaders });
    await cut;
    expect({ status: rotated.status, message: rotated.body?.errors?.[0]?.message }).toEqual({ status: 408, message: expect.stringMatching(/may have been kept/) });
    // Once the database answers and the listener listens again (the cache is in use again), it was kept.
    expect(await eventually(async () => cache?.active === true && (await call(region.url, 'GET', '/readyz')).status === 200)).toBe(true);
    expect((await call(region.url, 'GET', PATH, { headers: slashidHeaders(owner) })).status).toBe(401);
  }, 30_000);
});

test('a lost connection the region could not recover from is a 503 saying the outcome is not known, not a 500', () => {
  const lost = Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01', severity: 'FATAL' });
  expect(isConnectionLost(lost)).toBe(true);
  expect(isConnectionLost(new Error('Connection terminated unexpectedly'))).toBe(true);
  expect(isConnectionLost(Object.assign(new Error('duplicate key'), { code: '23505' }))).toBe(false);
  expect(asAppError(lost, 'GET')?.message).toMatch(/nothing was changed/);
  const answer = asAppError(lost);
  expect({ status: answer?.status, code: answer?.code, retry: answer?.extra.retryAfterSeconds }).toEqual({ status: 503, code: 'database_unavailable', retry: 2 });
  expect(answer?.message).toMatch(/may or may not have been carried out/);
  // A write's transaction known not to have committed says so.
  expect(asAppError(new ConnectionLost(false, null, 0, lost))?.message).toMatch(/before it committed .*nothing was done/);
  expect(asAppError(new ConnectionLost(true, null, 0, lost))?.message).toMatch(/may or may not have been carried out/);
  // pg's timeout of opening a connection is of a connection never made: refused, and a read is not tried again.
  const timedOut = new Error('Connection terminated due to connection timeout');
  expect({ lost: isConnectionLost(timedOut), refused: isConnectRefused(timedOut), message: asAppError(timedOut)?.message }).toEqual({
    lost: false,
    refused: true,
    message: expect.stringMatching(/nothing was done/),
  });
});
