/**
 * `npm run cluster`: starts every region of a custom config (or the ones named), says when they are ready, stops
 * them all on SIGTERM, and keeps the secrets it made up for its next start.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/paths';
import Redis from 'ioredis';
import { Client } from 'pg';
import { ADMIN_TOKEN, createDeployment, freePorts, PG_BASE, REDIS_URL, TEST_REPLICATION_KEYS, TEST_SIGNING_SECRET, type TestDeployment } from '../support/env';
import { adminHeaders, call, createOrg, eventually } from '../support/harness';

let dep: TestDeployment;
beforeAll(async () => {
  // Two regions: every start of the whole config below is "several regions" (what the command treats apart from one
  // region started alone), and each region more would cost a process start (~2 s of CPU) in each of five of them.
  dep = await createDeployment('cluster-cmd', ['us-iowa', 'europe-belgium']);
});
afterAll(() => dep.cleanup());

/** `group`: in a process group of its own (as in a terminal), so that a signal can reach the regions too. */
function runCluster(env: Record<string, string>, regions: string[] = [], group = false) {
  const child = spawn(process.execPath, [path.join(PROJECT_ROOT, 'dist', 'scripts', 'cluster.js'), ...regions], {
    env: { ...process.env, REGIONS_CONFIG: dep.configPath, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: group,
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const ready = new Promise<void>((resolve, reject) => {
    const t = setInterval(() => {
      if (out.includes('cluster ready')) {
        clearInterval(t);
        resolve();
      }
    }, 50);
    child.once('exit', () => {
      clearInterval(t);
      reject(new Error(`cluster exited early:\n${out}`));
    });
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, ready, exited, output: () => out };
}

/** The cluster's secrets file for the config of `dep`. */
const secretsOf = () => path.join(path.dirname(dep.configPath), '.cluster', `${path.basename(dep.configPath, '.json')}.env`);
const none = { ADMIN_TOKEN: '', TOKEN_SIGNING_SECRET: '', REPLICATION_KEYS: '' };
const exported = (out: string, name: string) => new RegExp(`export ${name}=(\\S+)`).exec(out)?.[1];
/** The first test's second start, which the second test goes on with (and stops). */
let secondStart: ReturnType<typeof runCluster>;
afterAll(async () => {
  // Should the second test not get to stop it.
  if (secondStart?.child.exitCode === null) {
    secondStart.child.kill('SIGTERM');
    await secondStart.exited;
  }
});

test("starts every region of a custom config, prints their URLs, stops them on SIGTERM, and keeps the data; one region's overrides in the shell (PORT, DATABASE_URL) do not reach several regions", async () => {
  const first = runCluster({ ADMIN_TOKEN });
  await first.ready;
  for (const r of dep.file.regions) expect(first.output()).toContain(`READY ${r.id} http://127.0.0.1:${r.port}`);
  const url = `http://127.0.0.1:${dep.file.regions[0]?.port}`;
  const org = await createOrg(url, 'survivor', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });
  first.child.kill('SIGTERM');
  expect(await first.exited).toBe(0);
  expect(first.output()).toContain('SIGTERM: stopping 2 regions (us-iowa, europe-belgium)...');
  expect(first.output()).toContain('all regions stopped');
  await expect(call(url, 'GET', '/healthz')).rejects.toThrow();

  // Without ADMIN_TOKEN it makes one up and prints it; the data is still there after the restart.
  // One region's overrides in the shell (PORT, DATABASE_URL), exported for another tool, would put every region
  // on one port and one database: with several regions they are ignored, said so, and each region is on its
  // entry's port with its own data (one start for both: a start of two regions is two region processes).
  // The same start is the first of the test below (no secret set, no secrets file: all made up and kept), which
  // goes on from here: each start of the whole config is two region processes more.
  fs.rmSync(secretsOf(), { force: true });
  secondStart = runCluster({ ...none, PORT: '1', DATABASE_URL: 'postgresql://127.0.0.1:1/nowhere' });
  const second = secondStart;
  await second.ready;
  expect(second.output()).toContain('PORT, DATABASE_URL from the environment ignored');
  for (const r of dep.file.regions) expect(second.output()).toContain(`READY ${r.id} http://127.0.0.1:${r.port}`);
  const token = /export ADMIN_TOKEN=(\S+)/.exec(second.output())?.[1] ?? '';
  expect(token.length).toBeGreaterThanOrEqual(16);
  const got = await call(`http://127.0.0.1:${dep.file.regions[1]?.port}`, 'GET', `/admin/organizations/${org.id}`, { headers: { authorization: `Bearer ${token}` } });
  expect(got.status).toBe(200);
  expect(got.body.name).toBe('survivor');
  expect((await call(url, 'GET', `/admin/organizations/${org.id}`, { headers: adminHeaders })).status).toBe(401);
}, 120_000);

test('keeps the secrets it made up for the next start, and starts only the regions named', async () => {
  const secretsFile = secretsOf();
  // Started by the test above, with no secret set and no secrets file.
  const first = secondStart;
  const token = exported(first.output(), 'ADMIN_TOKEN') as string;
  const keys = exported(first.output(), 'REPLICATION_KEYS') as string;
  expect(keys).toMatch(/^k1:/);
  // Kept for the owner only, with the signing secret that is not printed.
  expect(fs.statSync(secretsFile).mode & 0o777).toBe(0o600);
  const kept = fs.readFileSync(secretsFile, 'utf8');
  expect(kept).toContain(`ADMIN_TOKEN=${token}\n`);
  expect(kept).toContain(`REPLICATION_KEYS=${keys}\n`);
  expect(kept).toMatch(/^TOKEN_SIGNING_SECRET=\S{43}$/m);
  const eu = `http://127.0.0.1:${dep.file.regions[1]?.port}`;
  const org = await createOrg(eu, 'kept-secrets', { headers: { 'SlashID-Required-Consistency': 'all_regions', authorization: `Bearer ${token}` } });
  // A token of the Infisical dialect, signed with the cluster's secret.
  const issued = await call(eu, 'POST', `/admin/organizations/${org.id}/access-tokens`, { headers: { authorization: `Bearer ${token}` } });
  expect(issued.status).toBe(201);
  first.child.kill('SIGTERM');
  expect(await first.exited).toBe(0);

  // One region alone, as after it crashed: the same secrets (the admin token, the access token it issued
  // before, the replication key), and the other regions are not started.
  const alone = runCluster(none, ['europe-belgium']);
  await alone.ready;
  // Not printed again: the file is named.
  expect(exported(alone.output(), 'ADMIN_TOKEN')).toBeUndefined();
  expect(alone.output()).toContain('ADMIN_TOKEN, TOKEN_SIGNING_SECRET, REPLICATION_KEYS taken from');
  expect(alone.output()).toContain(`READY europe-belgium ${eu}`);
  expect(alone.output()).not.toContain('READY us-iowa');
  await expect(call(`http://127.0.0.1:${dep.file.regions[0]?.port}`, 'GET', '/healthz')).rejects.toThrow();
  expect((await call(eu, 'GET', `/admin/organizations/${org.id}`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
  // No config yet (404), but the token is taken: a new signing secret would make it a 401.
  const sso = await call(eu, 'GET', `/api/v1/sso/config?organizationId=${org.id}`, { headers: { authorization: `Bearer ${issued.body.access_token}` } });
  expect(sso.status).toBe(404);
  alone.child.kill('SIGTERM');
  expect(await alone.exited).toBe(0);
  // The secrets file is unchanged by a start that made nothing up.
  expect(fs.readFileSync(secretsFile, 'utf8')).toBe(kept);

  // Refused before anything starts: a region id not in the config, an option (--help is answered: cli-help.test.ts).
  for (const [args, says] of [[['mars-base'], 'mars-base not in'], [['--verbose'], 'usage: npm run cluster [-- <region id> ...]']] as const) {
    const refused = runCluster(none, [...args]);
    refused.ready.catch(() => undefined); // it is not meant to get ready
    expect(await refused.exited).toBe(2);
    expect(refused.output()).toContain(says);
  }

  // A region started alone makes up no secret: the regions already running have theirs, and it would refuse
  // their changes (and they its) under another replication key.
  fs.rmSync(secretsFile);
  const unset = runCluster(none, ['europe-belgium']);
  unset.ready.catch(() => undefined);
  expect(await unset.exited).toBe(2);
  expect(unset.output()).toContain('ADMIN_TOKEN, TOKEN_SIGNING_SECRET, REPLICATION_KEYS not set, and not in');
  expect(fs.existsSync(secretsFile)).toBe(false);

  // The file is read as a shell sources it: the `export` lines the cluster prints, quoted values.
  fs.writeFileSync(secretsFile, kept.split('\n').filter(Boolean).map((line) => `export ${line.replace('=', '="')}"`).join('\n'), { mode: 0o600 });
  const pasted = runCluster(none, ['europe-belgium']);
  await pasted.ready;
  expect((await call(eu, 'GET', `/admin/organizations/${org.id}`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
  pasted.child.kill('SIGTERM');
  expect(await pasted.exited).toBe(0);
}, 120_000);

test('a secret set in the environment otherwise than in the file (a rotation) is named, so that the file is updated; a clean stop is no crash', async () => {
  const secretsFile = secretsOf();
  fs.rmSync(secretsFile, { force: true });
  const first = runCluster(none, [], true);
  await first.ready;
  const old = /export ADMIN_TOKEN=(\S+)/.exec(first.output())?.[1] as string;
  // One region stopped on its own (`kill <pid>`): said as a stop, not as a crash, and the others keep running.
  try {
    const regionPid = Number(execFileSync('pgrep', ['-P', String(first.child.pid)]).toString().trim().split('\n')[0]);
    const killed = /(?:^|\0)REGION=([^\0]+)/.exec(fs.readFileSync(`/proc/${regionPid}/environ`, 'utf8'))?.[1] ?? '';
    expect(dep.file.regions.map((r) => r.id)).toContain(killed);
    process.kill(regionPid, 'SIGTERM');
    for (let i = 0; i < 400 && !/\] (stopped|exited unexpectedly)/.test(first.output()); i++) await new Promise((r) => setTimeout(r, 50));
    // With how to start it again (a region of another config file than the default: named).
    expect(first.output()).toContain(`[${killed}] stopped; the others keep running: start it again with \`REGIONS_CONFIG='${dep.configPath}' npm run cluster -- ${killed}\`, with this cluster's secrets in its environment or its secrets file\n`);
    expect(first.output()).not.toContain('exited unexpectedly');
    // The others keep running.
    for (const r of dep.file.regions.filter((x) => x.id !== killed)) expect((await call(`http://127.0.0.1:${r.port}`, 'GET', '/healthz')).status).toBe(200);
  } catch (err) {
    process.kill(-(first.child.pid as number), 'SIGKILL');
    throw err;
  }
  // SIGTERM to the whole process group (a terminal's Ctrl-C does that): the regions get it too, and may stop
  // before the cluster's own handler runs. A clean stop is not reported as a crash.
  process.kill(-(first.child.pid as number), 'SIGTERM');
  expect(await first.exited).toBe(0);
  expect(first.output()).not.toContain('exited unexpectedly');
  const before = fs.readFileSync(secretsFile, 'utf8');

  const rotated = 'rotated-admin-token-0123456789';
  const rotating = runCluster({ ...none, ADMIN_TOKEN: rotated }, ['europe-belgium']);
  await rotating.ready;
  // Said, so that the operator updates the file; the file is left as it is (not rewritten unchecked).
  expect(rotating.output()).toContain('ADMIN_TOKEN from the environment differs from');
  expect(rotating.output()).toContain('put the new value there too');
  const eu = `http://127.0.0.1:${dep.file.regions[1]?.port}`;
  expect((await call(eu, 'GET', '/admin/replication', { headers: { authorization: `Bearer ${rotated}` } })).status).toBe(200);
  rotating.child.kill('SIGTERM');
  expect(await rotating.exited).toBe(0);
  expect(fs.readFileSync(secretsFile, 'utf8')).toBe(before);
  expect(old.length).toBeGreaterThan(0);

  // A rotation's accepted token kept in the file reaches a region started from the file alone.
  const accepted = 'accepted-during-rotation-0123456789';
  fs.appendFileSync(secretsFile, `ADMIN_TOKEN_ACCEPTED=${accepted}\n`);
  const fromFile = runCluster(none, ['europe-belgium']);
  try {
    await fromFile.ready;
    expect(fromFile.output()).toContain('ADMIN_TOKEN_ACCEPTED taken from');
    for (const token of [old, accepted]) expect((await call(eu, 'GET', '/admin/replication', { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
  } finally {
    fromFile.child.kill('SIGTERM');
    await fromFile.exited;
    fs.writeFileSync(secretsFile, before, { mode: 0o600 });
  }
}, 120_000);

test('prints each region\'s log lines readable, or with LOG_FORMAT=json as the JSON they are', async () => {
  // us-iowa alone: each line is formatted by itself, whatever else runs (the other regions cost two boots a format).
  // Its secrets given, so that it needs no secrets file from an earlier test.
  const secrets = { ADMIN_TOKEN, TOKEN_SIGNING_SECRET: TEST_SIGNING_SECRET, REPLICATION_KEYS: TEST_REPLICATION_KEYS };
  for (const format of ['', 'json']) {
    const c = runCluster({ ...secrets, LOG_LEVEL: 'info', LOG_FORMAT: format }, ['us-iowa']);
    try {
      await c.ready;
      const url = `http://127.0.0.1:${dep.file.regions[0]?.port}`;
      await call(url, 'GET', '/healthz', { headers: { 'X-Request-Id': `log-format-${format || 'text'}` } });
      const line = async () => c.output().split('\n').find((l) => l.includes(`log-format-${format || 'text'}`));
      for (let i = 0; i < 100 && !(await line()); i++) await new Promise((r) => setTimeout(r, 50));
      const found = (await line()) ?? '';
      if (format === 'json') expect(JSON.parse(found)).toMatchObject({ region: 'us-iowa', msg: 'request', path: '/healthz', status: 200 });
      else expect(found).toMatch(/^\[us-iowa\] \d\d:\d\d:\d\d\.\d{3} info request \{"requestId":"log-format-text",/);
    } finally {
      c.child.kill('SIGTERM');
      await c.exited;
    }
  }
  // Validated like every variable of the README's table: a typo (`jsno`) printed the readable lines without a word.
  const typo = runCluster({ ...secrets, LOG_FORMAT: 'jsno' }, ['us-iowa']);
  const outcome = await Promise.race([typo.exited, typo.ready.then(() => 'started' as const, () => typo.exited)]);
  if (outcome === 'started') {
    typo.child.kill('SIGTERM');
    await typo.exited;
  }
  expect(outcome).toBe(2);
  expect(typo.output()).toContain("configuration error: LOG_FORMAT must be json (the regions' JSON log lines as they are) or unset (readable lines), got 'jsno'");
  expect(typo.output()).not.toContain('READY');
}, 120_000);

test("one region's overrides in the shell (PORT, HOST) reach a region started alone (several regions ignore them: the first test); a crash of the last region the command runs ends it with exit 1, not 0 with \"the others keep running\"; a start that fails exits 1 and says why", async () => {
  // Started alone, a region takes them: here another port than its entry's, on an IPv6 address (HOST=::1; one start
  // for both): its URL has the address in brackets, and the cluster reaches it there. Its secrets given, so
  // that it needs no secrets file from an earlier test.
  const [moved] = await freePorts(1);
  const secrets = { ADMIN_TOKEN, TOKEN_SIGNING_SECRET: TEST_SIGNING_SECRET, REPLICATION_KEYS: TEST_REPLICATION_KEYS };
  const alone = runCluster({ ...secrets, PORT: String(moved), HOST: '::1' }, ['europe-belgium']);
  try {
    const within = new Promise<void>((_resolve, reject) => setTimeout(() => reject(new Error(`not ready in 30 s:\n${alone.output()}`)), 30_000).unref());
    await Promise.race([alone.ready, within]);
    expect(alone.output()).toContain(`READY europe-belgium http://[::1]:${moved}`);
    expect(alone.output()).not.toContain('from the environment ignored');
    expect((await call(`http://[::1]:${moved}`, 'GET', '/healthz')).status).toBe(200);
    // The same start's region crashes (one start for both): it was the last region the command ran.
    process.kill(Number(execFileSync('pgrep', ['-P', String(alone.child.pid)]).toString().trim()), 'SIGKILL');
  } catch (err) {
    alone.child.kill('SIGKILL');
    throw err;
  }
  expect(await alone.exited).toBe(1);
  expect(alone.output()).toContain('[europe-belgium] exited unexpectedly (code null, signal SIGKILL); no region of this command runs any more, so it exits 1: start it again with');
  expect(alone.output()).not.toContain('the others keep running');

  // A region's port already taken: one line that says what to do, and a status a script can see.
  const eu = dep.file.regions[1];
  // It hangs up on whoever connects (the cluster's readiness probes): its close then waits for no one.
  const squatter = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => squatter.listen(eu?.port, '127.0.0.1', resolve));
  try {
    const taken = runCluster({ ADMIN_TOKEN });
    taken.ready.catch(() => undefined); // it is not meant to get ready
    expect(await taken.exited).toBe(1);
    expect(taken.output()).toContain(`region 'europe-belgium' cannot listen on 127.0.0.1:${eu?.port} (its port): the port is in use`);
    // Refused before any region started (test below: nothing created or registered).
    expect(taken.output()).not.toContain('exited while starting');
    expect(taken.output()).not.toContain('the others keep running');
    expect(taken.output()).not.toMatch(/\n\s+at /); // no stack trace
  } finally {
    await new Promise((r) => squatter.close(r));
  }
}, 120_000);

test('a port taken (a region\'s or an operator port) refuses the start before any region starts: no database created, nothing registered in Redis, no secrets file (so the next start is a first start)', async () => {
  const [operatorPort] = await freePorts(1);
  // No database made in advance: what is checked is that the refused start created none.
  const fresh = await createDeployment('cluster-ports', ['us-iowa', 'europe-belgium', 'asia-japan'], {}, { 'asia-japan': { operatorPort } }, { absentDatabases: true });
  const secretsFile = path.join(path.dirname(fresh.configPath), '.cluster', 'regions.config.env');
  const none = { ADMIN_TOKEN: '', TOKEN_SIGNING_SECRET: '', REPLICATION_KEYS: '' };
  const start = () => {
    const c = spawn(process.execPath, [path.join(PROJECT_ROOT, 'dist', 'scripts', 'cluster.js')], {
      env: { ...process.env, REGIONS_CONFIG: fresh.configPath, LOG_LEVEL: 'warn', ...none },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    return { child: c, exited: new Promise<number | null>((resolve) => c.once('exit', (code) => resolve(code))), output: () => out };
  };
  const databases = async () => {
    const client = new Client({ connectionString: `${PG_BASE}/postgres` });
    await client.connect();
    try {
      const names = fresh.file.regions.map((r) => new URL(r.databaseUrl).pathname.slice(1));
      return (await client.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datname = ANY($1)', [names])).rows.map((x) => x.datname);
    } finally {
      await client.end();
    }
  };
  const redis = new Redis(REDIS_URL);
  const keys = () => redis.keys(`${fresh.file.redisKeyPrefix}*`);
  try {
    // europe-belgium's port, then asia-japan's operator port, taken by another program.
    for (const [region, port, field] of [['europe-belgium', fresh.file.regions[1]?.port, 'port'], ['asia-japan', operatorPort, 'operatorPort']] as const) {
      const squatter = net.createServer((socket) => socket.destroy());
      await new Promise<void>((resolve) => squatter.listen(port, '127.0.0.1', resolve));
      try {
        const refused = start();
        expect(await refused.exited).toBe(1);
        // A start of the regions whose ports were free created their databases and registered them.
        expect(await databases()).toEqual([]);
        expect(await keys()).toEqual([]);
        expect(fs.existsSync(secretsFile)).toBe(false);
        expect(refused.output()).toContain(`region '${region}' cannot listen on 127.0.0.1:${port} (its ${field}): the port is in use`);
        expect(refused.output()).toContain('No region was started, and nothing was created or registered.');
        // The regions whose ports were free were not started either: they would have been migrated and
        // registered, and stopped again.
        expect(refused.output()).not.toMatch(/READY|exited while starting/);
      } finally {
        await new Promise((r) => squatter.close(r));
      }
    }
  } finally {
    redis.disconnect();
    await fresh.cleanup();
  }
}, 120_000);

test('a stop drains: a request waiting for all_regions gets its answer, after a Ctrl-C (the terminal and the cluster both signal the region) and past 30 s', async () => {
  // us-iowa alone: the other regions never run, so an all_regions write waits for its whole timeout.
  const url = `http://127.0.0.1:${dep.file.regions[0]?.port}`;
  const waiting = (seconds: number) =>
    call(url, 'POST', '/admin/organizations', {
      body: { name: `drain-${seconds}` },
      headers: { ...adminHeaders, 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': String(seconds) },
      timeoutMs: 200_000,
    }).then((res) => res.status, (err: Error) => err.message);
  // The write waits in the region (committed, its all_regions wait counted) before the signal is sent. A fixed
  // 500 ms assumed it got there by then; on a loaded host it may not have, and a region stopping before the
  // request arrives refuses it rather than drains it. (Its timeout runs from its arrival, and the first write
  // of a region just started can take seconds to commit on a loaded host: hence 10 s for the first, not 4.)
  const inFlight = async (c: ReturnType<typeof runCluster>) => {
    const waitingNow = async () => (await call(url, 'GET', '/admin/replication', { headers: adminHeaders })).body.waiting_requests === 1;
    const seen = await eventually(waitingNow, 30_000, 50);
    // Not seen: the cluster is stopped before the test fails, so that no region outlives it.
    if (!seen) {
      c.child.kill('SIGTERM');
      await c.exited;
    }
    expect(seen).toBe(true);
  };

  // Ctrl-C in a terminal: SIGINT to the whole process group; the cluster then sends each region its SIGTERM,
  // which the region took for a second signal and exited 1 at once, the request unanswered.
  const secrets = { ADMIN_TOKEN, TOKEN_SIGNING_SECRET: TEST_SIGNING_SECRET, REPLICATION_KEYS: TEST_REPLICATION_KEYS };
  const ctrlC = runCluster(secrets, ['us-iowa'], true);
  await ctrlC.ready;
  const first = waiting(10);
  await inFlight(ctrlC);
  process.kill(-(ctrlC.child.pid as number), 'SIGINT');
  const answer = await first;
  const exited = await ctrlC.exited;
  // The command's output says how its region ended, should it not be this.
  if (answer !== 408 || exited !== 0) process.stderr.write(`cluster output:\n${ctrlC.output()}\n`);
  expect({ answer, exited }).toEqual({ answer: 408, exited: 0 });

  // SIGTERM to the command alone: it killed a region still draining after 30 s (a region drains up to 125 s).
  const term = runCluster(secrets, ['us-iowa']);
  await term.ready;
  const second = waiting(35);
  await inFlight(term);
  term.child.kill('SIGTERM');
  expect(await second).toBe(408);
  expect(await term.exited).toBe(0);
  expect(term.output()).toContain('waiting for us-iowa to finish in-flight requests');
  expect(term.output()).toMatch(/all regions stopped\n/);
}, 180_000);
