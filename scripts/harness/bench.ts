/**
 * `npm run harness -- bench`: what all_regions costs over local_region, at a given round trip between
 * regions. On a fresh harness stack (each region a host with its own Postgres and Redis; `--shared-redis`:
 * one Redis host for all, the topology before) every region in turn creates organizations one after
 * another, alternating the two consistency levels, with a pause after each write long enough for it to have
 * replicated everywhere (--gap); the figure is p50(all_regions) − p50(local_region) per
 * region and over all, against the bound 1.3 × RTT (one direct round trip is the floor: the change goes to
 * each other region's Redis, its ack comes back to the origin's). Exits 1 when the bound is missed.
 */
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import os from 'node:os';
import { adminHeaders, createOrg, percentile, RegionClient } from './client';
import { answerHelp } from '../usage';
import { ackSignaturesFlag, intFlag, log, numFlag, parseFlags, refuseArguments, requireRoot, UsageError } from './common';
import { DEFAULT_REGIONS, Stack } from './stack';

const USAGE = `usage: npm run harness -- bench [options]
  --rtt MS          round trip between any two hosts (each host's one-way delay is half of it; default 30)
  --regions N       number of regions, 2..8 (default 3)
  --writes N        writes per region and level (default 100)
  --shared-redis    one Redis host for every region (its delay is half the RTT too), for comparison
  --bound F         fail when the difference exceeds F x RTT (default 1.3)
  --gap MS          pause after each write (default 2 x RTT + 50 ms: the write has replicated everywhere
                    before the next starts, so both levels are timed on a quiet deployment; with 0 every
                    all_regions write competes with the replication of the local_region write just before it)
  --ack-signatures M  the regions' config ackSignatures: off, sign or require (default require)
  --report PATH     also write the figures as JSON to PATH
`;

interface Figures {
  region: string;
  localP50: number;
  allP50: number;
  localP99: number;
  allP99: number;
  diffP50: number;
}

const ms = (n: number) => Math.round(n * 10) / 10;

function figures(region: string, local: number[], all: number[]): Figures {
  const l = [...local].sort((a, b) => a - b);
  const a = [...all].sort((x, y) => x - y);
  const localP50 = percentile(l, 50);
  const allP50 = percentile(a, 50);
  return { region, localP50: ms(localP50), allP50: ms(allP50), localP99: ms(percentile(l, 99)), allP99: ms(percentile(a, 99)), diffP50: ms(allP50 - localP50) };
}

async function timedCreate(c: RegionClient, token: string, name: string, level: 'local_region' | 'all_regions'): Promise<number> {
  const t0 = performance.now();
  const res = await c.call('POST', '/admin/organizations', {
    body: { name },
    headers: adminHeaders(token, { 'SlashID-Required-Consistency': level, 'SlashID-Required-Consistency-Timeout': '10' }),
  });
  const elapsed = performance.now() - t0;
  if (res.status !== 201) throw new Error(`${level} create in ${c.region}: ${res.status} ${JSON.stringify(res.body)}`);
  return elapsed;
}

export async function bench(argv: string[]): Promise<number> {
  // -h as well as --help: a word that is not an option was dropped, and `bench -h` ran the benchmark.
  answerHelp(argv, USAGE.trimEnd());
  const { flags, positional } = parseFlags(argv, ['rtt', 'regions', 'writes', 'bound', 'report', 'gap', 'ack-signatures'], ['shared-redis']);
  refuseArguments(positional);
  const rtt = numFlag(flags, 'rtt', 30, 0, 10_000);
  const n = intFlag(flags, 'regions', 3, 2, 8);
  const writes = intFlag(flags, 'writes', 100, 1, 100_000);
  const bound = numFlag(flags, 'bound', 1.3, 0);
  const sharedRedis = flags.has('shared-redis');
  const gap = numFlag(flags, 'gap', 2 * rtt + 50, 0, 60_000);
  if (rtt < 0) throw new UsageError('--rtt must be >= 0');
  requireRoot('npm run harness -- bench');
  const regions = Array.from({ length: n }, (_, i) => ({ id: DEFAULT_REGIONS[i]?.id ?? `region-${i + 1}`, delayMs: rtt / 2 }));
  const stack = await Stack.up({ regions, redisDelayMs: rtt / 2, jitterMs: 0, redisAppendOnly: false, sharedRedis, ackSignatures: ackSignaturesFlag(flags), logLevel: 'warn', say: log });
  const clients = stack.regionIds.map((r) => new RegionClient(r, stack.regionUrl(r), 1));
  try {
    const first = clients[0];
    if (!first) throw new Error('no regions');
    await createOrg(first, stack.adminToken, `bench-${stack.runId}`);
    log(`bench: ${writes} writes per region and level, ${rtt} ms RTT, ${sharedRedis ? 'one shared Redis' : 'a Redis per region'}, ${gap} ms between writes`);
    const per: Figures[] = [];
    const allLocal: number[] = [];
    const allAll: number[] = [];
    // Warm-up of every region before anything is timed: connections to every Redis and database are open,
    // and every region's write and apply paths have run (a region's first timed writes are applied by the
    // others, so warming each region just before its own turn timed the first one against cold appliers).
    for (const c of clients) {
      for (let i = 0; i < 20; i++) await timedCreate(c, stack.adminToken, `warm ${i}`, i % 2 ? 'all_regions' : 'local_region');
    }
    for (const c of clients) {
      const local: number[] = [];
      const all: number[] = [];
      for (let i = 0; i < writes; i++) {
        local.push(await timedCreate(c, stack.adminToken, `local ${i}`, 'local_region'));
        await sleep(gap);
        all.push(await timedCreate(c, stack.adminToken, `all ${i}`, 'all_regions'));
        await sleep(gap);
      }
      allLocal.push(...local);
      allAll.push(...all);
      per.push(figures(c.region, local, all));
    }
    const overall = figures('all regions', allLocal, allAll);
    const limit = ms(bound * rtt);
    const ok = overall.diffP50 <= limit;
    const load = os.loadavg().map((x) => x.toFixed(2)).join(' ');
    const lines = [...per, overall].map(
      (f) => `  ${f.region.padEnd(16)} local_region p50 ${f.localP50} ms (p99 ${f.localP99})  all_regions p50 ${f.allP50} ms (p99 ${f.allP99})  difference p50 ${f.diffP50} ms`,
    );
    process.stdout.write(
      `\nconsistency latency, run ${stack.runId}: ${n} regions, RTT ${rtt} ms, ${sharedRedis ? 'one shared Redis' : 'a Redis per region'}, ` +
        `${writes} writes per region and level, ${gap} ms between writes, ${os.cpus().length} CPUs, load average ${load}\n${lines.join('\n')}\n` +
        `all_regions - local_region p50: ${overall.diffP50} ms (bound ${bound} x RTT = ${limit} ms)\nRESULT: ${ok ? 'PASS' : 'FAIL'}\n`,
    );
    const report = flags.get('report');
    if (report) fs.writeFileSync(report, JSON.stringify({ ok, rttMs: rtt, regions: n, writes, gapMs: gap, sharedRedis, boundMs: limit, loadAverage: os.loadavg(), perRegion: per, overall }, null, 2) + '\n');
    return ok ? 0 : 1;
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}
