/**
 * `npm run bench`: this service against an Express 5 + `pg` baseline in the same run (bench/throughput.ts),
 * then J's 10,000 waiters (bench/overload.ts); or one part. The options are in bench/options.ts
 * (`npm run bench -- --help`).
 */
import { BenchUsageError, parseBenchArgs, USAGE, WAITERS, type BenchCommand } from './options';
import { overload, runOverloadBench, waitersLine } from './overload';
import { runStallBench } from './stall';
import { runThroughputBench } from './throughput';

async function run(cmd: BenchCommand): Promise<void> {
  switch (cmd.part) {
    case 'help':
      process.stdout.write(USAGE);
      return;
    case 'stall':
      return runStallBench(cmd.rounds);
    case 'overload':
      return runOverloadBench(cmd.overload);
    case 'throughput':
    case 'latency':
    case 'apply':
      return runThroughputBench(cmd.throughput);
    case 'full':
      await runThroughputBench(cmd.throughput);
      // A deployment of its own, after the other parts: the flood's memory is the region's alone.
      if (cmd.waiters) process.stdout.write(`\n${waitersLine(await overload({ ...WAITERS, ackSignatures: cmd.throughput.ackSignatures }))}`);
  }
}

let cmd: BenchCommand;
try {
  cmd = parseBenchArgs(process.argv.slice(2));
} catch (err) {
  if (!(err instanceof BenchUsageError)) throw err;
  process.stderr.write(`npm run bench: ${err.message}\n\n${USAGE}`);
  process.exit(2);
}
run(cmd).catch((err: Error) => {
  process.stderr.write(`bench failed: ${err.message}\n`);
  process.exit(1);
});
