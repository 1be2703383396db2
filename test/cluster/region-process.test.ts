/**
 * The region supervisor of `npm run cluster` (src/cluster/region-process.ts) with stand-in entry scripts, and
 * the migrator's checksum guard (src/db/migrate.ts) on a scratch database.
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { RegionProcess } from '../../src/cluster/region-process';
import { dropDatabase, ensureDatabase, migrate } from '../../src/db/migrate';
import { PG_BASE, uniqueName } from '../support/env';
import { eventually } from '../support/harness';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'region-process-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function script(name: string, body: string): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, body);
  return file;
}

test('waitReady does not take another process on the same port (an old cluster) for the one it started', async () => {
  // An "old region" already answers /healthz on the port, with its own pid.
  const old = http.createServer((_req, res) => res.setHeader('content-type', 'application/json').end(JSON.stringify({ pid: 1 })));
  await new Promise<void>((r) => old.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(old.address() as AddressInfo).port}`;
  const p = new RegionProcess({ region: 'r1', url, env: {}, entry: script('idle.js', 'setInterval(() => {}, 1000);') });
  p.start();
  try {
    await expect(p.waitReady(1500)).rejects.toThrow(/not ready within/);
  } finally {
    await p.kill();
    old.close();
  }
});

test('a region that crashes is seen as exited: waitReady fails at once, and it can be started again', async () => {
  const exits: (number | null)[] = [];
  const p = new RegionProcess({ region: 'r2', url: 'http://127.0.0.1:9', env: {}, entry: script('crash.js', 'process.exit(3);'), onExit: (code) => exits.push(code) });
  p.start();
  // Told by its exit, not by the 20 s running out ("not ready within").
  await expect(p.waitReady(20_000)).rejects.toThrow(/exited before it was ready/);
  expect({ running: p.running, exits }).toEqual({ running: false, exits: [3] });
  expect(() => p.start()).not.toThrow();
  await p.kill();
});

/** A process started from `body` that prints "ready" once its signal handlers are in place; resolves when it did. */
async function started(region: string, body: string) {
  const exits: { code: number | null; signal: NodeJS.Signals | null }[] = [];
  let ready!: () => void;
  const printedReady = new Promise<void>((resolve) => (ready = resolve));
  const p = new RegionProcess({
    region, url: 'http://127.0.0.1:9', env: {}, entry: script(`${region}.js`, `${body}\nprocess.stdout.write('ready\\n');`),
    onLine: (line) => line === 'ready' && ready(),
    onExit: (code, signal) => exits.push({ code, signal }),
  });
  p.start();
  await printedReady;
  return { p, exits };
}

test('a region cannot be started twice: a second start while it runs is refused, and the first process is kept', async () => {
  // Ends on its own, so that a second process started by mistake does not outlive the test.
  const { p } = await started('r3', 'setTimeout(() => undefined, 30_000);');
  const first = p.pid;
  try {
    expect(() => p.start()).toThrow(/r3 is already running/);
    expect(p.pid).toBe(first);
  } finally {
    await p.kill();
  }
});

test('stop ends a region that ignores SIGTERM with SIGKILL once its grace period is over', async () => {
  const { p, exits } = await started('r4', "process.on('SIGTERM', () => undefined); setTimeout(() => undefined, 60_000);");
  await p.stop(500);
  expect({ running: p.running, exits }).toEqual({ running: false, exits: [{ code: null, signal: 'SIGKILL' }] });
}, 20_000);

test('stop resumes a paused region first, so that it shuts down gracefully rather than being killed', async () => {
  // A SIGTERM handler does not run in a stopped process: without SIGCONT the grace period would run out.
  const { p, exits } = await started('r5', "process.on('SIGTERM', () => process.exit(0)); setTimeout(() => undefined, 60_000);");
  p.pause();
  await p.stop(10_000);
  expect(exits).toEqual([{ code: 0, signal: null }]);
}, 30_000);

test("each line of a region's output reaches onLine whole and once, however the output is split", async () => {
  const lines: string[] = [];
  const p = new RegionProcess({
    region: 'r6', url: 'http://127.0.0.1:9', env: {},
    // Several lines in one write, then a line split across two writes.
    entry: script('lines.js', "process.stdout.write('one\\ntwo\\nthr'); process.stderr.write('oops\\n'); setTimeout(() => process.stdout.write('ee\\nfour\\n'), 200); setTimeout(() => undefined, 30_000);"),
    onLine: (line, stream) => lines.push(`${stream}: ${line}`),
  });
  p.start();
  try {
    await eventually(async () => lines.length >= 5, 10_000);
    expect(lines.filter((l) => l.startsWith('stdout'))).toEqual(['stdout: one', 'stdout: two', 'stdout: three', 'stdout: four']);
    expect(lines.filter((l) => l.startsWith('stderr'))).toEqual(['stderr: oops']);
  } finally {
    await p.kill();
  }
});

test('migrate refuses a migration changed after it was applied', async () => {
  const dir = path.join(tmp, 'migrations');
  fs.mkdirSync(path.join(dir, '20260101000000_one'), { recursive: true });
  const sql = path.join(dir, '20260101000000_one', 'migration.sql');
  fs.writeFileSync(sql, 'CREATE TABLE checksum_t (id int);');
  const url = `${PG_BASE}/${uniqueName('mig').replace(/[^A-Za-z0-9_]/g, '_')}`;
  await ensureDatabase(url);
  try {
    expect(await migrate(url, dir)).toEqual(['20260101000000_one']);
    fs.writeFileSync(sql, 'CREATE TABLE checksum_t (id bigint);');
    await expect(migrate(url, dir)).rejects.toThrow(/checksum mismatch/);
  } finally {
    await dropDatabase(url);
  }
});
