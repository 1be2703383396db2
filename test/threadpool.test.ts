/**
 * A region process's libuv thread pool (src/threadpool.ts): 16 threads unless UV_THREADPOOL_SIZE says
 * otherwise, set by main.ts's first import, before anything uses the pool. The pool is probed, not the
 * variable: FIFOs opened for reading each hold a pool thread until a writer opens them, so with 5 held a
 * sixth task (a stat) runs only if the pool has more than 5 threads.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../src/paths';

const DIST = path.join(PROJECT_ROOT, 'dist', 'src');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'saml-threadpool-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const HELD = 5;

/** Loads threadpool.js as main.js does, holds HELD pool threads, and says whether a further task still ran. */
const PROBE = `
require(${JSON.stringify(path.join(DIST, 'threadpool.js'))});
const fs = require('node:fs');
const fifos = process.argv.slice(1);
const held = fifos.map((f) => fs.promises.readFile(f));
const ran = fs.promises.stat('.').then(() => 'ran');
// No answer within 5 s: the stat is queued behind the held threads (it takes milliseconds when a thread is free).
let timer;
const waited = new Promise((resolve) => { timer = setTimeout(() => resolve('queued'), 5000); });
Promise.race([ran, waited]).then(async (outcome) => {
  clearTimeout(timer);
  console.log(outcome + ' ' + process.env.UV_THREADPOOL_SIZE);
  for (const f of fifos) fs.closeSync(fs.openSync(f, 'w')); // each held reader gets its writer and ends
  await Promise.all(held);
});
`;

function probe(env: NodeJS.ProcessEnv): string {
  const fifos = Array.from({ length: HELD }, (_, i) => path.join(dir, `${Math.random()}-${i}`));
  for (const f of fifos) expect(spawnSync('mkfifo', [f]).status).toBe(0);
  const r = spawnSync(process.execPath, ['-e', PROBE, ...fifos], { env, encoding: 'utf8', timeout: 30_000 });
  expect(r.stderr).toBe('');
  return r.stdout.trim();
}

const withoutPoolSize = (): NodeJS.ProcessEnv => {
  const env = { ...process.env };
  delete env.UV_THREADPOOL_SIZE;
  return env;
};

test('a region process gets a pool of 16 threads: a task runs while 5 threads are held', () => {
  expect(probe(withoutPoolSize())).toBe('ran 16');
});

test("an operator's UV_THREADPOOL_SIZE is kept: with 4 threads, 5 held ones leave the task queued", () => {
  expect(probe({ ...withoutPoolSize(), UV_THREADPOOL_SIZE: '4' })).toBe('queued 4');
});

test('threadpool.js is the first module main.js loads, so nothing used the pool before it set its size', () => {
  const main = fs.readFileSync(path.join(DIST, 'main.js'), 'utf8');
  const first = /require\("([^"]+)"\)/.exec(main);
  expect(first?.[1]).toBe('./threadpool');
});
