/**
 * `npm run bench -- overload`: issue 16's scenario. Three regions (separate processes), asia-japan paused
 * with SIGSTOP, then N concurrent PATCHes with all_regions to us-iowa rotating over 64 credentials.
 * Prints the answers by status (and whether every 503 carried Retry-After), us-iowa's idle RSS and its peak
 * above idle, the all_regions waiters reached, and how long /admin/replication took to answer during the load
 * (polled every 250 ms by a process of its own, bench/admin-poller.ts).
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

const PATH = '/organizations/sso/saml/provider-credentials';

function arg(argv: string[], name: string): number | undefined {
  const i = argv.indexOf(`--${name}`);
  return i > 0 ? Number(argv[i + 1]) : undefined;
}

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

interface Answer {
  status: number;
  retryAfter: boolean;
}

/** One request on its own connection (no pooling: N sockets at once, as N clients would). */
function send(agent: http.Agent, url: string, method: string, headers: Record<string, string>, body: string, timeoutMs: number): Promise<Answer> {
  return new Promise((resolve) => {
    const req = http.request(url, { method, agent, headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] !== undefined }));
      res.on('error', () => resolve({ status: -1, retryAfter: false }));
    });
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', () => resolve({ status: -1, retryAfter: false }));
    req.end(body);
  });
}

export async function runOverloadBench(argv: string[]): Promise<void> {
  const N = arg(argv, 'n') ?? 10_000;
  const TIMEOUT = arg(argv, 'timeout') ?? 120;
  const RESUME_AFTER = arg(argv, 'resume-after');
  const CREDENTIALS = arg(argv, 'credentials') ?? 64;
  const writesQueue = arg(argv, 'writes-queue');
  const writesQueueWait = arg(argv, 'writes-queue-wait');
  let unhandled = 0;
  const deployment = await benchDeployment({
    extra:
      writesQueue !== undefined || writesQueueWait !== undefined
        ? { admission: { writes: { ...(writesQueue !== undefined ? { queue: writesQueue } : {}), ...(writesQueueWait !== undefined ? { queueWaitMs: writesQueueWait } : {}) } } }
        : {},
    onLine: (line) => {
      if (/unhandled error/.test(line)) unhandled++;
    },
  });
  const { file, procs, adminToken, idpHost } = deployment;
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
    let waitersPeak = 0;
    let adminFailures = 0;
    const rssTimer = setInterval(() => {
      try {
        peak = Math.max(peak, rssMb(iowa.pid) || 0);
        redisPeak = Math.max(redisPeak, redisConnections(iowa.pid) || 0);
      } catch {
        // the process went away: the answers will say so
      }
    }, 200);
    // The admin route is timed from a process of its own (bench/admin-poller.ts): this one is busy sending.
    const adminMs: number[] = [];
    const poller = spawn(process.execPath, [path.join(PROJECT_ROOT, 'dist', 'bench', 'admin-poller.js'), iowa.url, adminToken], { stdio: ['ignore', 'pipe', 'inherit'] });
    const pollerDone = new Promise((r) => poller.once('exit', r));
    forEachLine(poller.stdout, (line) => {
      const a = JSON.parse(line) as { ms: number; status: number; waiting: number | null };
      adminMs.push(a.ms);
      if (a.status !== 200) adminFailures++;
      waitersPeak = Math.max(waitersPeak, a.waiting ?? 0);
    });
    const resumeTimer = RESUME_AFTER === undefined ? null : setTimeout(() => japan.resume(), RESUME_AFTER * 1000);
    const started = performance.now();
    const answers = await Promise.all(
      Array.from({ length: N }, (_, i) =>
        send(agent, `${iowa.url}${PATH}/${ids[i % ids.length]}`, 'PATCH', {
          ...auth, 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': String(TIMEOUT),
        }, JSON.stringify({ label: `r${i}` }), (TIMEOUT + 30) * 1000),
      ),
    );
    const seconds = (performance.now() - started) / 1000;
    clearInterval(rssTimer);
    if (resumeTimer) clearTimeout(resumeTimer);
    poller.kill('SIGTERM');
    await pollerDone;
    const sortedAdmin = [...adminMs].sort((a, b) => a - b);
    const adminAt = (q: number) => sortedAdmin[Math.min(sortedAdmin.length - 1, Math.floor(q * sortedAdmin.length))] ?? NaN;

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
      unhandled_errors_logged: unhandled,
      rss_idle_mb: Math.round(idle),
      rss_peak_above_idle_mb: Math.round(peak - idle),
      redis_connections_idle: redisIdle,
      redis_connections_peak: redisPeak,
      waiters_peak: waitersPeak,
      admin_replication_polls: adminMs.length,
      admin_replication_ms: { p50: adminAt(0.5), p99: adminAt(0.99), max: sortedAdmin[sortedAdmin.length - 1] ?? NaN },
      admin_replication_over_1s: adminMs.filter((ms) => ms > 1000).length,
      admin_replication_failures: adminFailures,
    };
    process.stdout.write(`\nOverload: ${N} concurrent all_regions PATCHes to us-iowa, asia-japan paused${RESUME_AFTER === undefined ? '' : ` (resumed after ${RESUME_AFTER} s)`}\n`);
    for (const [k, v] of Object.entries(report)) process.stdout.write(`  ${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}\n`);
    process.stdout.write(`\n${JSON.stringify(report)}\n`);
  } finally {
    await cleanup();
  }
}
