/**
 * Folds a region's CPU profile by package and by our own module instead of by function: where a request's
 * time goes when no single function stands out. It reads either
 * - a V8 `.cpuprofile` (REGION_CPU_PROFILE_DIR): the main thread only, and the sampler counts wall time, so a
 *   socket write that hands the core to the process it wakes weighs more than the CPU it costs; or
 * - the text of `perf script -F pid,tid,period,ip,sym,dso` over `perf record -e cpu-clock -F 999 -g -p <pid>`
 *   of a region started with `REGION_NODE_ARGS=--perf-basic-prof` (its JIT frames named): CPU time of every
 *   thread, the kernel's part of the system calls included, the measure to judge a change by.
 *
 *   node dist/bench/cpu-profile-groups.js <file> [--from <s>] [--to <s>] [--timeline] [--top <n>] [--detail <group>]
 *     [--families]
 *
 * Two views of the same samples (a .cpuprofile's idle left out, each of its samples weighted by the time until
 * the next one):
 * - **self**: where the sample landed. A native or kernel frame (a binding such as `writeBuffer`, a builtin, a
 *   system call) belongs to the group of the JavaScript that called it, marked "(native)" or "(kernel)";
 *   garbage collection anywhere on the stack is a group of its own;
 * - **charged to the caller**: Node's own modules and native frames are charged to the nearest frame of a
 *   package or of our code above them (a `pg` query's socket write goes to `pg`), which is what an owner
 *   could change.
 * For a .cpuprofile, `--from`/`--to` keep the samples of that window (seconds after the profile's start;
 * `--timeline` prints the busy share per second to choose it), so a region's start-up can be left out.
 * `--detail <group>` adds the functions of one group of the self view; `--families` folds packages into
 * families (express and its middleware, the pg driver, ioredis, ajv, @prisma/*).
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

const IDLE = '(idle)';

/** Node's modules, in the families a reader thinks of; anything else keeps its own name. */
const NODE_FAMILIES: [RegExp, string][] = [
  [/^node:(_http_|http$|internal\/http)/, 'node: http'],
  [/^node:(net|stream|internal\/(stream_base_commons|streams\/|net))/, 'node: net + streams'],
  [/^node:(timers|internal\/timers)/, 'node: timers'],
  [/^node:internal\/(process\/task_queues|async_hooks|async_local_storage)|^node:async_hooks/, 'node: async hooks + task queues'],
  [/^node:(crypto|internal\/crypto\/)/, 'node: crypto'],
  [/^node:(buffer|internal\/buffer)/, 'node: buffer'],
  [/^node:(events|internal\/events)/, 'node: events'],
  [/^node:internal\/(modules|bootstrap)|^node:(fs|internal\/fs)/, 'node: module loading + fs'],
];

/** With --families: packages folded into the family a reader thinks of (a package not named keeps its name). */
const PACKAGE_FAMILIES: Record<string, string> = Object.fromEntries(
  Object.entries({
    'express + its middleware': ['express', 'router', 'body-parser', 'raw-body', 'iconv-lite', 'type-is', 'content-type', 'media-typer', 'mime-types', 'mime-db', 'parseurl', 'path-to-regexp', 'on-finished', 'finalhandler', 'debug', 'ms', 'depd', 'http-errors', 'statuses', 'accepts', 'negotiator', 'send', 'etag', 'fresh', 'vary', 'encodeurl', 'escape-html', 'qs', 'merge-descriptors', 'cookie', 'proxy-addr', 'forwarded', 'unpipe', 'bytes', 'setprototypeof', 'is-promise'],
    'pg driver': ['pg', 'pg-protocol', 'pg-pool', 'pg-types', 'pg-int8', 'postgres-array', 'postgres-bytea', 'postgres-date', 'postgres-interval', 'pg-connection-string'],
    'ioredis': ['ioredis', 'redis-parser', 'redis-errors', 'denque', 'standard-as-callback', 'cluster-key-slot', 'lodash.defaults', 'lodash.isarguments'],
    'ajv': ['ajv', 'ajv-formats', 'fast-uri', 'fast-deep-equal', 'json-schema-traverse', 'require-from-string'],
  }).flatMap(([family, names]) => names.map((n) => [n, family])),
);

interface Frame {
  /** The group of the frame's code: a package, one of our modules, a family of Node's modules. */
  group: string;
  /** Node's own JavaScript or a native frame: charged to its caller in the second view. */
  runtime: boolean;
}

function frameOf(node: ProfileNode, families: boolean): Frame {
  const { url, functionName } = node.callFrame;
  if (url === '') {
    if (functionName === '(garbage collector)') return { group: 'V8: garbage collector', runtime: false };
    if (functionName === '(program)') return { group: 'V8: (program), native code outside JavaScript', runtime: false };
    if (functionName === '(root)') return { group: '(root)', runtime: false };
    return { group: '', runtime: true }; // native: its caller's group, below
  }
  if (url.startsWith('node:')) {
    const family = NODE_FAMILIES.find(([pattern]) => pattern.test(url));
    return { group: family ? family[1] : `node: ${url.slice('node:'.length).replace(/^internal\//, '')}`, runtime: true };
  }
  const modules = url.lastIndexOf('/node_modules/');
  if (modules >= 0) {
    const parts = url.slice(modules + '/node_modules/'.length).split('/');
    const name = parts[0].startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0];
    const family = !families ? name : name.startsWith('@prisma/') ? '@prisma/*' : (PACKAGE_FAMILIES[name] ?? name);
    return { group: family, runtime: false };
  }
  const ours = /\/dist\/((?:src|bench|scripts)\/(?:generated\/[^/]+|[^/]+))/.exec(url);
  if (ours) return { group: ours[1].replace(/\.js$/, ''), runtime: false };
  return { group: url.startsWith('wasm://') ? 'wasm' : url, runtime: false };
}

interface Grouped {
  self: string;
  charged: string;
  /** The function, for --detail: a native one named with its caller. */
  name: string;
}

function functionName(node: ProfileNode): string {
  const { functionName: fn, url, lineNumber } = node.callFrame;
  return url === '' ? fn || '(anonymous)' : `${fn || '(anonymous)'} ${url.replace(/^.*\/(node_modules|dist)\//, '')}:${lineNumber + 1}`;
}

/** For each node: its self group (a native frame takes its caller's) and the group it is charged to. */
function groupNodes(profile: Profile, families: boolean): Map<number, Grouped> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const result = new Map<number, Grouped>();
  const resolve = (id: number): Grouped => {
    const known = result.get(id);
    if (known) return known;
    const node = byId.get(id);
    const up = parent.get(id);
    if (!node) return { self: '?', charged: '?', name: '?' };
    const frame = frameOf(node, families);
    const above = up === undefined ? null : resolve(up);
    const self = frame.group === '' ? `${above?.self ?? '?'} (native)`.replace(' (native) (native)', ' (native)') : frame.group;
    const callerIsCode = above !== null && above.charged !== '(root)' && !above.charged.startsWith('V8:');
    const charged = frame.runtime && callerIsCode ? above.charged : self.replace(/ \(native\)$/, '');
    const upNode = up === undefined ? undefined : byId.get(up);
    const name = frame.group === '' && upNode ? `${functionName(node)} ← ${functionName(upNode)}` : functionName(node);
    const grouped = { self, charged, name };
    result.set(id, grouped);
    return grouped;
  };
  for (const n of profile.nodes) resolve(n.id);
  return result;
}

/** One weighted sample as the tables count it. */
interface Counted {
  weight: number;
  grouped: Grouped;
}

/** The samples of a .cpuprofile within [from, to) µs of its start, idle left out; and, per second, the busy share. */
function cpuProfileSamples(profile: Profile, from: number, to: number, families: boolean): { samples: Counted[]; idle: number; perSecond: number[] } {
  const groups = groupNodes(profile, families);
  const idleIds = new Set(profile.nodes.filter((n) => n.callFrame.functionName === IDLE).map((n) => n.id));
  const samples: Counted[] = [];
  const seconds: { busy: number; all: number }[] = [];
  let idle = 0;
  let at = 0; // µs since the profile's start, at sample i
  for (let i = 0; i < profile.samples.length; i++) {
    at += profile.timeDeltas[i];
    const weight = profile.timeDeltas[i + 1] ?? 0; // the time until the next sample, as DevTools counts it
    const id = profile.samples[i];
    const second = (seconds[Math.floor(at / 1e6)] ??= { busy: 0, all: 0 });
    second.all += weight;
    if (!idleIds.has(id)) second.busy += weight;
    if (at < from || at >= to) continue;
    const grouped = groups.get(id);
    if (idleIds.has(id)) idle += weight;
    else if (grouped) samples.push({ weight, grouped });
  }
  return { samples, idle, perSecond: [...seconds].map((s) => (s && s.all > 0 ? s.busy / s.all : 0)) };
}

const GC = /Heap::CollectGarbage|Scavenge|MarkCompact|ConcurrentMarking|Sweeper|MinorMC|IncrementalMarking/;

/**
 * The samples of `perf script -F pid,tid,period,ip,sym,dso` over a region run with --perf-basic-prof (its
 * JIT frames named `JS:*name url:line:col`): CPU time, where V8's profile counts the main thread's wall time.
 * Garbage collection anywhere on a stack is its own group, apart on V8's helper threads; native and kernel
 * frames belong to the JavaScript below them, marked so.
 */
function perfSamples(text: string, families: boolean): Counted[] {
  const samples: Counted[] = [];
  for (const block of text.split(/\n\s*\n/)) {
    const lines = block.split('\n').filter((l) => l.trim() !== '');
    const head = /^\s*(\d+)\/?(\d+)?\s+(\d+)/.exec(lines[0] ?? '');
    if (!head) continue;
    const main = head[2] === undefined || head[1] === head[2];
    const frames = lines.slice(1).map((l) => /^\s*[0-9a-f]+ (.*) \(([^)]*)\)$/.exec(l)).filter((m): m is RegExpExecArray => m !== null);
    const jsFrames = frames.flatMap((m) => {
      const f = /^JS:[*^~+]?(.*) (\S+):(\d+):\d+$/.exec(m[1]);
      return f ? [{ fn: f[1] || '(anonymous)', url: f[2], line: f[3] }] : [];
    });
    const leaf = frames[0];
    const where = !leaf ? '' : leaf[2].includes('kernel') ? ' (kernel)' : /JS:/.test(leaf[1]) ? '' : ' (native)';
    const weight = Number(head[3]) / 1000; // ns → µs
    const name = (f: { fn: string; url: string; line: string }) => `${f.fn} ${f.url.replace(/^.*\/(node_modules|dist)\//, '')}:${f.line}`;
    const groupOf = (f: { url: string }) => frameOf({ id: 0, callFrame: { functionName: 'js', url: f.url, lineNumber: 0 } }, families);
    let grouped: Grouped;
    if (frames.some((m) => GC.test(m[1]))) {
      const g = main ? 'V8: garbage collector' : 'V8: garbage collector (helper threads)';
      grouped = { self: g, charged: g, name: leaf?.[1] ?? '?' };
    } else if (jsFrames.length === 0) {
      const g = `${main ? 'main thread' : 'other threads'}: no JavaScript on the stack${where}`;
      grouped = { self: g, charged: g, name: leaf?.[1] ?? '?' };
    } else {
      const first = jsFrames[0];
      const owner = jsFrames.find((f) => !groupOf(f).runtime) ?? first;
      grouped = { self: `${groupOf(first).group}${where}`, charged: groupOf(owner).group, name: where ? `${leaf?.[1]} ← ${name(first)}` : name(first) };
    }
    samples.push({ weight, grouped });
  }
  return samples;
}

function table(title: string, totals: Map<string, number>, busy: number, top: number): string {
  const rows = [...totals].sort((a, b) => b[1] - a[1]);
  const shown = rows.slice(0, top);
  const rest = rows.slice(top).reduce((sum, [, us]) => sum + us, 0);
  const line = (name: string, us: number): string => `| ${name} | ${(us / 1000).toFixed(0)} ms | ${((100 * us) / busy).toFixed(1)} % |`;
  return [`${title}`, '| group | time | share |', '| --- | --- | --- |', ...shown.map(([g, us]) => line(g, us)), ...(rest > 0 ? [line(`${rows.length - top} more`, rest)] : [])].join('\n');
}

const USAGE = 'usage: node dist/bench/cpu-profile-groups.js <file.cpuprofile | perf script output> [--from <s>] [--to <s>] [--top <n>] [--timeline] [--detail <group>] [--families]';

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      from: { type: 'string' },
      to: { type: 'string' },
      top: { type: 'string' },
      timeline: { type: 'boolean' },
      detail: { type: 'string' },
      families: { type: 'boolean' },
    },
  });
  if (positionals.length !== 1) {
    console.error(USAGE);
    process.exit(2);
  }
  const text = fs.readFileSync(positionals[0], 'utf8');
  const top = Number(values.top ?? 30);
  let samples: Counted[];
  let note: string;
  if (text.trimStart().startsWith('{')) {
    const from = Number(values.from ?? 0) * 1e6;
    const to = values.to === undefined ? Infinity : Number(values.to) * 1e6;
    const read = cpuProfileSamples(JSON.parse(text) as Profile, from, to, values.families === true);
    if (values.timeline) {
      console.log(read.perSecond.map((share, i) => `${i}s ${(100 * share).toFixed(0)} %`).join('\n'));
      return;
    }
    samples = read.samples;
    note = `idle ${(read.idle / 1000).toFixed(0)} ms`;
  } else {
    samples = perfSamples(text, values.families === true);
    note = 'CPU time of every thread (perf)';
  }
  const self = new Map<string, number>();
  const charged = new Map<string, number>();
  const detail = new Map<string, number>();
  let busy = 0;
  for (const { weight, grouped } of samples) {
    busy += weight;
    self.set(grouped.self, (self.get(grouped.self) ?? 0) + weight);
    charged.set(grouped.charged, (charged.get(grouped.charged) ?? 0) + weight);
    if (grouped.self === values.detail) detail.set(grouped.name, (detail.get(grouped.name) ?? 0) + weight);
  }
  console.log(`busy ${(busy / 1000).toFixed(0)} ms, ${note}\n`);
  console.log(table('Self time', self, busy, top));
  console.log();
  console.log(table("Charged to the caller (Node's modules and native frames to the package or module that called them)", charged, busy, top));
  if (values.detail !== undefined) console.log(`\n${table(`Functions of ${values.detail}`, detail, busy, top)}`);
}

main();
