/**
 * A preload for region processes that records where their memory goes (how docs/performance.md's overload
 * traces were taken). Nothing happens unless MEMORY_TRACE_REGION names the region (REGION) of the process:
 *
 *   MEMORY_TRACE_REGION=us-iowa MEMORY_TRACE_FILE=/tmp/iowa.jsonl \
 *     NODE_OPTIONS="--require ./dist/bench/memory-trace.js" node dist/bench/run.js overload
 *
 * Every 100 ms (when the event loop lets the timer run: gaps are stretches the loop was busy) one JSON line
 * with RSS, the V8 heap and its spaces (used and committed MB) and the open handles; one line per V8
 * collection (minor, major, incremental, weakcb; its pause in ms). With
 * MEMORY_TRACE_SNAPSHOT_AFTER_MS, a heap snapshot that long after the first 200 open handles (the flood),
 * next to the trace file.
 */
import fs from 'node:fs';
import { PerformanceObserver, constants, type PerformanceEntry } from 'node:perf_hooks';
import v8 from 'node:v8';
import { isMainThread } from 'node:worker_threads';

const MB = 1024 * 1024;

function start(): void {
  const file = process.env.MEMORY_TRACE_FILE ?? `/tmp/memory-trace-${process.env.REGION}-${process.pid}.jsonl`;
  const out = fs.openSync(file, 'w');
  const write = (o: object) => fs.writeSync(out, `${JSON.stringify(o)}\n`);
  const t0 = Date.now();
  const kinds: Record<number, string> = {
    [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
    [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
    [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
    [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
  };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind ?? -1;
      write({ t: Math.round(e.startTime + performance.timeOrigin - t0), gc: kinds[kind] ?? kind, ms: Math.round(e.duration) });
    }
  }).observe({ entryTypes: ['gc'] });
  const snapshotAfter = Number(process.env.MEMORY_TRACE_SNAPSHOT_AFTER_MS ?? NaN);
  let snapshotScheduled = false;
  setInterval(() => {
    const m = process.memoryUsage();
    // Not in @types/node: the handles (sockets, timers, servers) keeping the loop alive.
    const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().length;
    const spaces = Object.fromEntries(
      v8.getHeapSpaceStatistics().map((s) => [s.space_name, [Math.round(s.space_used_size / MB), Math.round(s.physical_space_size / MB)]]),
    );
    write({ t: Date.now() - t0, rss: Math.round(m.rss / MB), heapTotal: Math.round(m.heapTotal / MB), heapUsed: Math.round(m.heapUsed / MB), external: Math.round(m.external / MB), handles, spaces });
    if (!Number.isNaN(snapshotAfter) && !snapshotScheduled && handles >= 200) {
      snapshotScheduled = true;
      setTimeout(() => write({ t: Date.now() - t0, snapshot: v8.writeHeapSnapshot(`${file}.heapsnapshot`) }), snapshotAfter);
    }
  }, 100).unref();
}

if (isMainThread && process.env.MEMORY_TRACE_REGION && process.env.MEMORY_TRACE_REGION === process.env.REGION) start();
