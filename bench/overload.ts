/**
 * `npm run bench -- overload`: issue 16's scenario. Three regions (separate processes), asia-japan paused
 * with SIGSTOP, then N concurrent PATCHes with all_regions to us-iowa rotating over 64 credentials.
 * Prints the answers by status (and whether every 503 carried Retry-After), us-iowa's idle RSS and its peak
 * above idle, the all_regions waiters reached, and how long /admin/replication took to answer during the load:
 * on us-iowa's operator port (src/operator/listener.ts; what operators should watch under overload) and on its
 * region port, each polled every 250 ms by a process of its own (bench/admin-poller.ts).
 * Options: --n <requests> (default 10000), --timeout <s> (default 120), --resume-after <s> (resume the paused
 * region after this long; default: never, so admitted writes answer 408), --writes-queue <n>,
 * --writes-queue-wait <ms> (us-iowa's write gate), --credentials <n> (default 64).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { forEachLine, type RegionProcess } from '../src/cluster/region-process';
import { PROJECT_ROOT } from '../src/paths';
import { benchDeployment } from './deployment';
import type { OverloadOptions } from './options';

const PATH = '/organizations/sso/saml/provider-credentials';


/** Resident set size of a process (MB), from /proc. */
function rssMb(pid: number | undefined): number {
  if (!pid || !fs.existsSync(`/proc/${pid}/status`)) return NaN;
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Connections the process holds to Redis (port 6379), from /proc/net/tcp and its fds. */
function redisConnections(pid: number | undefined): number {
  if (!pid) return NaN;
  const inodes = new Set<string>();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    let link = '';
    try {
      link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`, { encoding: 'utf8' });
    } catch {
      continue; // closed meanwhile
    }
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m?.[1]) inodes.add(m[1]);
  }
  let n = 0;
  for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols[2]?.endsWith(':18EB') && cols[3] === '01' && inodes.has(cols[9] ?? '')) n++;
  }
  return n;
}

function percentiles(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN);
  return { p50: at(0.5), p99: at(0.99), max: Math.round(sorted[sorted.length - 1] ?? NaN) };
}

/** Times GET /admin/replication at `url` from a process of its own (bench/admin-poller.ts). */
function startPoller(url: string, adminToken: string) {
  const ms: number[] = [];
  let failures = 0;
  let waitersPeak = 0;
  const poller = spawn(process.execPath, [path.join(PROJECT_ROOT, 'dist', 'bench', 'admin-poller.js'), url, adminToken], { stdio: ['ignore', 'pipe', 'inherit'] });
  const done = new Promise((r) => poller.once('exit', r));
  forEachLine(poller.stdout, (line) => {
    const a = JSON.parse(line) as { ms: number; status: number; waiting: number | null };
    ms.push(a.ms);
    if (a.status !== 200) failures++;
    waitersPeak = Math.max(waitersPeak, a.waiting ?? 0);
  });
  return {
    get waitersPeak() {
      return waitersPeak;
    },
    async stop() {
      poller.kill('SIGTERM');
      await done;
      return { polls: ms.length, ms: percentiles(ms), over_1s: ms.filter((x) => x > 1000).length, failures };
    },
  };
}

interface Answer {
  status: number;
  retryAfter: boolean;
  /** Why no answer came (status -1): the error code, or 'client timeout'. */
  error?: string;
  /**
   * How long the TCP connection took to be established (NaN: never). When the listening socket's queues
   * overflow, the kernel drops SYNs and the client retries them 1, 3, 7, 15, 31… s later.
   */
  connectMs: number;
}

/**
 * How much longer than the consistency timeout a client waits for its answer (s). The region's deadline starts
 * when it has read the request; on a loaded host, with 10,000 connections opening at once, that can be tens of
 * seconds after the client wrote it (the 17:03 run of 2026-12-05: 86 of 10,000 gave up at the former 30 s).
 */
const CLIENT_MARGIN_S = 120;

/** One request on its own connection (no pooling: N sockets at once, as N clients would). */
function send(agent: http.Agent, url: string, method: string, headers: Record<string, string>, body: string, timeoutMs: number): Promise<Answer> {
  return new Promise((resolve) => {
    const sent = performance.now();
    let connectMs = NaN;
    const failed = (err: Error & { code?: string }): Answer => ({ status: -1, retryAfter: false, error: err.code ?? err.message, connectMs });
    const req = http.request(url, { method, agent, headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] !== undefined, connectMs }));
      res.on('error', (err) => resolve(failed(err)));
    });
    req.once('socket', (socket) => socket.once('connect', () => (connectMs = performance.now() - sent)));
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', (err) => resolve(failed(err)));
    req.end(body);
  });
}

export async function runOverloadBench(o: OverloadOptions): Promise<void> {
  const report = await overload(o);
  process.stdout.write(`\nOverload: ${report.requests} concurrent all_regions PATCHes to us-iowa, asia-japan paused${report.resumed_after_s === null ? '' : ` (resumed after ${report.resumed_after_s} s)`}\n`);
  for (const [k, v] of Object.entries(report)) process.stdout.write(`  ${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}\n`);
  process.stdout.write(`\n${JSON.stringify(report)}\n`);
}

/** One line for `npm run bench`'s summary. */
export function waitersLine(r: Awaited<ReturnType<typeof overload>>): string {
  return (
    `${r.requests} concurrent all_regions PATCHes to one region (${r.waiters_peak} waiting at once at the peak): RSS +${r.rss_peak_above_idle_mb} MB above ${r.rss_idle_mb} MB idle ` +
    `(target ≤ 200 MB), Redis connections ${r.redis_connections_idle} → ${r.redis_connections_peak} (target: constant); answers ${JSON.stringify(r.answers_by_status)}` +
    // A request with no HTTP answer says why (an error code, 'client timeout') and when it connected.
    (r.client_errors_no_answer > 0
      ? ` (no answer: ${JSON.stringify(r.client_errors_by_cause)}, ${r.client_errors_connected_after_30s_or_never} connected after 30 s or never; connect ms ${JSON.stringify(r.connect_ms)})`
      : '') +
    `; load avg ${r.machine.replace(/.*load average /, '')}\n`
  );
}

export async function overload(o: OverloadOptions) {
  const { n: N, timeout: TIMEOUT, resumeAfter: RESUME_AFTER, credentials: CREDENTIALS, writesQueue, writesQueueWait, ackSignatures } = o;
  let unhandled = 0;
  const deployment = await benchDeployment({
    operatorPorts: true,
    extra: {
      ackSignatures,
      ...(writesQueue !== undefined || writesQueueWait !== undefined
        ? { admission: { writes: { ...(writesQueue !== undefined ? { queue: writesQueue } : {}), ...(writesQueueWait !== undefined ? { queueWaitMs: writesQueueWait } : {}) } } }
        : {}),
    },
    onLine: (line) => {
      if (/unhandled error/.test(line)) unhandled++;
    },
  });
  const { file, procs, adminToken, idpHost, operatorUrls } = deployment;
  const [iowa, , japan] = procs as [RegionProcess, RegionProcess, RegionProcess];
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const cleanup = async () => {
    japan.resume();
    await deployment.cleanup();
    agent.destroy();
  };
  try {
    for (const p of procs) p.start();
    await Promise.all(procs.map((p) => p.waitReady(120_000)));
    const admin = { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' };
    const org = (await (await fetch(`${iowa.url}/admin/organizations`, { method: 'POST', headers: { ...admin, 'SlashID-Required-Consistency': 'all_regions' }, body: JSON.stringify({ name: 'overload' }) })).json()) as { id: string; api_key: string };
    const auth = { 'content-type': 'application/json', 'SlashID-OrgID': org.id, 'SlashID-API-Key': org.api_key };
    const ids: string[] = [];
    for (let i = 0; i < CREDENTIALS; i++) {
      const res = await fetch(`${iowa.url}${PATH}`, { method: 'POST', headers: { ...auth, 'SlashID-Required-Consistency': 'all_regions' }, body: JSON.stringify({ idp_metadata_url: `http://${idpHost}/okta.xml`, label: `c${i}` }) });
      const body = (await res.json()) as { result: { id: string } };
      if (res.status !== 201) throw new Error(`create answered ${res.status}`);
      ids.push(body.result.id);
    }
    await new Promise((r) => setTimeout(r, 3000));
    const idle = rssMb(iowa.pid);
    const redisIdle = redisConnections(iowa.pid);

    japan.pause();
    let peak = idle;
    let redisPeak = redisIdle;
    const rssTimer = setInterval(() => {
      try {
        peak = Math.max(peak, rssMb(iowa.pid) || 0);
        redisPeak = Math.max(redisPeak, redisConnections(iowa.pid) || 0);
      } catch {
        // the process went away: the answers will say so
      }
    }, 200);
    // The admin route is timed from processes of their own: this one is busy sending.
    const operatorPoller = startPoller(operatorUrls[0] as string, adminToken);
    const regionPortPoller = startPoller(iowa.url, adminToken);
    const resumeTimer = RESUME_AFTER === undefined ? null : setTimeout(() => japan.resume(), RESUME_AFTER * 1000);
    const started = performance.now();
    const answers = await Promise.all(
      Array.from({ length: N }, (_, i) =>
        send(agent, `${iowa.url}${PATH}/${ids[i % ids.length]}`, 'PATCH', {
          ...auth, 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': String(TIMEOUT),
        }, JSON.stringify({ label: `r${i}` }), (TIMEOUT + CLIENT_MARGIN_S) * 1000),
      ),
    );
    const seconds = (performance.now() - started) / 1000;
    clearInterval(rssTimer);
    if (resumeTimer) clearTimeout(resumeTimer);
    const waitersPeak = operatorPoller.waitersPeak;
    const [onOperatorPort, onRegionPort] = await Promise.all([operatorPoller.stop(), regionPortPoller.stop()]);

    const byStatus: Record<string, number> = {};
    for (const a of answers) byStatus[a.status] = (byStatus[a.status] ?? 0) + 1;
    const refused = answers.filter((a) => a.status === 503);
    const report = {
      date: new Date().toISOString(),
      machine: `${os.cpus().length} cores, node ${process.version}, load average ${os.loadavg()[0]?.toFixed(1)}`,
      requests: N,
      timeout_s: TIMEOUT,
      resumed_after_s: RESUME_AFTER ?? null,
      write_gate: file.admission?.writes ?? 'defaults',
      seconds: Math.round(seconds),
      answers_by_status: byStatus,
      answers_5xx_other_than_503: answers.filter((a) => a.status >= 500 && a.status !== 503).length,
      answers_503_without_retry_after: refused.filter((a) => !a.retryAfter).length,
      client_errors_no_answer: byStatus['-1'] ?? 0,
      client_errors_by_cause: answers.reduce<Record<string, number>>((acc, a) => (a.error ? { ...acc, [a.error]: (acc[a.error] ?? 0) + 1 } : acc), {}),
      // A client whose SYNs were dropped connects seconds later, and then may wait the whole consistency timeout.
      client_errors_connected_after_30s_or_never: answers.filter((a) => a.status === -1 && !(a.connectMs <= 30_000)).length,
      connect_ms: percentiles(answers.map((a) => a.connectMs).filter((ms) => !Number.isNaN(ms))),
      unhandled_errors_logged: unhandled,
      rss_idle_mb: Math.round(idle),
      rss_peak_above_idle_mb: Math.round(peak - idle),
      redis_connections_idle: redisIdle,
      redis_connections_peak: redisPeak,
      waiters_peak: waitersPeak,
      admin_replication_operator_port: onOperatorPort,
      admin_replication_region_port: onRegionPort,
    };
    return report;
  } finally {
    await cleanup();
  }
}
