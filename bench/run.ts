/**
 * `npm run bench`: this service against an Express 5 + `pg` baseline in the same run (bench/throughput.ts).
 * Options: --seconds <measured s per side and operation> (default 8), --rounds <interleaved slices they are
 * taken in, the sides alternating> (default 4; 1: one run per side, in turn), --warmup <s of unmeasured load
 * before each side's slices> (default 16), --n <sequential PATCHes per consistency level>
 * (default 200), --gap <ms between them, default 20; they also run back to back>, --backlog <changes> (default
 * 100000), --stored <credentials bulk-inserted first> (default 0), --packs off (the regions deliver one event per
 * inbox entry: config replicationPacks false).
 * `npm run bench -- latency` or `-- apply` runs only the all_regions latency or the backlog apply part;
 * `-- throughput [--ops read,patch,create]` only the throughput table (for the operations named).
 * `npm run bench -- stall` measures instead the event-loop stall of parsing the largest metadata documents;
 * `npm run bench -- overload` the answers, memory and admin latency of a flood of all_regions writes.
 * The full run ends with the overload bench's 10,000 waiters (WAITERS_ARGS; `--waiters off` leaves it out).
 */
import { overload, runOverloadBench, WAITERS_ARGS, waitersLine } from './overload';
import { runStallBench } from './stall';
import { runThroughputBench } from './throughput';

const argv = process.argv;
const part = ['stall', 'overload', 'latency', 'apply', 'throughput'].some((p) => argv.includes(p));
const waiters = !part && !(argv.includes('--waiters') && argv[argv.indexOf('--waiters') + 1] === 'off');

async function full(): Promise<void> {
  await runThroughputBench(argv);
  if (!waiters) return;
  // A deployment of its own, after the other parts: the flood's memory is the region's alone.
  process.stdout.write(`\n${waitersLine(await overload(WAITERS_ARGS))}`);
}

const bench = argv.includes('stall') ? runStallBench(argv) : argv.includes('overload') ? runOverloadBench(argv) : full();
bench.catch((err: Error) => {
  process.stderr.write(`bench failed: ${err.message}\n`);
  process.exit(1);
});
