/**
 * Folds a V8 .cpuprofile (a region's `REGION_CPU_PROFILE_DIR` output, or any `--cpu-prof` file) by where the
 * time went: self time per package (express, ajv, pg, @prisma/…), per Node internal area (node:http, node:net,
 * node:crypto, …) and per module of our own (src/metadata/…, src/replication/…), and the time under each of our
 * modules (the deepest frame of our own code on the stack: what a library call was made for).
 *
 *   node dist/bench/profile-fold.js <file.cpuprofile> [--from <s>] [--to <s>] [--top <n>]
 *
 * `--from`/`--to` take seconds since the profile started (a busy-per-second line is printed to choose them:
 * a region's profile covers its start-up and the bench's idle and paused periods too). Native frames (no
 * script: `writeBuffer`, `JSON.parse`, the garbage collector) are charged to the group of the JavaScript that
 * called them, and listed on their own as well.
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const IDLE = new Set(['(idle)', '(root)']);

/** The group of a script: `pkg:<name>` in node_modules, `src/<dir>/<file>` for ours, `node:<area>` for Node's. */
export function groupOf(url: string): string | null {
  if (!url) return null;
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const parts = url.slice(nm + '/node_modules/'.length).split('/');
    return `pkg:${parts[0].startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]}`;
  }
  const own = /\/dist\/((?:src|bench|scripts)\/.*)\.js$/.exec(url);
  if (own) return own[1].replace(/^src\/generated\/.*/, 'src/generated');
  if (url.startsWith('node:')) {
    const m = /^node:(?:internal\/)?(?:deps\/)?([^/]+)/.exec(url);
    return `node:${m ? m[1].replace(/\.js$/, '') : url}`;
  }
  return url;
}

function add(map: Map<string, number>, key: string, v: number): void {
  map.set(key, (map.get(key) ?? 0) + v);
}

function print(title: string, map: Map<string, number>, total: number, top: number): void {
  process.stdout.write(`\n${title}\n`);
  const rows = [...map.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  for (const [k, v] of rows) process.stdout.write(`  ${((100 * v) / total).toFixed(1).padStart(5)} %  ${(v / 1000).toFixed(0).padStart(7)} ms  ${k}\n`);
}

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { from: { type: 'string' }, to: { type: 'string' }, top: { type: 'string' } },
  });
  if (positionals.length !== 1) {
    process.stderr.write('usage: node dist/bench/profile-fold.js <file.cpuprofile> [--from <s>] [--to <s>] [--top <n>]\n');
    process.exit(2);
  }
  const profile = JSON.parse(fs.readFileSync(positionals[0], 'utf8')) as CpuProfile;
  const from = values.from === undefined ? -Infinity : Number(values.from) * 1e6;
  const to = values.to === undefined ? Infinity : Number(values.to) * 1e6;
  const top = values.top === undefined ? 30 : Number(values.top);

  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  // Per node, once: its own group (natives: the caller's), and the deepest module of ours on its stack.
  const selfGroup = new Map<number, string>();
  const ownGroup = new Map<number, string>();
  const resolve = (id: number): void => {
    if (selfGroup.has(id)) return;
    const chain: number[] = [];
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) chain.push(at);
    let group = '(no script)';
    let own = '(none of ours)';
    for (let i = chain.length - 1; i >= 0; i--) {
      const g = groupOf(byId.get(chain[i])?.callFrame.url ?? '');
      if (g) group = g;
      if (g?.startsWith('src/')) own = g;
    }
    selfGroup.set(id, group);
    ownGroup.set(id, own);
  };

  const bySelf = new Map<string, number>();
  const byOwn = new Map<string, number>();
  const natives = new Map<string, number>();
  const functions = new Map<string, number>();
  const perSecond = new Map<number, [number, number]>();
  let t = 0;
  let busy = 0;
  let all = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i + 1] ?? 0; // a sample's weight: the time until the next one
    t += profile.timeDeltas[i];
    const node = byId.get(profile.samples[i]);
    if (!node) continue;
    const name = node.callFrame.functionName || '(anonymous)';
    const idle = IDLE.has(name);
    const sec = Math.floor(t / 1e6);
    const ps = perSecond.get(sec) ?? [0, 0];
    ps[1] += dt;
    if (!idle) ps[0] += dt;
    perSecond.set(sec, ps);
    if (t < from || t > to) continue;
    all += dt;
    if (idle) continue;
    busy += dt;
    resolve(node.id);
    add(bySelf, selfGroup.get(node.id) ?? '?', dt);
    add(byOwn, ownGroup.get(node.id) ?? '?', dt);
    if (!node.callFrame.url) add(natives, name, dt);
    add(functions, `${name} ${groupOf(node.callFrame.url) ?? ''}`, dt);
  }

  process.stdout.write('busy per second since the start (%):\n ');
  for (const [sec, [b, a]] of [...perSecond.entries()].sort((x, y) => x[0] - y[0])) {
    process.stdout.write(` ${sec}:${a ? Math.round((100 * b) / a) : 0}`);
  }
  process.stdout.write(`\n\nwindow: ${(all / 1e6).toFixed(1)} s, busy ${(busy / 1e6).toFixed(2)} s (${((100 * busy) / (all || 1)).toFixed(0)} %); shares below are of the busy time\n`);
  print('self time by package / module (natives charged to their caller):', bySelf, busy, top);
  print('time under each module of ours (the deepest frame of our code on the stack):', byOwn, busy, top);
  print('native frames (self):', natives, busy, top);
  print('functions (self):', functions, busy, top);
}

if (require.main === module) main();
