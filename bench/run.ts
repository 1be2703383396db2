/**
 * `npm run bench`: latency of local_region vs all_regions creates on three local regions (separate
 * processes, own databases, one Redis), plus throughput under concurrency. Prints a table and JSON.
 * Options: --n <creates per level> (default 500), --concurrency <clients> (default 16), --seconds <s> (default 5).
 * `npm run bench -- stall` measures instead the event-loop stall of parsing the largest metadata documents;
 * `npm run bench -- overload` the answers, memory and admin latency of a flood of all_regions writes.
 */
import os from 'node:os';
import { benchDeployment } from './deployment';
import { runOverloadBench } from './overload';
import { runStallBench } from './stall';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const N = arg('n', 500);
const CONCURRENCY = arg('concurrency', 16);
const SECONDS = arg('seconds', 5);
const PATH = '/organizations/sso/saml/provider-credentials';

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

function summary(ms: number[]) {
  const s = [...ms].sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 100) / 100;
  return { n: s.length, p50: r(percentile(s, 50)), p90: r(percentile(s, 90)), p99: r(percentile(s, 99)), max: r(s[s.length - 1] ?? NaN) };
}

async function main(): Promise<void> {
  // One organization drives the whole load: lift the per-org quotas that would otherwise refuse it.
  const { procs, adminToken, idpHost, cleanup } = await benchDeployment({
    extra: { maxCredentialsPerOrg: 100_000, metadataFetchConcurrency: { perOrg: 100, perRegion: 1000 } },
  });
  try {
    for (const p of procs) p.start();
    await Promise.all(procs.map((p) => p.waitReady(60_000)));
    const orgRes = await fetch(`${procs[0]?.url}/admin/organizations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json', 'SlashID-Required-Consistency': 'all_regions' },
      body: JSON.stringify({ name: 'bench' }),
    });
    const org = (await orgRes.json()) as { id: string; api_key: string };
    const create = async (region: number, level: string) => {
      const t = performance.now();
      const res = await fetch(`${procs[region % procs.length]?.url}${PATH}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'SlashID-OrgID': org.id, 'SlashID-API-Key': org.api_key, 'SlashID-Required-Consistency': level },
        body: JSON.stringify({ idp_metadata_url: `http://${idpHost}/okta.xml`, label: 'bench' }),
      });
      await res.arrayBuffer();
      if (res.status !== 201) throw new Error(`create answered ${res.status}`);
      return performance.now() - t;
    };
    // Warm up connections, JIT and pools.
    for (let i = 0; i < 60; i++) await create(i, i % 2 ? 'all_regions' : 'local_region');

    const latency: Record<string, ReturnType<typeof summary>> = {};
    for (const level of ['local_region', 'all_regions']) {
      const ms: number[] = [];
      for (let i = 0; i < N; i++) ms.push(await create(i, level));
      latency[level] = summary(ms);
    }
    const throughput: Record<string, { requests_per_second: number; p50: number; p99: number }> = {};
    for (const level of ['local_region', 'all_regions']) {
      const ms: number[] = [];
      const until = performance.now() + SECONDS * 1000;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async (_, c) => {
          for (let i = c; performance.now() < until; i += CONCURRENCY) ms.push(await create(i, level));
        }),
      );
      const s = summary(ms);
      throughput[level] = { requests_per_second: Math.round(ms.length / SECONDS), p50: s.p50, p99: s.p99 };
    }
    const report = { date: new Date().toISOString(), machine: `${os.cpus().length} cores, node ${process.version}`, creates_per_level: N, concurrency: CONCURRENCY, latency_ms: latency, throughput };
    process.stdout.write('\nSequential creates, latency in ms (3 regions on loopback, includes the IdP metadata fetch)\n');
    process.stdout.write('| level | n | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|\n');
    for (const [level, s] of Object.entries(latency)) process.stdout.write(`| ${level} | ${s.n} | ${s.p50} | ${s.p90} | ${s.p99} | ${s.max} |\n`);
    process.stdout.write(`\n${CONCURRENCY} concurrent clients for ${SECONDS} s\n| level | req/s | p50 | p99 |\n|---|---|---|---|\n`);
    for (const [level, t] of Object.entries(throughput)) process.stdout.write(`| ${level} | ${t.requests_per_second} | ${t.p50} | ${t.p99} |\n`);
    process.stdout.write(`\n${JSON.stringify(report)}\n`);
  } finally {
    await cleanup();
  }
}

// `npm run bench -- stall`: the event-loop stall of parsing the largest metadata documents (bench/stall.ts).
// `npm run bench -- overload`: issue 16's overload scenario (bench/overload.ts).
const bench = process.argv.includes('stall') ? runStallBench(process.argv) : process.argv.includes('overload') ? runOverloadBench(process.argv) : main();
bench.catch((err: Error) => {
  process.stderr.write(`bench failed: ${err.message}\n`);
  process.exit(1);
});
