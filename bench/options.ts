/**
 * `npm run bench`'s command line: which part runs and with what. Every option is declared here, with the
 * parts it applies to; anything else is refused before a database is created (the whole run takes minutes,
 * so a misspelt option must not be found out after it).
 */
import { parseArgs } from 'node:util';
import { ACK_SIGNATURE_MODES, ackSignatureMode, type AckSignatures } from '../src/config-schema';
import { ARMS, type Arm } from './arms';

export const PARTS = ['throughput', 'latency', 'apply', 'overload', 'stall'] as const;
export type Part = (typeof PARTS)[number];
export type Op = 'read' | 'patch' | 'create';
const OPS: readonly Op[] = ['read', 'patch', 'create'];

/** The throughput, latency and apply parts (bench/throughput.ts). */
export interface ThroughputOptions {
  /** Measured seconds per side and operation. */
  seconds: number;
  /** Interleaved slices the measured seconds are taken in, the sides alternating (1: one run each, in turn). */
  rounds: number;
  /** Seconds of unmeasured load before each side's slices. */
  warmup: number;
  /** Sequential PATCHes per consistency level. */
  n: number;
  /** Milliseconds between those PATCHes (they also run back to back). */
  gap: number;
  /** Changes of the apply part's backlog. */
  backlog: number;
  /** Credentials bulk-inserted in every region first. */
  stored: number;
  /** The regions deliver several events per inbox entry (config replicationPacks). */
  packs: boolean;
  /** The regions' config ackSignatures (default require, as the shipped regions.config.json). */
  ackSignatures: AckSignatures;
  /** The throughput operations. */
  ops: Op[];
  /** The states the throughput part's blocks run in, in order (bench/arms.ts); ['paused'] without --arms. */
  arms: Arm[];
  /** Which parts run: all three in a full run, else the one named. */
  only: 'throughput' | 'latency' | 'apply' | null;
}

/** The overload part (bench/overload.ts). */
export interface OverloadOptions {
  /** Concurrent all_regions PATCHes. */
  n: number;
  /** Their consistency timeout, s. */
  timeout: number;
  /** Seconds after which the paused region resumes (never, without it). */
  resumeAfter?: number;
  /** Credentials the PATCHes rotate over. */
  credentials: number;
  /** The write gate's queue and its wait (config admission.writes), when set. */
  writesQueue?: number;
  writesQueueWait?: number;
  /** The regions' config ackSignatures (default require, as the shipped regions.config.json). */
  ackSignatures: AckSignatures;
}

export type BenchCommand =
  | { part: 'full'; throughput: ThroughputOptions; waiters: boolean }
  | { part: 'throughput' | 'latency' | 'apply'; throughput: ThroughputOptions }
  | { part: 'overload'; overload: OverloadOptions }
  | { part: 'stall'; rounds: number }
  | { part: 'help' };

/** J's waiter target at the end of a full run: all 10,000 let through the write gate, so that all wait at once. */
export const WAITERS: Omit<OverloadOptions, 'ackSignatures'> = { n: 10_000, timeout: 90, credentials: 64, writesQueue: 10_000, writesQueueWait: 120_000 };

export class BenchUsageError extends Error {}

export const USAGE = `npm run bench [-- <part>] [-- options]

Parts (none: throughput, latency and apply, then the 10,000 waiters):
  throughput   the service against an Express + pg baseline: read, PATCH, create
  latency      all_regions - local_region p50, three regions on loopback
  apply        a paused region's catch-up on a backlog of distinct rows
  overload     a flood of all_regions PATCHes: answers, memory, the operator port's latency
  stall        the event-loop stall of parsing the largest metadata documents

Options (a number each, but --ops, --packs, --waiters and --ack-signatures):
  full run, throughput, latency, apply, overload:
    --ack-signatures off|sign|require
                        the regions' ackSignatures (require, as the shipped regions.config.json)
  full run, throughput, latency, apply:
    --seconds <s>       measured seconds per side and operation (8)
    --rounds <n>        slices they are taken in, the sides alternating (4)
    --warmup <s>        unmeasured load before each side's slices (16)
    --ops <list>        throughput operations, comma-separated: read,patch,create (all)
    --n <n>             sequential PATCHes per consistency level (200)
    --gap <ms>          between them (20; they also run back to back)
    --backlog <n>       changes of the apply part's backlog (100000)
    --stored <n>        credentials bulk-inserted in every region first (0)
    --packs on|off      several events per inbox entry (on)
    --waiters on|off    the full run's 10,000 waiters (on)
  throughput:
    --arms <list>       blocks of the run, each in one state, in order, comma-separated: paused (the
                        other regions paused, as without it), no-confirm (paused, the serving region's
                        confirm rounds skipped), running (the other regions up and caught up); e.g.
                        paused,no-confirm,running,running,no-confirm,paused (paused)
  overload:
    --n <n>             concurrent all_regions PATCHes (10000)
    --timeout <s>       their consistency timeout (120)
    --resume-after <s>  resume the paused region after this long (never)
    --credentials <n>   credentials the PATCHes rotate over (64)
    --writes-queue <n>, --writes-queue-wait <ms>
                        the write gate's queue and wait (the region's defaults)
  stall:
    --rounds <n>        parses per document (20)
  --help                this text
`;

const OPTIONS = {
  seconds: { type: 'string' },
  rounds: { type: 'string' },
  warmup: { type: 'string' },
  ops: { type: 'string' },
  n: { type: 'string' },
  gap: { type: 'string' },
  backlog: { type: 'string' },
  stored: { type: 'string' },
  packs: { type: 'string' },
  waiters: { type: 'string' },
  timeout: { type: 'string' },
  'resume-after': { type: 'string' },
  credentials: { type: 'string' },
  'writes-queue': { type: 'string' },
  'writes-queue-wait': { type: 'string' },
  'ack-signatures': { type: 'string' },
  arms: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Name = keyof typeof OPTIONS;
const THROUGHPUT_NAMES: readonly Name[] = ['seconds', 'rounds', 'warmup', 'ops', 'n', 'gap', 'backlog', 'stored', 'packs', 'ack-signatures'];
const ALLOWED: Record<Part | 'full', readonly Name[]> = {
  full: [...THROUGHPUT_NAMES, 'waiters'],
  throughput: [...THROUGHPUT_NAMES, 'arms'],
  latency: THROUGHPUT_NAMES,
  apply: THROUGHPUT_NAMES,
  overload: ['n', 'timeout', 'resume-after', 'credentials', 'writes-queue', 'writes-queue-wait', 'ack-signatures'],
  stall: ['rounds'],
};

/** A whole number of at least `min`. */
function count(values: Partial<Record<Name, string | boolean>>, name: Name, def: number, min = 1): number {
  const raw = values[name];
  if (raw === undefined) return def;
  const n = Number(raw);
  if (typeof raw !== 'string' || raw.trim() === '' || !Number.isInteger(n) || n < min) {
    throw new BenchUsageError(`--${name} takes a whole number of at least ${min} (got '${String(raw)}')`);
  }
  return n;
}

function optional(values: Partial<Record<Name, string | boolean>>, name: Name, min = 1): number | undefined {
  return values[name] === undefined ? undefined : count(values, name, 0, min);
}

function onOff(values: Partial<Record<Name, string | boolean>>, name: Name): boolean {
  const raw = values[name];
  if (raw === undefined || raw === 'on') return true;
  if (raw === 'off') return false;
  throw new BenchUsageError(`--${name} takes on or off (got '${String(raw)}')`);
}

function ackSignatures(values: Partial<Record<Name, string | boolean>>): AckSignatures {
  const raw = values['ack-signatures'];
  if (raw === undefined) return 'require';
  const mode = ackSignatureMode(raw);
  if (mode) return mode;
  throw new BenchUsageError(`--ack-signatures takes ${ACK_SIGNATURE_MODES.join(', ')} (got '${String(raw)}')`);
}

function throughputOptions(values: Partial<Record<Name, string | boolean>>, only: ThroughputOptions['only']): ThroughputOptions {
  const named = typeof values.ops === 'string' ? values.ops.split(',') : [...OPS];
  const ops = named.filter((o): o is Op => (OPS as readonly string[]).includes(o));
  if (ops.length !== named.length || ops.length === 0) throw new BenchUsageError(`--ops takes a comma-separated list of ${OPS.join(', ')} (got '${named.join(',')}')`);
  return {
    seconds: count(values, 'seconds', 8),
    rounds: count(values, 'rounds', 4),
    warmup: count(values, 'warmup', 16, 0),
    n: count(values, 'n', 200),
    gap: count(values, 'gap', 20, 0),
    backlog: count(values, 'backlog', 100_000),
    stored: count(values, 'stored', 0, 0),
    packs: onOff(values, 'packs'),
    ackSignatures: ackSignatures(values),
    ops,
    arms: arms(values),
    only,
  };
}

function arms(values: Partial<Record<Name, string | boolean>>): Arm[] {
  if (values.arms === undefined) return ['paused'];
  const named = String(values.arms).split(',');
  const known = named.filter((a): a is Arm => (ARMS as readonly string[]).includes(a));
  if (known.length !== named.length || known.length === 0) throw new BenchUsageError(`--arms takes a comma-separated list of ${ARMS.join(', ')} (got '${named.join(',')}')`);
  return known;
}

/** The bench's command line (without node and the script), or a BenchUsageError that says what is wrong. */
export function parseBenchArgs(args: string[]): BenchCommand {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>;
  try {
    parsed = parseArgs({ args, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new BenchUsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return { part: 'help' };
  if (positionals.length > 1) throw new BenchUsageError(`one part at most (got ${positionals.join(', ')})`);
  const named = positionals[0];
  if (named !== undefined && !(PARTS as readonly string[]).includes(named)) throw new BenchUsageError(`unknown part '${named}': one of ${PARTS.join(', ')}`);
  const part = (named ?? 'full') as Part | 'full';
  const misplaced = (Object.keys(values) as Name[]).filter((name) => !ALLOWED[part].includes(name));
  if (misplaced.length) throw new BenchUsageError(`${misplaced.map((n) => `--${n}`).join(', ')} do${misplaced.length === 1 ? 'es' : ''} not apply to ${part === 'full' ? 'the full run' : `the ${part} part`}`);
  switch (part) {
    case 'full':
      return { part, throughput: throughputOptions(values, null), waiters: onOff(values, 'waiters') };
    case 'throughput':
    case 'latency':
    case 'apply':
      return { part, throughput: throughputOptions(values, part) };
    case 'overload':
      return {
        part,
        overload: {
          n: count(values, 'n', 10_000),
          timeout: count(values, 'timeout', 120),
          resumeAfter: optional(values, 'resume-after', 0),
          credentials: count(values, 'credentials', 64),
          writesQueue: optional(values, 'writes-queue', 0),
          writesQueueWait: optional(values, 'writes-queue-wait', 0),
          ackSignatures: ackSignatures(values),
        },
      };
    case 'stall':
      return { part, rounds: count(values, 'rounds', 20) };
  }
}
