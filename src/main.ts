/** Process entry point: one region (REGION) of the deployment in REGIONS_CONFIG. */
import v8 from 'node:v8';
import { ConfigError, loadConfig } from './config';
import { createLogger, type Logger } from './logger';
import { startRegion } from './region';

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

async function main(): Promise<void> {
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
  const region = await startRegion(config, { log });
  let signals = 0;
  const onSignal = (sig: string) => {
    signals += 1;
    if (signals > 1) process.exit(1);
    region.log.info({ signal: sig }, 'signal received');
    void region.stop().then(() => process.exit(0));
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
}

main().catch((err: Error & { code?: string; address?: string; port?: number }) => {
  // A port already taken is the operator's to fix, not a bug: one line saying how, no stack.
  if (err.code === 'EADDRINUSE') {
    process.stderr.write(
      `fatal: cannot listen on ${err.address ?? '?'}:${err.port ?? '?'}: the port is in use (this region or an earlier cluster still running?). ` +
        'Stop that process, or give this region another port: "port" (or "operatorPort") of its entry in REGIONS_CONFIG, or PORT (OPERATOR_PORT) for this process.\n',
    );
    process.exit(1);
  }
  process.stderr.write(`fatal: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
