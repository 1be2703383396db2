import { ConfigError } from '../src/config-error';

/** The operator commands' `--help`: their usage on stdout and exit 0 (a usage after a mistake goes to stderr, exit 2). */
export function answerHelp(args: readonly string[], usage: string): void {
  if (!args.includes('--help') && !args.includes('-h')) return;
  process.stdout.write(`${usage}\n`);
  process.exit(0);
}

/** A usage or configuration mistake exits 2, as `npm run cluster` and a region do; any other failure 1. */
export const failureStatus = (err: unknown): number => (err instanceof ConfigError ? 2 : 1);

/**
 * A reader of the command's output that goes away early (`| head`, a jq that failed on its filter) is not a
 * failure of the command: without this, the write's EPIPE was an uncaught error printed with Node's stack.
 */
export function quietOnClosedStdout(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
  });
}
