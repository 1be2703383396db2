/** bench/cpu-profile-groups.ts folds a profile by package and module: what each sample is charged to. */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/paths';

const SCRIPT = path.join(PROJECT_ROOT, 'dist/bench/cpu-profile-groups.js');

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cpu-profile-groups-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function fold(name: string, text: string, ...args: string[]): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  const res = spawnSync(process.execPath, [SCRIPT, file, ...args], { encoding: 'utf8', timeout: 30_000 });
  expect(res.stderr).toBe('');
  expect(res.status).toBe(0);
  return res.stdout;
}

/** The rows of one of the output's tables, group → share in per cent. */
function rows(out: string, title: string): Map<string, number> {
  const section = out.slice(out.indexOf(title)).split('\n\n')[0] ?? '';
  return new Map([...section.matchAll(/^\| (.+?) \| \d+ ms \| ([\d.]+) % \|$/gm)].map((m) => [m[1] ?? '', Number(m[2])]));
}

const frame = (id: number, functionName: string, url: string, children: number[] = []) => ({
  id,
  callFrame: { functionName, url, lineNumber: 0, columnNumber: 0, scriptId: '0' },
  hitCount: 0,
  children,
});

// A socket write under pg's query under the router, one of our module's functions with a builtin under it,
// garbage collection and idle: each sample 1 ms (a sample's weight is the time to the next one).
const PROFILE = {
  nodes: [
    frame(1, '(root)', '', [2, 3, 7, 8]),
    frame(2, '(idle)', ''),
    frame(3, 'handle', 'file:///app/node_modules/router/index.js', [4]),
    frame(4, 'query', 'file:///app/node_modules/pg/lib/client.js', [5]),
    frame(5, 'writeGeneric', 'node:internal/stream_base_commons', [6]),
    frame(6, 'writeBuffer', ''),
    frame(7, '(garbage collector)', ''),
    frame(8, 'write', 'file:///app/dist/src/replication/replicator.js', [9]),
    frame(9, 'stringify', ''),
  ],
  startTime: 0,
  endTime: 7000,
  samples: [2, 6, 6, 4, 7, 9, 2],
  timeDeltas: [0, 1000, 1000, 1000, 1000, 1000, 1000],
};

test('a .cpuprofile: native frames take their caller’s group, and are charged to the package that called Node', () => {
  const out = fold('a.cpuprofile', JSON.stringify(PROFILE));
  expect(out).toContain('busy 5 ms, idle 1 ms');
  const self = rows(out, 'Self time');
  expect(self.get('node: net + streams (native)')).toBe(40);
  expect(self.get('pg')).toBe(20);
  expect(self.get('V8: garbage collector')).toBe(20);
  expect(self.get('src/replication (native)')).toBe(20);
  const charged = rows(out, 'Charged to the caller');
  expect(charged.get('pg')).toBe(60);
  expect(charged.get('src/replication')).toBe(20);
  expect(charged.has('router')).toBe(false);
});

test('--families folds packages into their family; --from/--to keep a window', () => {
  const charged = rows(fold('b.cpuprofile', JSON.stringify(PROFILE), '--families', '--from', '0.0025', '--to', '0.0045'), 'Charged to the caller');
  expect([...charged]).toEqual([['pg driver', 50], ['V8: garbage collector', 50]]);
});

test('perf script text: kernel frames go to the JavaScript below them, GC on a helper thread is a group of its own', () => {
  const perf = [
    '100/100    3000000 ',
    '\tffffffff8207c6cb tcp_sendmsg ([kernel.kallsyms])',
    '\t           f838f __GI___libc_write (/usr/lib/x86_64-linux-gnu/libc.so.6)',
    '\t    7f70201e8b7c JS:*writeGeneric node:internal/stream_base_commons:148:22 (/tmp/perf-100.map)',
    '\t    7f70201e8b7d JS:*query /app/node_modules/pg/lib/client.js:668:8 (/tmp/perf-100.map)',
    '',
    '100/101    1000000 ',
    '\t          c494db v8::internal::Scavenger::ScavengeObject<v8::internal::FullHeapObjectSlot> (/usr/bin/node)',
    '',
  ].join('\n');
  const out = fold('perf.txt', perf);
  expect(out).toContain('busy 4 ms, CPU time of every thread (perf)');
  const self = rows(out, 'Self time');
  expect(self.get('node: net + streams (kernel)')).toBe(75);
  expect(self.get('V8: garbage collector (helper threads)')).toBe(25);
  expect(rows(out, 'Charged to the caller').get('pg')).toBe(75);
});
