/**
 * scripts/build-if-stale.js, run in a scratch project of its own (its `npm run build` only leaves a mark):
 * a stale dist/ is rebuilt before a command, except for the operator commands that act on a running
 * deployment (--as-built: members, reseed), which run the dist/ the regions run; a missing one is built.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../src/paths';

let root: string;

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'build-if-stale-'));
  fs.mkdirSync(path.join(root, 'scripts'));
  fs.copyFileSync(path.join(PROJECT_ROOT, 'scripts/build-if-stale.js'), path.join(root, 'scripts/build-if-stale.js'));
  fs.writeFileSync(path.join(root, 'package.json'), JSON.stringify({ name: 'scratch', private: true, scripts: { build: 'node -e "require(\'fs\').writeFileSync(\'built\', \'\')"' } }));
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

/** dist/ built a minute ago; src/ changed after it when `stale`, before it otherwise. */
function built(stale: boolean): void {
  fs.mkdirSync(path.join(root, 'dist'));
  fs.mkdirSync(path.join(root, 'src'));
  fs.writeFileSync(path.join(root, 'src/a.ts'), '');
  fs.writeFileSync(path.join(root, 'dist/.build-stamp'), '');
  const at = (ago: number) => new Date(Date.now() - ago);
  for (const p of ['src/a.ts', 'src', 'package.json', 'scripts/build-if-stale.js', 'scripts']) fs.utimesSync(path.join(root, p), at(120_000), at(120_000));
  fs.utimesSync(path.join(root, 'dist/.build-stamp'), at(60_000), at(60_000));
  if (stale) fs.utimesSync(path.join(root, 'src/a.ts'), at(0), at(0));
}

const run = (...args: string[]) => spawnSync(process.execPath, [path.join(root, 'scripts/build-if-stale.js'), ...args], { cwd: root, encoding: 'utf8', timeout: 60_000 });
const rebuilt = () => fs.existsSync(path.join(root, 'built'));

test('a dist/ older than its inputs is rebuilt before a command', () => {
  built(true);
  const res = run();
  expect(res.status).toBe(0);
  expect(res.stderr).toMatch(/building: src changed since the last build/);
  expect(rebuilt()).toBe(true);
});

test('--as-built (members, reseed) runs a stale dist/ as it is, saying so: the running regions run it', () => {
  built(true);
  const res = run('--as-built');
  expect(res.status).toBe(0);
  expect(res.stderr).toMatch(/dist\/ is older than its inputs \(src changed since the last build\): running it as built/);
  expect(rebuilt()).toBe(false);
});

test('--as-built runs a dist/ compiled without npm run build (no stamp, as the Dockerfile compiles it) as it is', () => {
  fs.mkdirSync(path.join(root, 'dist'));
  const res = run('--as-built');
  expect(res.status).toBe(0);
  expect(res.stderr).toMatch(/dist\/ was compiled without npm run build: running it as built/);
  expect(rebuilt()).toBe(false);
});

test('--as-built still builds a dist/ that was never built', () => {
  const res = run('--as-built');
  expect(res.status).toBe(0);
  expect(res.stderr).toMatch(/building: dist\/ has not been built/);
  expect(rebuilt()).toBe(true);
});

test('an up-to-date dist/ is not rebuilt', () => {
  built(false);
  const res = run();
  expect(res.stderr).toMatch(/up to date/);
  expect(rebuilt()).toBe(false);
});
