/**
 * `npm run bench -- overload`: issue 16's scenario. Three regions (separate processes), asia-japan paused
 * with SIGSTOP, then N concurrent PATCHes with all_regions to us-iowa rotating over 64 credentials.
 * Prints the answers by status (and whether every 503 carried Retry-After), us-iowa's idle RSS and its peak
 * above idle, the all_regions waiters reached, and the slowest /admin/replication answer during the load.
 * Options: --n <requests> (default 10000), --timeout <s> (default 120), --resume-after <s> (resume the paused
 * region after this long; default: never, so admitted writes answer 408), --writes-queue <n>,
 * --writes-queue-wait <ms> (us-iowa's write gate), --credentials <n> (default 64).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { RegionProcess } from '../src/cluster/region-process';
import type { ConfigFile } from '../src/config';
import { dropDatabase } from '../src/db/migrate';
import { PROJECT_ROOT } from '../src/paths';

const REGIONS = ['us-iowa', 'europe-belgium', 'asia-japan'];
const PATH = '/organizations/sso/saml/provider-credentials';

function arg(argv: string[], name: string): number | undefined {
  const i = argv.indexOf(`--${name}`);
  return i > 0 ? Number(argv[i + 1]) : undefined;
}

async function freePort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
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
  if (!fs.existsSync(path.join(PROJECT_ROOT, 'dist', 'src', 'main.js'))) throw new Error('run npm run build first');
  const okta = fs.readFileSync(path.resolve(PROJECT_ROOT, 'test', 'fixtures', 'idp-metadata', 'okta.xml'), 'utf8');
  const idp = http.createServer((_q, s) => s.writeHead(200, { 'content-type': 'application/xml' }).end(okta));
  await new Promise<void>((r) => idp.listen(0, '127.0.0.1', () => r()));
  const idpHost = `127.0.0.1:${(idp.address() as AddressInfo).port}`;

  const name = `bench_${crypto.randomBytes(3).toString('hex')}`;
  const file: ConfigFile = {
    redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    redisKeyPrefix: `${name}:`,
    regions: await Promise.all(REGIONS.map(async (id) => ({ id, port: await freePort(), databaseUrl: `postgresql://postgres@127.0.0.1:5432/${name}_${id.replace(/-/g, '_')}` }))),
    metadataAllowedHosts: [idpHost],
    ...(writesQueue !== undefined || writesQueueWait !== undefined
      ? { admission: { writes: { ...(writesQueue !== undefined ? { queue: writesQueue } : {}), ...(writesQueueWait !== undefined ? { queueWaitMs: writesQueueWait } : {}) } } }
      : {}),
  };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'saml-overload-'));
  const configPath = path.join(dir, 'regions.config.json');
  fs.writeFileSync(configPath, JSON.stringify(file));
  const adminToken = crypto.randomBytes(18).toString('base64url');
  const env = {
    REGIONS_CONFIG: configPath, ADMIN_TOKEN: adminToken, TOKEN_SIGNING_SECRET: crypto.randomBytes(32).toString('base64url'),
    REPLICATION_KEYS: `bench:${crypto.randomBytes(32).toString('base64url')}`, LOG_LEVEL: 'warn',
  };
  let unhandled = 0;
  const procs = file.regions.map(
    (r) => new RegionProcess({ region: r.id, url: `http://127.0.0.1:${r.port}`, env, onLine: (line) => { if (/unhandled error/.test(line)) unhandled++; } }),
  );
  const [iowa, , japan] = procs as [RegionProcess, RegionProcess, RegionProcess];
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const cleanup = async () => {
    japan.resume();
    await Promise.all(procs.map((p) => p.stop()));
    await Promise.all(file.regions.map((r) => dropDatabase(r.databaseUrl).catch(() => undefined)));
    fs.rmSync(dir, { recursive: true, force: true });
    idp.close();
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
    let adminMax = 0;
    let adminFailures = 0;
    let running = true;
    const rssTimer = setInterval(() => {
      try {
        peak = Math.max(peak, rssMb(iowa.pid) || 0);
        redisPeak = Math.max(redisPeak, redisConnections(iowa.pid) || 0);
      } catch {
        // the process went away: the answers will say so
      }
    }, 200);
    const adminLoop = (async () => {
      while (running) {
        const t = performance.now();
        try {
          const res = await fetch(`${iowa.url}/admin/replication`, { headers: admin, signal: AbortSignal.timeout(30_000) });
          const body = (await res.json()) as { waiting_requests?: number };
          if (res.status !== 200) adminFailures++;
          waitersPeak = Math.max(waitersPeak, body.waiting_requests ?? 0);
        } catch {
          adminFailures++;
        }
        adminMax = Math.max(adminMax, performance.now() - t);
        await new Promise((r) => setTimeout(r, 250));
      }
    })();
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
    running = false;
    clearInterval(rssTimer);
    if (resumeTimer) clearTimeout(resumeTimer);
    await adminLoop;

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
      admin_replication_max_ms: Math.round(adminMax),
      admin_replication_failures: adminFailures,
    };
    process.stdout.write(`\nOverload: ${N} concurrent all_regions PATCHes to us-iowa, asia-japan paused${RESUME_AFTER === undefined ? '' : ` (resumed after ${RESUME_AFTER} s)`}\n`);
    for (const [k, v] of Object.entries(report)) process.stdout.write(`  ${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}\n`);
    process.stdout.write(`\n${JSON.stringify(report)}\n`);
  } finally {
    await cleanup();
  }
}
