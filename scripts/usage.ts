/** The operator commands' `--help`: their usage on stdout and exit 0 (a usage after a mistake goes to stderr, exit 2). */
export function answerHelp(args: readonly string[], usage: string): void {
  if (!args.includes('--help') && !args.includes('-h')) return;
  process.stdout.write(`${usage}\n`);
  process.exit(0);
}
