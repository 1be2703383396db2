/** Process entry point: one region (REGION) of the deployment in REGIONS_CONFIG. */
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

async function main(): Promise<void> {
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

main().catch((err: Error) => {
  process.stderr.write(`fatal: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
