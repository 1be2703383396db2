/** Process entry point: one region (REGION) of the deployment in REGIONS_CONFIG. */
// First: sets libuv's pool size before anything uses the pool (threadpool.ts).
import './threadpool';
import os from 'node:os';
import v8 from 'node:v8';
import { ConfigError, loadConfig } from './config';
import { listenProblem } from './listen-check';
import { createLogger, type Logger } from './logger';
import { startRegion, StartupError, type RunningRegion } from './region';

/** A promise nobody handled or an exception nobody caught leaves the process in an unknown state: log it, exit. */
function exitOnUnhandled(log: Logger): void {
  const fatal = (kind: string) => (err: unknown) => {
    log.fatal({ err: err instanceof Error ? { message: err.message, stack: err.stack } : String(err) }, kind);
    process.exit(1);
  };
  process.on('unhandledRejection', fatal('unhandled promise rejection'));
  process.on('uncaughtException', fatal('uncaught exception'));
}

/**
 * How much V8 lets the old generation grow past what survived the last full collection before it collects
 * again (V8 picks up to 300 % on a machine with memory to spare). Under a flood, the objects of requests that
 * waited in a queue for seconds are promoted and die there: with V8's factor a region carried ~300 MB of
 * such garbage before collecting it (+327 MB RSS at the peak of `npm run bench -- overload`); at 25 % it
 * collects it as it goes, for ~1 full collection (mostly concurrent marking) a few seconds under load.
 * `node --heap-growing-percent=N dist/src/main.js` overrides it.
 */
const HEAP_GROWING_PERCENT = 25;

function boundHeapGrowth(): void {
  if (process.execArgv.some((a) => a.startsWith('--heap-growing-percent') || a.startsWith('--heap_growing_percent'))) return;
  // A heuristic V8 reads each time it sizes the heap after a collection: safe to set at run time.
  v8.setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
}

const USAGE = [
  'usage: REGION=<region id> ADMIN_TOKEN=… TOKEN_SIGNING_SECRET=… REPLICATION_KEYS=… npm start',
  'Runs one region of the deployment in REGIONS_CONFIG (default ./regions.config.json) in the foreground until SIGTERM or',
  "Ctrl-C; npm run cluster runs every region. PORT, OPERATOR_PORT, HOST, DATABASE_URL and REGION_REDIS_URL override the",
  "region's entry of the file, REDIS_URL and REDIS_KEY_PREFIX its default redisUrl (not an entry's own) and its",
  'redisKeyPrefix, LOG_LEVEL its logging. Takes no arguments. Every variable: README.md, Configuration.',
].join('\n');

/**
 * `--help` (or `-h`): the usage on stdout, exit 0. Any other argument: a mistake, exit 2 (as a configuration
 * error), before anything starts. The region's environment and the regions file configure it; it read no
 * argument, so `npm start -- --help` started a region.
 */
function answerArguments(args: readonly string[]): void {
  if (args.length === 0) return;
  // Anywhere among them, as the operator commands take it (scripts/usage.ts).
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  process.stderr.write(`npm start takes no arguments (got ${args.map((a) => `'${a}'`).join(' ')})\n${USAGE}\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  answerArguments(process.argv.slice(2));
  boundHeapGrowth();
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`configuration error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger({ level: config.logLevel, region: config.region.id });
  exitOnUnhandled(log);
  // In place before the start, which can wait on the database: as PID 1 of a container, node ignores a signal
  // it has no handler for, so a stop during the start would wait for the runtime's SIGKILL.
  let region: RunningRegion | null = null;
  let signals = 0;
  let interruptedAt: number | null = null;
  const onSignal = (sig: 'SIGTERM' | 'SIGINT') => {
    // A Ctrl-C reaches `npm run cluster` and its regions alike (one process group), and the cluster then sends
    // each region its SIGTERM: the same stop, not a second signal (which made every region of a cluster stopped
    // with Ctrl-C exit 1 at once, cutting its in-flight requests, instead of draining). Taken once only.
    if (sig === 'SIGTERM' && interruptedAt !== null && Date.now() - interruptedAt < SAME_STOP_MS) {
      interruptedAt = null;
      return;
    }
    signals += 1;
    if (signals > 1) process.exit(1);
    if (sig === 'SIGINT') interruptedAt = Date.now();
    log.info({ signal: sig }, 'signal received');
    // Nothing is served yet: nothing to drain. The status a shell gives a process the signal ended.
    if (!region) process.exit(128 + os.constants.signals[sig]);
    void region.stop().then(() => process.exit(0));
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  listenHost = config.region.host ?? '127.0.0.1';
  region = await startRegion(config, { log });
}

/**
 * How soon after a SIGINT a SIGTERM is the cluster's of the same Ctrl-C. The cluster sends it as soon as it
 * handles the Ctrl-C, but on a loaded host that can be later than a second: with 1 s, as it was, a CI run once
 * saw a region stopped with Ctrl-C leave its draining request unanswered, most likely a late SIGTERM counted
 * as a second signal (not reproduced since). Only one SIGTERM is taken so: a second
 * Ctrl-C (SIGINT), or the cluster's SIGTERM for one, still ends a draining region at once.
 */
const SAME_STOP_MS = 5_000;

/** The host the region listens on, for the message of a failed listen. */
let listenHost = '';

/** One line for a start that failed for the operator's reasons (a port, a host, the database); null: a bug. */
function startupFailure(err: Error & { code?: string; syscall?: string; address?: string; port?: number; hostname?: string }): string | null {
  if (err instanceof StartupError) return err.message;
  // A port already taken is the operator's to fix, not a bug: one line saying how, no stack.
  const why = listenProblem(err.code);
  if (err.code === 'EADDRINUSE') {
    return (
      `cannot listen on ${err.address ?? '?'}:${err.port ?? '?'}: ${why} (this region or an earlier cluster still running?). ` +
      'Stop that process, or give this region another port: "port" (or "operatorPort") of its entry in REGIONS_CONFIG, or PORT (OPERATOR_PORT) for this process.'
    );
  }
  if (err.syscall === 'listen' && why) {
    return `cannot listen on ${err.address ?? '?'}:${err.port ?? '?'}: ${why}. Set "host" and "port" of its entry in REGIONS_CONFIG, or HOST and PORT.`;
  }
  if (err.syscall === 'getaddrinfo' && err.hostname === listenHost) {
    return `cannot listen on ${listenHost}: the host name does not resolve (${err.code ?? 'unknown'}). Set "host" of its entry in REGIONS_CONFIG, or HOST.`;
  }
  return null;
}

main().catch((err: Error) => {
  const line = startupFailure(err);
  process.stderr.write(`fatal: ${line ?? err.stack ?? err.message}\n`);
  process.exit(1);
});
