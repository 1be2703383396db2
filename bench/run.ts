/**
 * `npm run bench`: this service against an Express 5 + `pg` baseline in the same run (bench/throughput.ts).
 * Options: --seconds <s per autocannon run> (default 8), --warmup <s of unmeasured load before each> (default
 * 16), --n <sequential PATCHes per consistency level>
 * (default 200), --gap <ms between them, default 20; they also run back to back>, --backlog <changes> (default
 * 100000), --stored <credentials bulk-inserted first> (default 0), --packs off (the regions deliver one event per
 * inbox entry: config replicationPacks false).
 * `npm run bench -- latency` or `-- apply` runs only the all_regions latency or the backlog apply part;
 * `-- throughput [--ops read,patch,create]` only the throughput table (for the operations named).
 * `npm run bench -- stall` measures instead the event-loop stall of parsing the largest metadata documents;
 * `npm run bench -- overload` the answers, memory and admin latency of a flood of all_regions writes.
 */
import { runOverloadBench } from './overload';
import { runStallBench } from './stall';
import { runThroughputBench } from './throughput';

const argv = process.argv;
const bench = argv.includes('stall') ? runStallBench(argv) : argv.includes('overload') ? runOverloadBench(argv) : runThroughputBench(argv);
bench.catch((err: Error) => {
  process.stderr.write(`bench failed: ${err.message}\n`);
  process.exit(1);
});
