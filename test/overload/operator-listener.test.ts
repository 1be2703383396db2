/**
 * The operator listener (src/operator): /healthz, /readyz and /admin/replication on a port of their own,
 * served by a thread of their own. Through a real region (real HTTP, Postgres, Redis, the worker thread):
 * it answers like the region's port, authenticates like it, and keeps answering while the region's main
 * event loop is blocked — which this test does deterministically, by parking the main thread (the thread this
 * test runs on) in Atomics.wait until a client on another thread has its answers.
 */
import net from 'node:net';
import { Worker } from 'node:worker_threads';
import Redis from 'ioredis';
import pino from 'pino';
import { replicationKeys } from '../../src/redis';
import { writeMember } from '../../src/replication/member-record';
import { adminHeaders, call, eventually } from '../support/harness';
import { ADMIN_TOKEN } from '../support/env';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { logLines } from '../support/log-lines';
import { rawExchangeWith } from '../support/raw-http';

let r: InProcessRegion;
let operator: string;
beforeAll(async () => {
  r = await startInProcess('operator-listener', ['us-iowa'], {}, 'us-iowa', { operatorPort: 0, operatorStalledAfterMs: 1000 });
  operator = r.region.operator?.url as string;
});
/** Redis URLs of members added at runtime (another database of the test's Redis): emptied of this file's keys once the region stopped. */
const addedRedis: string[] = [];
afterAll(async () => {
  await r?.stop();
  // Only now: while it runs, the region writes there again (the membership record it propagates, deliveries).
  for (const url of addedRedis) {
    const its = new Redis(url);
    const left = await its.keys(`${r.deployment.file.redisKeyPrefix ?? ''}*`);
    if (left.length) await its.del(...left);
    its.disconnect();
  }
});

interface Answer {
  url: string;
  status: number;
  body: string;
}

/**
 * Blocks this thread (the region's main thread) until a client thread has sent `requests` in turn and
 * received their answers, or `limitMs` passed. `unansweredUrl` is requested first and not awaited: whether
 * it was answered by the time the others were is reported. Returns what the client saw.
 */
async function whileMainThreadBlocked(requests: { url: string; headers?: Record<string, string>; until?: number }[], unansweredUrl: string, limitMs = 60_000) {
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const client = new Worker(
    `
    const { workerData, parentPort } = require('node:worker_threads');
    (async () => {
      let mainAnswered = false;
      fetch(workerData.unansweredUrl).then(() => { mainAnswered = true; }, () => undefined);
      const answers = [];
      for (const q of workerData.requests) {
        // 'until': ask again until this status comes (the listener's view changes while the main thread stays blocked).
        for (;;) {
          const res = await fetch(q.url, { headers: q.headers ?? {} });
          const a = { url: q.url, status: res.status, body: await res.text() };
          if (q.until === undefined || a.status === q.until) { answers.push(a); break; }
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      parentPort.postMessage({ answers, mainAnswered });
      Atomics.store(workerData.flag, 0, 1);
      Atomics.notify(workerData.flag, 0);
    })().catch((err) => {
      parentPort.postMessage({ error: String(err) });
      Atomics.store(workerData.flag, 0, 2);
      Atomics.notify(workerData.flag, 0);
    });
    `,
    { eval: true, workerData: { requests, unansweredUrl, flag } },
  );
  const reported = new Promise<{ answers?: Answer[]; mainAnswered?: boolean; error?: string }>((resolve) => client.once('message', resolve));
  // The region's event loop (this thread's) is blocked from here until the client is done.
  const woke = Atomics.wait(flag, 0, 0, limitMs);
  const result = await reported;
  await client.terminate();
  return { woke, ...result };
}

test('the operator port answers /healthz, /readyz and /admin/replication like the region port, behind the same admin token', async () => {
  expect(operator).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  // Once the region has registered itself as a member (it does so as it starts), its figures hold still.
  const registered = async () => (await call(r.url, 'GET', '/admin/replication', { headers: adminHeaders })).body.members[0]?.registered === true;
  expect(await eventually(registered)).toBe(true);
  const main = await call(r.url, 'GET', '/admin/replication', { headers: adminHeaders });
  const answered = Date.now();
  // A snapshot the main thread published after that answer (one every 250 ms).
  let replication = await call(operator, 'GET', '/admin/replication', { headers: adminHeaders });
  while (Date.parse(replication.body.snapshot?.taken_at) <= answered) {
    await new Promise((res) => setTimeout(res, 100));
    replication = await call(operator, 'GET', '/admin/replication', { headers: adminHeaders });
  }
  const [health, ready] = await Promise.all([call(operator, 'GET', '/healthz'), call(operator, 'GET', '/readyz')]);
  expect(health.status).toBe(200);
  expect(health.body).toMatchObject({ status: 'ok', region: 'us-iowa', pid: process.pid, redis: 'ready' });
  expect(health.body.main_thread.snapshot_age_ms).toBeGreaterThanOrEqual(0);
  expect(ready.status).toBe(200);
  expect(ready.body).toMatchObject({ region: 'us-iowa', ready: true, database: 'ok', missing_migrations: [] });
  expect(replication.status).toBe(200);
  // Admin answers may carry secrets: no cache may keep them, on either port.
  expect(replication.headers.get('cache-control')).toBe('no-store');
  expect(main.headers.get('cache-control')).toBe('no-store');
  // The same answer as the region's port, plus how old the main thread's figures are.
  const { snapshot, ...rest } = replication.body;
  expect(Object.keys(rest)).toEqual(Object.keys(main.body));
  expect(rest.admission.writes.limits).toEqual(main.body.admission.writes.limits);
  expect(rest.members).toEqual(main.body.members);
  expect(rest.pending.map((p: { region: string }) => p.region)).toEqual(['us-iowa']);
  expect(rest.tombstones.enabled).toBe(true);
  expect(Date.parse(snapshot.taken_at)).not.toBeNaN();
  expect(snapshot.age_ms).toBeGreaterThanOrEqual(0);
});

test('the operator port refuses a missing or wrong admin token like the region port, and serves nothing else', async () => {
  for (const headers of [{}, { authorization: 'Bearer wrong-token-0123456789' }, { authorization: ADMIN_TOKEN }] as Record<string, string>[]) {
    const [onOperator, onMain] = await Promise.all([
      call(operator, 'GET', '/admin/replication', { headers }),
      call(r.url, 'GET', '/admin/replication', { headers }),
    ]);
    expect(onOperator.status).toBe(401);
    expect(onOperator.body).toEqual(onMain.body);
  }
  // A query parameter /admin/replication does not take: the same 400 on both ports.
  const [queried, queriedMain] = await Promise.all([
    call(operator, 'GET', '/admin/replication?verbose=1', { headers: adminHeaders }),
    call(r.url, 'GET', '/admin/replication?verbose=1', { headers: adminHeaders }),
  ]);
  expect({ status: queried.status, body: queried.body }).toEqual({
    status: 400,
    body: { meta: {}, errors: [{ httpcode: 400, message: "Unknown query parameter 'verbose'. GET /admin/replication takes no query parameters." }] },
  });
  expect(queriedMain.body).toEqual(queried.body);
  const other = await call(operator, 'GET', '/admin/organizations', { headers: adminHeaders });
  expect(other.status).toBe(404);
  expect(other.body.errors[0].message).toMatch(/operator port serves GET \/healthz, \/readyz and \/admin\/replication/);
  // Its own paths with another method: 405 and Allow, as on the region's port.
  for (const [path, headers] of [['/healthz', {}], ['/readyz', {}], ['/admin/replication', adminHeaders]] as const) {
    const [onOperator, onMain] = await Promise.all([call(operator, 'POST', path, { headers }), call(r.url, 'POST', path, { headers })]);
    expect({ status: onOperator.status, allow: onOperator.headers.get('allow'), main: onMain.headers.get('allow') }).toEqual({ status: 405, allow: 'GET, HEAD', main: 'GET, HEAD' });
  }
});

test('OPTIONS on the operator port is answered as on the region port: 405 with Allow on its paths (before the token), 404 elsewhere', async () => {
  // Before: Express's own OPTIONS answer, 200 text/plain "GET, HEAD", on /healthz and /readyz, and a 401 on
  // /admin/replication without a token, where the region's port answers 405 in the envelope.
  for (const [path, headers] of [['/healthz', {}], ['/readyz', {}], ['/admin/replication', {}], ['/admin/replication', adminHeaders], ['/HEALTHZ/', {}]] as const) {
    const [onOperator, onMain] = await Promise.all([call(operator, 'OPTIONS', path, { headers }), call(r.url, 'OPTIONS', path, { headers })]);
    expect({ path, status: onOperator.status, allow: onOperator.headers.get('allow'), type: onOperator.headers.get('content-type'), body: onOperator.body }).toEqual({
      path, status: 405, allow: 'GET, HEAD', type: 'application/json; charset=utf-8', body: onMain.body,
    });
    expect(onMain.status).toBe(405);
  }
  // A path the operator port does not serve: 404 naming what it serves, with or without the token.
  for (const headers of [{}, adminHeaders]) {
    const other = await call(operator, 'OPTIONS', '/admin/organizations', { headers });
    expect(other.status).toBe(404);
    expect(other.body.errors[0].message).toMatch(/operator port serves GET \/healthz, \/readyz and \/admin\/replication/);
  }
});

test('the operator port answers what Node would answer bare or not at all in the envelope, as the region port does', async () => {
  const raw = (bytes: string, waitMs?: number) => rawExchangeWith(Number(new URL(operator).port), bytes, waitMs);
  const status = (answer: string) => answer.split('\r\n')[0];
  const body = (answer: string) => JSON.parse(answer.split('\r\n\r\n').at(-1) ?? '') as unknown;
  const envelope = (httpcode: number, message: string) => ({ meta: {}, errors: [{ httpcode, message: expect.stringContaining(message) }] });
  // Before: a bare "HTTP/1.1 400 Bad Request" with no body, a bare 417, a CONNECT closed without an answer,
  // a 100 Continue sent for an Expect the server then ignored, and every header past Node's 2,000 dropped.
  const badHeader = await raw('GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\u0001\r\n\r\n');
  expect(status(badHeader)).toBe('HTTP/1.1 400 Bad Request');
  expect(body(badHeader)).toEqual(envelope(400, 'not valid HTTP/1.1'));
  const expectNope = await raw('GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: nope\r\nConnection: close\r\n\r\n');
  expect(status(expectNope)).toBe('HTTP/1.1 417 Expectation Failed');
  expect(body(expectNope)).toEqual(envelope(417, '100-continue'));
  const mixed = await raw('GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: 100-continue, foo\r\nConnection: close\r\n\r\n', 1500);
  expect(mixed).not.toContain('100 Continue');
  expect(status(mixed)).toBe('HTTP/1.1 417 Expectation Failed');
  const noHost = await raw('GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n');
  expect(body(noHost)).toEqual(envelope(400, 'Host header'));
  const connect = await raw('CONNECT /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  expect(status(connect)).toBe('HTTP/1.1 405 Method Not Allowed');
  expect(body(connect)).toEqual(envelope(405, 'CONNECT'));
  const many = await raw(`GET /admin/replication HTTP/1.1\r\nHost: x\r\n${'a:\r\n'.repeat(300)}Authorization: ${adminHeaders.authorization}\r\nConnection: close\r\n\r\n`);
  expect(status(many)).toBe('HTTP/1.1 431 Request Header Fields Too Large');
  expect(body(many)).toEqual(envelope(431, 'at most 199 headers'));
  // An upgrade request is answered as a plain one, and its connection closed after it (a request pipelined
  // behind it would never be read).
  const upgrade = await raw('GET /healthz HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', 4000);
  expect(upgrade.match(/HTTP\/1\.1 \d{3} /g)).toEqual(['HTTP/1.1 200 ']);
  expect(upgrade).toMatch(/\r\nconnection: close\r\n/i);
  const refusedUpgrade = await raw('GET /healthz HTTP/1.1\r\nUpgrade: websocket\r\nExpect: nope\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', 4000);
  expect(refusedUpgrade.match(/HTTP\/1\.1 \d{3} /g)).toEqual(['HTTP/1.1 400 ']);
  expect(refusedUpgrade).toMatch(/\r\nconnection: close\r\n/i);
  // The port still answers its own requests.
  expect((await call(operator, 'GET', '/healthz')).status).toBe(200);
});

test('a request that has not arrived whole within 10 s gets a 408 in the envelope on the operator port (Node waited 300 s)', async () => {
  const answer = await rawExchangeWith(Number(new URL(operator).port), 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a', 20_000);
  expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 408 Request Timeout');
  expect(JSON.parse(answer.split('\r\n\r\n').at(-1) ?? '')).toEqual({ meta: {}, errors: [{ httpcode: 408, message: expect.stringContaining('did not arrive whole in time') }] });
}, 30_000);

test('while the main event loop is blocked, the operator port answers and the region port does not', async () => {
  const seen = await whileMainThreadBlocked(
    [
      { url: `${operator}/admin/replication`, headers: adminHeaders },
      { url: `${operator}/readyz` },
      // The main thread publishes nothing while blocked: after operatorStalledAfterMs, liveness says so.
      { url: `${operator}/healthz`, until: 503 },
    ],
    `${r.url}/healthz`,
  );
  expect(seen.error).toBeUndefined();
  expect(seen.woke).toBe('ok');
  expect(seen.mainAnswered).toBe(false);
  const [replication, ready, health] = seen.answers ?? [];
  expect(replication?.status).toBe(200);
  expect(JSON.parse(replication?.body ?? '{}')).toMatchObject({ region: 'us-iowa', waiting_requests: 0, outbox: { unpublished: 0 } });
  // Answered; ready unless the stall threshold (1 s) had passed by then (a loaded host: a stalled main thread fails
  // readiness too), which it then names.
  expect(ready?.status === 200 || (ready?.status === 503 && JSON.parse(ready.body).stalled === true)).toBe(true);
  expect(JSON.parse(health?.body ?? '{}')).toMatchObject({ status: 'stalled', region: 'us-iowa' });
  expect(JSON.parse(health?.body ?? '{}').main_thread.snapshot_age_ms).toBeGreaterThan(1000);
  // Unblocked, the main thread publishes again and the operator port's liveness recovers.
  let after = await call(operator, 'GET', '/healthz');
  for (let i = 0; i < 50 && after.status !== 200; i++) {
    await new Promise((res) => setTimeout(res, 100));
    after = await call(operator, 'GET', '/healthz');
  }
  expect(after.body.status).toBe('ok');
});

test('the operator port\'s /readyz answers 503 stalled once the main thread is stuck past the bound, and 200 once it turns again', async () => {
  const seen = await whileMainThreadBlocked(
    [
      // Liveness says stalled first (its age only grows while the main thread stays blocked)...
      { url: `${operator}/healthz`, until: 503 },
      // ...then readiness, asked after it, must say so too: a probe here must take the frozen region out of service.
      { url: `${operator}/readyz` },
    ],
    `${r.url}/readyz`,
  );
  expect(seen.error).toBeUndefined();
  expect(seen.woke).toBe('ok');
  expect(seen.mainAnswered).toBe(false);
  const [health, ready] = seen.answers ?? [];
  expect(health?.status).toBe(503);
  expect(ready?.status).toBe(503);
  expect(JSON.parse(ready?.body ?? '{}')).toEqual({
    region: 'us-iowa', ready: false, database: 'ok', missing_migrations: [], redis: { reachable: true, status: 'ready' }, stalled: true,
  });
  // Unblocked, the main thread publishes again and the operator port's readiness recovers.
  let after = await call(operator, 'GET', '/readyz');
  for (let i = 0; i < 50 && after.status !== 200; i++) {
    await new Promise((res) => setTimeout(res, 100));
    after = await call(operator, 'GET', '/readyz');
  }
  expect(after.status).toBe(200);
  expect(after.body).toEqual({ region: 'us-iowa', ready: true, database: 'ok', missing_migrations: [], redis: { reachable: true, status: 'ready' } });
});

test('the figures on the operator port are the main thread\'s: a change there shows in the next snapshot', async () => {
  const before = (await call(operator, 'GET', '/admin/replication', { headers: adminHeaders })).body.admission.writes.admitted as number;
  const org = await call(r.url, 'POST', '/admin/organizations', { headers: adminHeaders, body: { name: 'snap' } });
  expect(org.status).toBe(201);
  const key = { 'SlashID-OrgID': org.body.id, 'SlashID-API-Key': org.body.api_key };
  expect((await call(r.url, 'POST', '/organizations/sso/saml/provider-credentials', { headers: key, body: {} })).status).toBe(400);
  let admitted = before;
  for (let i = 0; i < 50 && admitted === before; i++) {
    await new Promise((res) => setTimeout(res, 100));
    admitted = (await call(operator, 'GET', '/admin/replication', { headers: adminHeaders })).body.admission.writes.admitted;
  }
  expect(admitted).toBe(before + 1);
});

test("a region added at runtime with a Redis of its own: the operator port reads its inbox's figures in that Redis, as the region port does", async () => {
  // Its Redis: another database of the test's Redis server, holding its inbox with three entries its group has
  // not read. The configured Redis has no such inbox: read there, its figures would be nulls.
  const prefix = r.deployment.file.redisKeyPrefix ?? '';
  const keys = replicationKeys(prefix);
  const base = r.deployment.file.redisUrl ?? '';
  const itsUrl = new URL(base);
  itsUrl.pathname = '/9';
  const own = new Redis(base);
  const its = new Redis(itsUrl.toString());
  addedRedis.push(itsUrl.toString());
  type Group = { region: string; undelivered: number | null };
  const status = async (url: string) => (await call(url, 'GET', '/admin/replication', { headers: adminHeaders })).body;
  const undelivered = async (url: string) => ((await status(url)).pending as Group[] | undefined)?.find((g) => g.region === 'south-brazil')?.undelivered;
  try {
    // A change of this region still unconfirmed when the member is added is delivered into its inbox too (a
    // member with no delivery record gets it), and the count is 4: the earlier tests' writes must have settled
    // first. Under load (a failure at load 17) they had not.
    expect(await eventually(async () => {
      const { outbox } = await status(r.url);
      return outbox.unpublished === 0 && outbox.unconfirmed === 0;
    }, 60_000, 200)).toBe(true);
    const inbox = keys.inbox('south-brazil');
    for (let i = 0; i < 3; i++) await its.xadd(inbox, '*', 'e', String(i));
    await its.xgroup('CREATE', inbox, 'south-brazil', '0');
    await writeMember(own, keys, 'south-brazil', { state: 'active', redis_url: itsUrl.toString() });
    // Seen by the region on its next membership refresh, by the operator thread with the next snapshot after it.
    expect(await eventually(async () => (await undelivered(r.url)) === 3, 45_000, 100)).toBe(true);
    expect(await eventually(async () => (await undelivered(operator)) === 3, 45_000, 100)).toBe(true);
    // Nothing else came into its inbox meanwhile: the 3 are the entries written above.
    expect(await its.xlen(inbox)).toBe(3);
  } finally {
    const left = await its.keys(`${prefix}*`);
    if (left.length) await its.del(...left);
    own.disconnect();
    its.disconnect();
  }
}, 180_000);

test('a listener thread that ends (a crash) is started again on the same port, and answers as before', async () => {
  const handle = r.region.operator;
  if (!handle) throw new Error('no operator listener');
  const before = handle.thread();
  const exited = new Promise((resolve) => before.once('exit', resolve));
  await before.terminate();
  await exited;
  expect(await eventually(async () => (await call(operator, 'GET', '/healthz')).status === 200, 15_000, 200)).toBe(true);
  expect(handle.thread()).not.toBe(before);
  expect(handle.thread().threadId).not.toBe(-1);
  expect((await call(operator, 'GET', '/admin/replication', { headers: adminHeaders })).status).toBe(200);
});

test('a listener thread whose restart fails (its port taken meanwhile) is started again later, with the region port answering meanwhile', async () => {
  const handle = r.region.operator;
  if (!handle) throw new Error('no operator listener');
  // Within the second before its restart, another process takes the port, so the restart cannot listen. Under
  // load the restart may come first (the squatter finds the port taken): then the thread is ended again.
  const squatter = net.createServer((socket) => socket.destroy());
  let before = handle.thread();
  for (let attempt = 1; ; attempt++) {
    before = handle.thread();
    const exited = new Promise((resolve) => before.once('exit', resolve));
    await before.terminate();
    await exited;
    const took = await new Promise<boolean>((resolve) => {
      squatter.once('error', () => resolve(false));
      squatter.listen(handle.port, '127.0.0.1', () => resolve(true));
    });
    squatter.removeAllListeners('error');
    if (took) break;
    if (attempt === 5) throw new Error('the listener always took its port again before the squatter did');
    expect(await eventually(async () => (await call(operator, 'GET', '/healthz')).status === 200, 30_000, 200)).toBe(true);
  }
  try {
    expect(await eventually(async () => handle.thread() !== before && handle.thread().threadId === -1, 30_000, 50)).toBe(true);
    expect((await call(r.url, 'GET', '/admin/replication', { headers: adminHeaders })).status).toBe(200);
  } finally {
    await new Promise((res) => squatter.close(res));
  }
  // Once the port is free again, a later attempt takes it.
  expect(await eventually(async () => (await call(operator, 'GET', '/healthz')).status === 200, 30_000, 200)).toBe(true);
  expect((await call(operator, 'GET', '/admin/replication', { headers: adminHeaders })).status).toBe(200);
});

test('once the region has stopped, its operator listener stays stopped: a stop is not taken for a crash', async () => {
  const handle = r.region.operator;
  if (!handle) throw new Error('no operator listener');
  await r.region.stop();
  expect(handle.thread().threadId).toBe(-1);
  // A crashed thread is started again after a second (RESTART_DELAY_MS); a stopped one must not be.
  expect(await eventually(async () => handle.thread().threadId !== -1, 5000)).toBe(false);
  await expect(fetch(`${operator}/healthz`)).rejects.toThrow();
});

test('a region stopped while its listener thread is down (waiting to be started again) stops at once, and starts no thread', async () => {
  const other = await startInProcess('operator-stop-crashed', ['us-iowa'], {}, 'us-iowa', { operatorPort: 0 });
  const handle = other.region.operator;
  if (!handle) throw new Error('no operator listener');
  const crashed = handle.thread();
  const exited = new Promise((resolve) => crashed.once('exit', resolve));
  await crashed.terminate();
  await exited;
  // Within RESTART_DELAY_MS of the crash: nothing to wait for, and no thread may be started after the stop.
  const stopped = await Promise.race([other.stop().then(() => true), new Promise((res) => setTimeout(() => res(false), 10_000))]);
  expect(stopped).toBe(true);
  expect(await eventually(async () => handle.thread().threadId !== -1, 3000)).toBe(false);
});

test('a listener thread that ends again soon after each start waits 1, 2, then 4 s to be started again, not 1 s each time', async () => {
  const { lines, sink } = logLines();
  const other = await startInProcess('operator-crash-loop', ['us-iowa'], {}, 'us-iowa', { operatorPort: 0, log: pino({ level: 'info' }, sink) });
  try {
    const handle = other.region.operator;
    if (!handle) throw new Error('no operator listener');
    for (let crash = 1; crash <= 3; crash++) {
      const before = handle.thread();
      const exited = new Promise((resolve) => before.once('exit', resolve));
      await before.terminate();
      await exited;
      // Started again, and listening, before the next crash: each one ends a thread that had just started.
      const answers = async () => handle.thread() !== before && (await call(handle.url, 'GET', '/healthz').then((res) => res.status === 200, () => false));
      expect(await eventually(answers, 30_000, 50)).toBe(true);
    }
    // Before: 1 s after every crash, however soon after its start the thread ended (a thread ending at each
    // start was started again every second, for as long as the region ran).
    const restarts = lines.filter((l) => l.msg === 'operator listener exited; starting it again').map((l) => l.next_attempt_in_ms);
    expect(restarts).toEqual([1000, 2000, 4000]);
  } finally {
    await other.stop();
  }
}, 60_000);
