/**
 * `npm run bench -- stall`: the worst event-loop stall while parsing and validating the largest IdP metadata
 * documents the service accepts, and the hostile ones it refuses, through the worker pool the service uses
 * (perf_hooks' monitorEventLoopDelay: a 1 ms timer firing late by as long as the loop was blocked), and how
 * long one parse takes on the thread that runs it.
 * Options: --rounds <parses per document> (default 20).
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import os from 'node:os';
import { parseIdpMetadata } from '../src/metadata/parse-metadata';
import { ParsePool } from '../src/metadata/parse-pool';
import { hostile, largestAccepted } from './metadata-documents';

const NOW = new Date('2026-11-23T00:00:00Z');
const pause = () => new Promise((r) => setTimeout(r, 5));

const r1 = (x: number) => Math.round(x * 10) / 10;

/** How long one parse takes on the thread that runs it (the worker's work per document). */
function parseTimes(xml: string, rounds: number) {
  let outcome = 'accepted';
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t = performance.now();
    try {
      parseIdpMetadata(xml, { now: NOW });
    } catch (err) {
      outcome = `refused (${(err as { code?: string }).code ?? 'error'})`;
    }
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return { outcome, median_ms: r1(times[Math.floor(times.length / 2)] ?? NaN), max_ms: r1(times[times.length - 1] ?? NaN) };
}

/** The worst event-loop delay while the region's path (the worker pool) parses the document `rounds` times. */
async function loopStall(pool: ParsePool, xml: string, rounds: number): Promise<number> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  await pause();
  h.enable();
  for (let i = 0; i < rounds; i++) await pool.parse(xml, NOW).catch(() => undefined);
  await pause();
  h.disable();
  // The histogram's delay includes its own 1 ms resolution; what it adds over that is the stall.
  return r1(Math.max(0, h.max / 1e6 - 1));
}

export async function runStallBench(rounds: number): Promise<void> {
  const docs = Object.entries({ ...largestAccepted(), ...hostile() });
  // Every loop measurement first: garbage from parsing on this thread would be collected during them.
  const loop: number[] = [];
  const pool = new ParsePool();
  // The same measurement with nothing parsed: how late a timer fires on this machine anyway (load, GC).
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  for (let i = 0; i < rounds * 10; i++) await pause();
  h.disable();
  const noise = r1(Math.max(0, h.max / 1e6 - 1));
  try {
    for (const [, xml] of docs) loop.push(await loopStall(pool, xml, rounds));
  } finally {
    await pool.close();
  }
  const rows = Object.fromEntries(docs.map(([name, xml], i) => [name, { ...parseTimes(xml, rounds), chars: xml.length, loop_delay_max_ms: loop[i] ?? NaN }]));
  const worstAccepted = Math.max(...Object.values(rows).filter((x) => x.outcome === 'accepted').map((x) => x.loop_delay_max_ms));
  const worstAll = Math.max(...Object.values(rows).map((x) => x.loop_delay_max_ms));
  process.stdout.write(`\nParsing IdP metadata (${rounds} parses each; ${os.cpus().length} cores, node ${process.version})\n`);
  process.stdout.write('parse ms: one parse on the thread running it (a pool worker); loop delay: worst event-loop stall of the region while the pool parses\n');
  process.stdout.write('| document | chars | outcome | parse ms median | parse ms max | worst loop delay ms |\n|---|---|---|---|---|---|\n');
  for (const [name, x] of Object.entries(rows)) {
    process.stdout.write(`| ${name} | ${x.chars} | ${x.outcome} | ${x.median_ms} | ${x.max_ms} | ${x.loop_delay_max_ms} |\n`);
  }
  process.stdout.write(`\nworst event-loop stall: ${worstAccepted} ms for an accepted document, ${worstAll} ms for any; ${noise} ms with nothing parsed (load avg ${os.loadavg()[0]?.toFixed(1)})\n`);
  process.stdout.write(`${JSON.stringify({ date: new Date().toISOString(), rounds, worst_accepted_ms: worstAccepted, worst_any_ms: worstAll, idle_noise_ms: noise, load_average: os.loadavg()[0], documents: rows })}\n`);
}
