/** bench/profile-fold.ts folds a real V8 CPU profile by package, Node area and module of ours. */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { groupOf } from '../../bench/profile-fold';
import { PROJECT_ROOT } from '../../src/paths';

const FOLD = path.join(PROJECT_ROOT, 'dist/bench/profile-fold.js');

test('groups a script by its package, its Node area or our module', () => {
  expect(groupOf('file:///app/node_modules/express/lib/router.js')).toBe('pkg:express');
  expect(groupOf('/app/node_modules/@prisma/client/runtime/client.js')).toBe('pkg:@prisma/client');
  expect(groupOf('/app/node_modules/a/node_modules/pg-protocol/dist/parser.js')).toBe('pkg:pg-protocol');
  expect(groupOf('file:///app/dist/src/metadata/parse-pool.js')).toBe('src/metadata/parse-pool');
  expect(groupOf('/app/dist/src/generated/prisma/internal/class.js')).toBe('src/generated');
  expect(groupOf('node:internal/crypto/hash')).toBe('node:crypto');
  expect(groupOf('node:_http_outgoing')).toBe('node:_http_outgoing');
  expect(groupOf('')).toBeNull();
});

test('folds a profile written by node --cpu-prof: the busy time per second, and the time of a module under its name', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'profile-fold-'));
  try {
    // A module of "ours" (under dist/src/) that hashes for a while, so its samples are many.
    const own = path.join(dir, 'dist', 'src', 'busy', 'work.js');
    fs.mkdirSync(path.dirname(own), { recursive: true });
    fs.writeFileSync(own, "const c = require('node:crypto'); exports.work = () => { const end = Date.now() + 400; let h = ''; while (Date.now() < end) h = c.createHash('sha256').update(h).digest('hex'); return h; };\n");
    const ran = spawnSync(process.execPath, ['--cpu-prof', '--cpu-prof-dir', dir, '-e', `require(${JSON.stringify(own)}).work()`], { encoding: 'utf8', timeout: 30_000 });
    expect(ran.status).toBe(0);
    const file = fs.readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    expect(file).toBeDefined();
    const res = spawnSync(process.execPath, [FOLD, path.join(dir, file ?? '')], { encoding: 'utf8', timeout: 30_000 });
    expect(res.status).toBe(0);
    expect(res.stdout).toMatch(/^busy per second since the start \(%\):/);
    const underOurs = res.stdout.split('time under each module of ours')[1] ?? '';
    const share = /([\d.]+) %\s+\d+ ms\s+src\/busy\/work\n/.exec(underOurs);
    expect(share).not.toBeNull();
    // Most of the process's busy time was spent in that loop (and the hashing it called).
    expect(Number(share?.[1])).toBeGreaterThan(50);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('without a profile it prints its usage and exits 2', () => {
  const res = spawnSync(process.execPath, [FOLD], { encoding: 'utf8', timeout: 30_000 });
  expect(res.status).toBe(2);
  expect(res.stderr).toContain('usage: node dist/bench/profile-fold.js');
});
