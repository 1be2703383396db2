/**
 * `npm run harness -- up [flags]`: the multi-region stack on network namespaces, kept up until Ctrl-C,
 * with fault commands read from stdin. `npm run harness -- bench [flags]`: the consistency latency figure
 * (bench.ts). `npm run harness -- cleanup` removes leftovers of dead runs.
 */
import readline from 'node:readline';
import { answerHelp } from '../usage';
import { ackSignaturesFlag, log, parseFlags, refuseArguments, requireRoot, runMain, UsageError, type Flags, intFlag, numFlag } from './common';
import { bench } from './bench';
import { removeLeftovers } from './netns';
import { DEFAULT_REDIS_DELAY_MS, DEFAULT_REGIONS, REDIS_HOST, Stack, type RegionSpec, type StackOptions } from './stack';

const USAGE = `usage: npm run harness -- up [options]      start the stack and keep it up until Ctrl-C or 'quit'
       npm run harness -- bench [options]     all_regions - local_region latency (p50) at a given RTT; see --help of bench
       npm run harness -- cleanup             remove what dead harness runs left behind

options of up:
  --regions N          number of regions, 1..8 (default 3: us-iowa, europe-belgium, asia-japan; more are region-4, ...)
  --latency LIST       one-way delays in ms, e.g. us-iowa=5,europe-belgium=45,asia-japan=70 (defaults as
                       shown; extra regions 30; redis=MS: the shared Redis host's, with --shared-redis only).
                       Between two hosts the round trip is the sum. A region's own Redis has its host's delay.
  --shared-redis       one Redis on a host of its own for every region (the topology before per-region Redis);
                       default: each region host runs its own Redis
  --redis-latency MS   the shared Redis host's delay (default ${DEFAULT_REDIS_DELAY_MS}; with --shared-redis only)
  --jitter MS          random +-MS per packet burst (default 0; order is kept)
  --redis-aof yes|no   Redis append-only file, so 'restart redis' keeps the stream (default yes)
  --ack-signatures M   the regions' config ackSignatures: off, sign or require (default require)
  --log-level LEVEL    the regions' LOG_LEVEL (default warn); their lines are echoed unless --quiet
  --logs DIR           keep every host's log in DIR (default: in the run's temp dir, removed at exit)
  --quiet              do not echo region output

commands on stdin while up:
  status                       hosts, addresses, pids, delays, partitions
  partition HOST [link|wan]    link (default): take the host's link down, nothing reaches it;
                               wan: cut it from the other hosts only (its clients and the IdP still reach it)
  heal HOST                    end the partition (HOST: a region, or redis when shared); a host not
                               partitioned is an error that names those that are
  pause SVC | resume SVC       SIGSTOP / SIGCONT a service: a region, redis@REGION (its Redis), or redis (shared);
                               pausing one not running, or resuming one not paused, is an error saying its state
  kill SVC                     kill -9; killing one already down is an error that names those down
  start SVC                    start one that is down, wait until it serves; one running or paused is an error
  restart SVC                  kill -9 if running, start again, wait until it serves
  latency HOST MS              change a host's one-way delay
  quit                         stop everything and clean up (also Ctrl-C)
`;

/**
 * The regions and their delays from --regions, --latency and --redis-latency. A Redis delay is the shared
 * Redis host's (`--shared-redis`); without one each region's Redis is on its region's host and has its
 * delay, so a Redis delay would have no effect: it is refused rather than ignored.
 */
export function regionSpecs(flags: Flags): { regions: RegionSpec[]; redisDelayMs: number } {
  const n = intFlag(flags, 'regions', DEFAULT_REGIONS.length, 1, 8);
  const regions: RegionSpec[] = Array.from({ length: n }, (_, i) => DEFAULT_REGIONS[i] ?? { id: `region-${i + 1}`, delayMs: 30 }).map((r) => ({ ...r }));
  const shared = flags.has('shared-redis');
  const noRedisHost = (what: string) =>
    new UsageError(`${what}: there is no Redis host without --shared-redis (each region's Redis runs on its region's host, with that host's delay: set it with --latency REGION=MS)`);
  if (flags.has('redis-latency') && !shared) throw noRedisHost('--redis-latency');
  let redisDelayMs = numFlag(flags, 'redis-latency', DEFAULT_REDIS_DELAY_MS, 0, 10_000);
  for (const item of (flags.get('latency') ?? '').split(',').filter(Boolean)) {
    const m = /^([a-z][a-z0-9-]*)=(\d+(?:\.\d+)?)$/.exec(item.trim());
    if (!m?.[1] || !m[2]) throw new UsageError(`--latency: '${item}' is not HOST=MS`);
    if (m[1] === REDIS_HOST) {
      if (!shared) throw noRedisHost(`--latency ${item.trim()}`);
      redisDelayMs = Number(m[2]);
    } else {
      const r = regions.find((x) => x.id === m[1]);
      if (!r) throw new UsageError(`--latency: no region '${m[1]}' (regions: ${regions.map((x) => x.id).join(', ')})`);
      r.delayMs = Number(m[2]);
    }
  }
  return { regions, redisDelayMs };
}

function describe(stack: Stack): string {
  const rows = stack.status().map((s) => {
    const region = /^redis@(.+)$/.exec(s.host)?.[1];
    const url = s.host === REDIS_HOST ? stack.redisUrl() : region ? stack.redisUrl(region) : stack.regionUrl(s.host);
    const db = s.host === REDIS_HOST || region ? '' : `  db ${stack.dbUrl(s.host)}`;
    return `  ${s.host.padEnd(22)} ${url.padEnd(26)} delay ${String(s.delayMs).padStart(3)} ms${db}`;
  });
  return [
    `harness run ${stack.runId} is up (bridge ${stack.net.bridge}, ${stack.net.gateway})`,
    ...rows,
    `  IdP metadata     ${stack.idpUrl('okta.xml')}`,
    `  ADMIN_TOKEN=${stack.adminToken}`,
    `  config ${stack.configPath}`,
  ].join('\n');
}

function statusTable(stack: Stack): string {
  return stack
    .status()
    .map((s) => `  ${s.host.padEnd(22)} ${s.address.padEnd(13)} ${s.state.padEnd(8)} pid ${String(s.pid ?? '-').padEnd(8)} delay ${s.delayMs} ms${s.partitioned ? `  PARTITIONED (${s.partitioned})` : ''}`)
    .join('\n');
}

/** The services that are down, for an error that a service is. */
function downList(stack: Stack): string {
  const down = stack.serviceNames.filter((n) => stack.state(n) === 'down');
  return down.length ? `down: ${down.join(', ')}` : 'no service is down';
}

/** What to print for one command line, or null after quit; a refused command throws (see reply). */
async function command(stack: Stack, line: string): Promise<string | null> {
  const [cmd = '', host = '', arg = ''] = line.trim().split(/\s+/);
  const needHost = () => {
    if (!stack.hostNames.includes(host)) throw new Error(`${cmd} needs a host: ${stack.hostNames.join(', ')}`);
  };
  const needService = () => {
    if (!stack.serviceNames.includes(host)) throw new Error(`${cmd} needs a service: ${stack.serviceNames.join(', ')}`);
  };
  switch (cmd) {
    case '':
      return '';
    case 'status':
      return statusTable(stack) + '\n';
    case 'partition':
      needHost();
      if (arg !== '' && arg !== 'link' && arg !== 'wan') throw new Error('partition HOST [link|wan]');
      stack.partition(host, arg === 'wan' ? 'wan' : 'link');
      break;
    case 'heal':
      needHost();
      stack.heal(host);
      break;
    case 'pause':
    case 'resume':
      needService();
      if (cmd === 'pause') stack.pause(host);
      else stack.resume(host);
      break;
    case 'kill':
      needService();
      // One already down is refused, as a heal of a host not partitioned is: an operator who typed the wrong
      // service must not believe the right one was killed.
      if (stack.state(host) === 'down') throw new Error(`${host} is already down: nothing to kill (${downList(stack)})`);
      await stack.kill(host);
      break;
    case 'restart':
    case 'start':
      needService();
      if (cmd === 'restart') await stack.restart(host);
      else {
        const state = stack.state(host);
        if (state !== 'down') throw new Error(`${host} is ${state === 'paused' ? 'paused: resume it' : 'already running: nothing to start'} (restart stops and starts it)`);
        await stack.startService(host);
      }
      break;
    case 'latency':
      needHost();
      if (!/^\d+$/.test(arg)) throw new Error('latency HOST MS');
      stack.setDelay(host, Number(arg));
      break;
    case 'quit':
    case 'exit':
      return null;
    case 'help':
      return USAGE.slice(USAGE.indexOf('commands on stdin'));
    default:
      throw new Error(`unknown command '${cmd}' (try help)`);
  }
  return `ok: ${line.trim()}\n`;
}

/**
 * The answer to one line typed while `up` runs: what to print, and whether to read on (not after quit). A
 * command refused (a mistake, or a fault that does not apply: a heal of a host not partitioned) is `error: …`
 * and the stack keeps running: one typo must not end a run set up for minutes.
 */
export async function reply(stack: Stack, line: string): Promise<{ text: string; more: boolean }> {
  try {
    const text = await command(stack, line);
    return text === null ? { text: '', more: false } : { text, more: true };
  } catch (err) {
    return { text: `error: ${(err as Error).message}\n`, more: true };
  }
}

/** `up`'s stack from its options; a mistake is a UsageError, found before anything runs. */
export function upOptions(flags: Flags): StackOptions {
  const { regions, redisDelayMs } = regionSpecs(flags);
  const aof = flags.get('redis-aof') ?? 'yes';
  if (aof !== 'yes' && aof !== 'no') throw new UsageError('--redis-aof must be yes or no');
  const quiet = flags.has('quiet');
  return {
    regions,
    redisDelayMs,
    jitterMs: numFlag(flags, 'jitter', 0, 0, 10_000),
    redisAppendOnly: aof === 'yes',
    sharedRedis: flags.has('shared-redis'),
    ackSignatures: ackSignaturesFlag(flags),
    logLevel: flags.get('log-level') ?? 'warn',
    logDir: flags.get('logs'),
    onRegionLine: quiet ? undefined : (region, line) => process.stdout.write(`[${region}] ${line}\n`),
    say: log,
  };
}

async function up(opts: StackOptions): Promise<number> {
  const stack = await Stack.up(opts);
  process.stdout.write(describe(stack) + '\nType help for commands; Ctrl-C or quit stops everything.\n');
  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  return new Promise<number>((resolve) => {
    let queue = Promise.resolve(true);
    rl.on('line', (line) => {
      // One command at a time, in the order typed: a restart finishes before the next partition.
      queue = queue.then(async (go) => {
        if (!go) return false;
        const { text, more } = await reply(stack, line);
        process.stdout.write(text);
        if (!more) resolve(0);
        return more;
      });
    });
    // Without a terminal (stdin at EOF) keep running until a signal: `up` is a long-running command.
  });
}

/**
 * `up` or `cleanup` and, for `up`, its stack: the whole command line is checked before the root check and
 * before anything runs (a word after the command, or options to `cleanup`, were ignored).
 */
export function harnessArgs(argv: readonly string[]): { cmd: 'up'; opts: StackOptions } | { cmd: 'cleanup' } | { cmd: 'help' } {
  const { flags, positional } = parseFlags(
    argv,
    ['regions', 'latency', 'redis-latency', 'jitter', 'redis-aof', 'ack-signatures', 'log-level', 'logs'],
    ['quiet', 'shared-redis'],
  );
  const [cmd = 'up', ...rest] = positional;
  if (cmd !== 'up' && cmd !== 'cleanup' && cmd !== 'help') throw new UsageError(`unknown command '${cmd}'`);
  refuseArguments(rest);
  if (cmd === 'up') return { cmd, opts: upOptions(flags) };
  if (flags.size) throw new UsageError(`${cmd} takes no options`);
  return { cmd };
}

async function main(): Promise<number> {
  if (process.argv[2] === 'bench') return bench(process.argv.slice(3));
  answerHelp(process.argv.slice(2), USAGE.trimEnd());
  const args = harnessArgs(process.argv.slice(2));
  if (args.cmd === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  requireRoot(`npm run harness -- ${args.cmd}`);
  if (args.cmd === 'cleanup') {
    const removed = removeLeftovers();
    process.stdout.write(removed.length ? `removed leftovers of runs ${removed.join(', ')}\n` : 'nothing to clean up\n');
    return 0;
  }
  return up(args.opts);
}

if (require.main === module) runMain(main, USAGE);
