/** Process entry point: one region (REGION) of the deployment in REGIONS_CONFIG. */
import { ConfigError, loadConfig } from './config';
import { startRegion } from './region';

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
  const region = await startRegion(config);
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
