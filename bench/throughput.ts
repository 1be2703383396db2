/**
 * `npm run bench`: this service against the least an Express 5 + `pg` service does (bench/baseline.ts),
 * both started and loaded in the same run so the ratios hold on any machine.
 * 1. Throughput: autocannon, 32 connections for --seconds (default 8) per side and operation, each side after
 *    --warmup seconds (default 16) of the same load unmeasured, the measured seconds taken in --rounds
 *    (default 4) slices per side, the sides alternating (ABBA), so that a busy minute of a shared host weighs
 *    on both: read one
 *    credential, PATCH its label (both rotating over 64 rows), create one (rotating over 64 organizations;
 *    the service fetches, parses and validates IdP metadata from a local server). Only us-iowa runs; the two other regions are paused
 *    (SIGSTOP) so that the service gets the machine the baseline gets.
 * 2. all_regions − local_region: sequential PATCHes alternating the two levels (--n each, default 200),
 *    three regions on loopback; p50 of each and the difference.
 * 3. Apply: a backlog of --backlog (default 100000) changes of distinct rows committed in us-iowa while
 *    asia-japan is paused; the time asia-japan takes to apply them once resumed.
 * With --stored <n>, n credentials of another organization are bulk-inserted (SQL) into every region first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import path from 'node:path';
import os from 'node:os';
import autocannon from 'autocannon';
import pg from 'pg';
import type { RegionProcess } from '../src/cluster/region-process';
import { forEachLine } from '../src/cluster/region-process';
import { dropDatabase, ensureDatabase } from '../src/db/migrate';
import { sessionConfig } from '../src/db/session';
import { PROJECT_ROOT } from '../src/paths';
import { createRedis, replicationKeys } from '../src/redis';
import { EventAuth, parseReplicationKeys } from '../src/replication/event-auth';
import { groupInfo } from '../src/replication/stream';
import { outboxBacklog } from '../src/replication/outbox-backlog';
import { seedBaseline } from './baseline';
import { cpuPerRequest, redisServerPid, residentMb, sampleCpu, type CpuSample } from './cpu';
import { DatabaseCpu } from './database-cpu';
import { cleanupArms, enterArm, prepareArms, type Arm } from './arms';
import { benchDeployment, type BenchDeployment } from './deployment';
import type { Op, ThroughputOptions } from './options';

const PATH = '/organizations/sso/saml/provider-credentials';
const CONNECTIONS = 32;
const ROWS = 64;
const ORGS = 64;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const load = () => os.loadavg()[0]?.toFixed(1) ?? '?';
const r1 = (x: number) => Math.round(x * 10) / 10;

interface Target {
  url: string;
  /** The process answering (its CPU per request is measured). */
  pid?: number;
  /** Its database (the CPU of its Postgres backends is measured: bench/database-cpu.ts). */
  database?: string;
  /** The bench's Redis server (its CPU is measured; null: every Redis server on the host). */
  redisPid?: number | null;
  orgId: string;
  headers: Record<string, string>;
  /** The organizations creates rotate over (their SlashID-OrgID and SlashID-API-Key headers). */
  creators: Record<string, string>[];
  ids: string[];
  idpUrl: string;
}


interface Measured {
  /** Requests answered per second over the measured time. */
  rps: number;
  requests: number;
  seconds: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
  load: string;
  /**
   * CPU per request (µs) of the process, Postgres (every backend of the server), Redis, and the backends of
   * the side's own database (`database`); null where /proc is not there.
   */
  cpu: SideCpu | null;
  cpuSpent: SideCpu | null;
  /** Backends of the side's database that ended during the measured time (counted up to their last poll). */
  endedBackends: number;
  /** WAL Postgres wrote (bytes) over the measured time: the cluster's, and only the measured side writes then. */
  wal: number;
}

interface SideCpu extends CpuSample {
  database: number;
}

/**
 * Connections to the server's `postgres` database, opened on first use: the cluster's WAL position
 * (pg_current_wal_lsn) and the sides' backends (pg_stat_activity). Not on a side's database, so not counted.
 */
let walPool: pg.Pool | null = null;
function serverPool(): pg.Pool {
  walPool ??= new pg.Pool({ connectionString: 'postgresql://postgres@127.0.0.1:5432/postgres', max: 2 });
  return walPool;
}

/** How often the backends of a side's database are listed and read while it runs (one that ends loses at most this). */
const BACKEND_POLL_MS = 500;

async function walPosition(): Promise<bigint> {
  const walPool = serverPool();
  const { rows } = await walPool.query<{ at: string }>("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS at");
  return BigInt(rows[0]?.at ?? '0');
}

/** One autocannon run of `op` against `t`; reads and patches rotate over the 64 rows. */
async function cannon(t: Target, op: Op, seconds: number): Promise<Measured> {
  let n = 0;
  const request: autocannon.Request =
    op === 'read'
      ? { method: 'GET', setupRequest: (r) => ({ ...r, path: `${PATH}/${t.ids[n++ % t.ids.length]}` }) }
      : op === 'patch'
        ? { method: 'PATCH', setupRequest: (r) => ({ ...r, path: `${PATH}/${t.ids[n % t.ids.length]}`, body: JSON.stringify({ label: `l${n++}` }) }) }
        : {
            method: 'POST',
            path: PATH,
            setupRequest: (r) => ({ ...r, headers: { ...r.headers, ...t.creators[n % t.creators.length] }, body: JSON.stringify({ idp_metadata_url: t.idpUrl, label: `b${n++}` }) }),
          };
  const walBefore = await walPosition();
  const backends = t.database ? await DatabaseCpu.open(serverPool(), t.database) : null;
  const polls = setInterval(() => void backends?.poll().catch(() => undefined), BACKEND_POLL_MS);
  const before = sampleCpu(t.pid, t.redisPid);
  // autocannon's answer is a promise-like without finally.
  const res = await Promise.resolve(
    autocannon({ url: t.url, connections: CONNECTIONS, duration: seconds, headers: { ...t.headers, 'content-type': 'application/json' }, requests: [request] }),
  ).finally(() => clearInterval(polls));
  const after = sampleCpu(t.pid, t.redisPid);
  const own = await backends?.close();
  const wal = Number((await walPosition()) - walBefore);
  const requests = res.requests.total;
  const spent = cpuSpent(before, after, own?.cpu);
  return {
    rps: Math.round(requests / res.duration), requests, seconds: res.duration, p50: res.latency.p50, p99: res.latency.p99,
    non2xx: res.non2xx, errors: res.errors + res.timeouts, load: load(), cpu: perRequest(spent, requests), cpuSpent: spent, wal,
    endedBackends: own?.ended ?? 0,
  };
}

/** The CPU spent between two samples (µs), with that of the side's database's backends, for summing over slices. */
function cpuSpent(before: CpuSample | null, after: CpuSample | null, database: number | undefined): SideCpu | null {
  return before && after && database !== undefined
    ? { process: after.process - before.process, postgres: after.postgres - before.postgres, redis: after.redis - before.redis, database }
    : null;
}

function perRequest(spent: SideCpu | null, requests: number): SideCpu | null {
  if (!spent) return null;
  const per = (k: keyof SideCpu) => Math.round(spent[k] / Math.max(1, requests));
  return { process: per('process'), postgres: per('postgres'), redis: per('redis'), database: per('database') };
}

/** Slices of one side taken together: requests over time, the median slice's p50, the worst p99, CPU over all requests. */
function combine(slices: Measured[]): Measured {
  const requests = slices.reduce((n, m) => n + m.requests, 0);
  const seconds = slices.reduce((n, m) => n + m.seconds, 0);
  const add = (a: SideCpu, m: SideCpu): SideCpu => ({ process: a.process + m.process, postgres: a.postgres + m.postgres, redis: a.redis + m.redis, database: a.database + m.database });
  const spent = slices.every((m) => m.cpuSpent) ? slices.reduce((a, m) => (m.cpuSpent ? add(a, m.cpuSpent) : a), { process: 0, postgres: 0, redis: 0, database: 0 }) : null;
  return {
    rps: Math.round(requests / seconds), requests, seconds,
    p50: percentile50(slices.map((m) => m.p50)), p99: Math.max(...slices.map((m) => m.p99)),
    non2xx: slices.reduce((n, m) => n + m.non2xx, 0), errors: slices.reduce((n, m) => n + m.errors, 0),
    load: slices.map((m) => m.load).join('→'), cpu: perRequest(spent, requests), cpuSpent: spent,
    wal: slices.reduce((n, m) => n + m.wal, 0), endedBackends: slices.reduce((n, m) => n + m.endedBackends, 0),
  };
}

type Pair = { baseline: Measured; service: Measured; ratios: number[] };

/**
 * One operation, both sides interleaved: after each side's warm-up, `rounds` rounds of one slice of
 * `seconds / rounds` per side, in the order baseline-service, service-baseline, ... (ABBA), so that a busy
 * minute of a shared host weighs on both sides alike instead of on whichever ran in it. The ratio is that
 * of the requests per second over all slices; `ratios` are the rounds' own, to show the spread.
 */
async function interleaved(sides: { baseline: Target; service: Target }, op: Op, seconds: number, warmup: number, rounds: number): Promise<Pair> {
  await cannon(sides.baseline, op, warmup);
  await cannon(sides.service, op, warmup);
  const slice = Math.max(1, Math.round(seconds / rounds));
  const b: Measured[] = [];
  const s: Measured[] = [];
  for (let r = 0; r < rounds; r++) {
    if (r % 2 === 0) {
      b.push(await cannon(sides.baseline, op, slice));
      s.push(await cannon(sides.service, op, slice));
    } else {
      s.push(await cannon(sides.service, op, slice));
      b.push(await cannon(sides.baseline, op, slice));
    }
  }
  return { baseline: combine(b), service: combine(s), ratios: s.map((m, i) => m.rps / (b[i]?.rps ?? NaN)) };
}

/**
 * A pool on a region's database with the service's own session settings (JIT off): the bench's polls of
 * the outbox would otherwise compile themselves with LLVM while the statistics lag behind the backlog, on
 * the cores the regions need.
 */
function regionPool(databaseUrl: string, max: number): pg.Pool {
  return new pg.Pool({ ...sessionConfig(databaseUrl), max });
}

/** The database a connection string names. */
const databaseName = (url: string) => decodeURIComponent(new URL(url).pathname.slice(1));

/** The baseline as its own process on its own database, seeded with the 64 rows. */
async function startBaseline(name: string, orgId: string): Promise<{ target: Omit<Target, 'idpUrl' | 'headers' | 'creators'>; stop(): Promise<void> }> {
  const databaseUrl = `postgresql://postgres@127.0.0.1:5432/${name}_baseline`;
  await ensureDatabase(databaseUrl);
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  const ids = await seedBaseline(pool, orgId, ROWS);
  await pool.end();
  const child: ChildProcess = spawn(process.execPath, [path.join(PROJECT_ROOT, 'dist', 'bench', 'baseline.js')], {
    env: { ...process.env, BASELINE_DATABASE_URL: databaseUrl, PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    forEachLine(child.stdout, (line) => {
      const m = /^listening (\d+)/.exec(line);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', () => reject(new Error('the baseline exited')));
  });
  return {
    target: { url: `http://127.0.0.1:${port}`, pid: child.pid, database: databaseName(databaseUrl), orgId, ids },
    async stop() {
      child.kill('SIGTERM');
      await dropDatabase(databaseUrl).catch(() => undefined);
    },
  };
}

async function json<T>(res: Response, expect: number): Promise<T> {
  const body = (await res.json()) as T;
  if (res.status !== expect) throw new Error(`${res.url} answered ${res.status}: ${JSON.stringify(body)}`);
  return body;
}

/** Bulk-inserts `n` live credentials of a fresh organization into every region's database (same rows everywhere). */
async function storeCredentials(d: BenchDeployment, n: number): Promise<void> {
  const orgId = crypto.randomUUID();
  const version = `${String(Date.now()).padStart(15, '0')}.000000.us-iowa`;
  for (const r of d.file.regions) {
    const pool = regionPool(r.databaseUrl, 1);
    await pool.query(
      `INSERT INTO saml_provider_credentials (id, org_id, label, idp_metadata_url, email_claims, enable_in_slashid_oidc_authz_server,
         home_region, created_at, updated_at, version, created_version, origin_region)
       SELECT md5($1 || g)::uuid, $1::uuid, 'stored ' || g, 'https://idp.example.com/' || g || '.xml', ARRAY['email'], false,
         'us-iowa', now(), now(), $2, $2, 'us-iowa' FROM generate_series(1, $3::int) g`,
      [orgId, version, n],
    );
    await pool.query('ANALYZE saml_provider_credentials');
    await pool.end();
  }
}

/**
 * Commits `n` single-row changes (creates of distinct credentials) in us-iowa: rows and signed outbox events
 * written with SQL, as `n` committed writes would leave them; us-iowa's relay publishes them. Returns the
 * ids of the rows, in order.
 */
async function commitBacklog(d: BenchDeployment, orgId: string, n: number): Promise<string[]> {
  const auth = new EventAuth(parseReplicationKeys(d.procs[0]?.opts.env.REPLICATION_KEYS ?? ''));
  const url = d.file.regions[0]?.databaseUrl ?? '';
  const pool = regionPool(url, 1);
  const schema = (await pool.query<{ name: string }>(`SELECT max(migration_name) AS name FROM "_prisma_migrations" WHERE finished_at IS NOT NULL`)).rows[0]?.name ?? '';
  const wall = String(Date.now()).padStart(15, '0');
  const now = new Date().toISOString();
  const CHUNK = 5000;
  const ids: string[] = [];
  for (let start = 0; start < n; start += CHUNK) {
    const rows = [];
    const outbox = [];
    for (let i = start; i < Math.min(n, start + CHUNK); i++) {
      const version = `${wall}.${String(i).padStart(6, '0')}.us-iowa`;
      const row = {
        id: crypto.randomUUID(), org_id: orgId, label: `backlog ${i}`, idp_metadata_url: 'https://idp.example.com/backlog.xml',
        email_claims: ['email'], enable_in_slashid_oidc_authz_server: false, home_region: 'us-iowa', created_at: now, updated_at: now,
        deleted_at: null, version, created_version: version, origin_region: 'us-iowa',
      };
      rows.push(row);
      ids.push(row.id);
      const event = auth.sign({ changeId: crypto.randomUUID(), origin: 'us-iowa', createdAt: now, ops: [{ table: 'saml_provider_credentials', key: row.id, version, row }], orgId, schema });
      outbox.push({ change_id: event.changeId, event, org_id: orgId });
    }
    await pool.query('BEGIN');
    await pool.query('INSERT INTO saml_provider_credentials SELECT * FROM jsonb_populate_recordset(NULL::saml_provider_credentials, $1::jsonb)', [JSON.stringify(rows)]);
    await pool.query('INSERT INTO replication_outbox (change_id, event, org_id) SELECT change_id, event, org_id FROM jsonb_to_recordset($1::jsonb) AS x(change_id uuid, event jsonb, org_id uuid)', [JSON.stringify(outbox)]);
    await pool.query('COMMIT');
  }
  await pool.end();
  return ids;
}

/** How many of `ids` (all the organization's credentials when null) the database behind `pool` holds. */
async function heldRows(pool: pg.Pool, orgId: string, ids: readonly string[] | null): Promise<number> {
  const r = ids
    ? await pool.query<{ n: string }>('SELECT count(*)::text AS n FROM saml_provider_credentials WHERE id = ANY($1::uuid[])', [ids])
    : await pool.query<{ n: string }>('SELECT count(*)::text AS n FROM saml_provider_credentials WHERE org_id = $1', [orgId]);
  return Number(r.rows[0]?.n ?? 0);
}

async function appliedFrom(url: string, origin: string): Promise<number> {
  const pool = regionPool(url, 1);
  try {
    const r = await pool.query<{ n: string }>('SELECT coalesce(sum(applied_count), 0)::text AS n FROM replication_progress WHERE origin_region = $1', [origin]);
    return Number(r.rows[0]?.n ?? 0);
  } finally {
    await pool.end();
  }
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs: number, everyMs = 200): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** The outbox backlog of the region whose database is at `url`, as GET /admin/replication counts it (outboxBacklog). */
async function backlogOf(url: string): Promise<{ unpublished: number; unconfirmed: number }> {
  const pool = regionPool(url, 1);
  try {
    return await outboxBacklog({ $queryRawUnsafe: async <T>(sql: string, ...values: unknown[]) => (await pool.query(sql, values)).rows as T });
  } finally {
    await pool.end();
  }
}

/** Every other region applied at least as many of us-iowa's changes as us-iowa's outbox holds. */
async function caughtUp(d: BenchDeployment): Promise<boolean> {
  const [iowa, ...others] = d.file.regions.map((r) => r.databaseUrl);
  const pool = regionPool(iowa, 1);
  const written = Number((await pool.query<{ n: string }>('SELECT count(*)::text AS n FROM replication_outbox').finally(() => pool.end())).rows[0]?.n ?? 0);
  for (const url of others) if ((await appliedFrom(url, 'us-iowa')) < written) return false;
  return true;
}

function percentile50(ms: number[]): number {
  const s = [...ms].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

const TARGET: Record<Op, number> = { read: 0.7, patch: 0.5, create: 0.3 };

const cpuCell = (c: CpuSample | null) => (c ? `${c.process} + ${c.postgres} + ${c.redis} µs` : 'n/a');
/** A side's CPU per request: its own database's backends in the sum, the whole server's beside it. */
const sideCpuCell = (c: SideCpu | null) => (c ? `${c.process} + ${c.database} + ${c.redis} µs (server ${c.postgres})` : 'n/a');
const walCell = (m: Measured) => `${Math.round(m.wal / Math.max(1, m.requests)).toLocaleString('en-US')} B`;

/** One block of part 1: an operation measured in one arm's state (bench/arms.ts). */
type Block = { op: Op; arm: Arm; pair: Pair };

/** Part 1's table: both sides, their ratio and its target, per operation (and arm, with several arms). */
function throughputTable(blocks: readonly Block[], seconds: number, warmup: number, rounds: number): string {
  const errs = (m: Measured) => (m.non2xx || m.errors ? `, ${m.non2xx} non-2xx, ${m.errors} errors` : '');
  const armed = blocks.some((x) => x.arm !== 'paused');
  const rows = blocks.map(({ op, arm, pair }) => {
    const { baseline: b, service: s, ratios } = pair;
    const spread = ratios.length > 1 ? ` (rounds ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})` : '';
    return `| ${armed ? `${op} [${arm}]` : op} | ${b.rps}/s, p50 ${b.p50} ms${errs(b)} | ${s.rps}/s, p50 ${s.p50} ms${errs(s)} | ${(s.rps / b.rps).toFixed(2)}${spread} | ≥ ${TARGET[op]} | ${sideCpuCell(b.cpu)} | ${sideCpuCell(s.cpu)} | ${walCell(b)} / ${walCell(s)} | ${b.load} / ${s.load} |\n`;
  });
  const ended = blocks.map((x) => `${x.op}${armed ? ` [${x.arm}]` : ''} ${x.pair.baseline.endedBackends} / ${x.pair.service.endedBackends}`).join(', ');
  return (
    `Throughput: autocannon, ${CONNECTIONS} connections, ${seconds} s per side in ${rounds} interleaved rounds (baseline and service alternating, ABBA) after ${warmup} s of each side's load unmeasured; one region (the others paused${armed ? ', but in the blocks marked running' : ''})\n` +
    '| operation | baseline (Express + pg) | this service | ratio | target | baseline CPU per request | service CPU per request | WAL per request: baseline / service | load avg |\n' +
    `| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n${rows.join('')}` +
    'CPU per request: µs of the HTTP process (all its threads) + of the Postgres backends of the side\'s own database + of the bench\'s Redis server, from /proc; less noisy than requests per second.\n' +
    `  (server N): every Postgres process of the server, other databases' work included (the sum's middle term before 2026-12-06's fortieth session). Backends of the side's database that ended while it ran: ${ended} (each counted up to its last poll, every ${BACKEND_POLL_MS} ms).\n` +
    'WAL per request: bytes Postgres wrote to its write-ahead log while the side ran (pg_current_wal_lsn; the other side idle, the other regions paused): what the host does not move at all.\n' +
    (armed ? armSummary(blocks) : '')
  );
}

/** With several arms: per operation and arm, over its blocks, the service's CPU per request and its process's over the baseline's. */
function armSummary(blocks: readonly Block[]): string {
  const lines: string[] = [];
  for (const op of [...new Set(blocks.map((x) => x.op))]) {
    for (const arm of [...new Set(blocks.map((x) => x.arm))]) {
      const of = blocks.filter((x) => x.op === op && x.arm === arm);
      if (of.length === 0) continue;
      const s = combine(of.flatMap((x) => [x.pair.service]));
      const b = combine(of.flatMap((x) => [x.pair.baseline]));
      const each = of.map((x) => ((x.pair.service.cpu?.process ?? NaN) / (x.pair.baseline.cpu?.process ?? NaN)).toFixed(2)).join(', ');
      lines.push(`  ${op} [${arm}], ${of.length} block(s): service ${sideCpuCell(s.cpu)} per request; its process over the baseline's ${((s.cpu?.process ?? NaN) / (b.cpu?.process ?? NaN)).toFixed(2)} (blocks: ${each}); ratio ${(s.rps / b.rps).toFixed(2)}\n`);
    }
  }
  return `Per arm:\n${lines.join('')}`;
}

type LatencyP50 = { local_region: number; all_regions: number; load: string };

const latencyLine = (n: number, gapMs: number, p50: LatencyP50, backToBack: LatencyP50) =>
  `Sequential PATCH on loopback, three regions (${n} each, alternating, ${gapMs} ms between writes): local_region p50 ${p50.local_region} ms, all_regions p50 ${p50.all_regions} ms, difference ${r1(p50.all_regions - p50.local_region)} ms (target ≤ 3; load avg ${p50.load})\n` +
  `  back to back: local_region p50 ${backToBack.local_region} ms, all_regions p50 ${backToBack.all_regions} ms, difference ${r1(backToBack.all_regions - backToBack.local_region)} ms (each all_regions write runs during the replication of the local_region write before it; load avg ${backToBack.load})\n`;

/**
 * Part 2, both ways: writes spaced `gapMs` apart, so that each starts on a quiet deployment (the previous
 * write replicated everywhere, as the harness's WAN bench does: --gap), and back to back.
 */
async function latencyBothWays(url: string, headers: Record<string, string>, ids: string[], n: number, gapMs: number): Promise<{ p50: LatencyP50; backToBack: LatencyP50 }> {
  const p50 = await sequentialLatency(url, headers, ids, n, gapMs);
  const backToBack = await sequentialLatency(url, headers, ids, n, 0);
  return { p50, backToBack };
}

const rssLine = (rss: { now: number; peak: number } | null) =>
  rss ? `us-iowa's resident memory after these runs: ${rss.now} MB (peak since it started ${rss.peak} MB; two parse workers included once creates ran)\n` : '';

type Applied = { seconds: number; load: string; entries: number | null; packs: boolean; cpu: CpuSample | null };

const applyLine = (backlog: number, a: Applied) =>
  `Apply: ${backlog} changes of distinct rows applied by asia-japan in ${a.seconds.toFixed(1)} s after it resumed: ${Math.round(backlog / a.seconds)} changes/s (target ≥ 20000/s, ≤ 10 s; load avg ${a.load})\n` +
  `  delivered in ${a.entries ?? '?'} inbox entries${a.entries ? `, ${r1(backlog / a.entries)} events per entry` : ''} (replicationPacks ${a.packs ? 'on' : 'off'}); CPU per change ${cpuCell(a.cpu)}\n`;

/** The pid of the bench's Redis server on this host (null: not known, every Redis server is counted). */
async function benchRedisPid(d: BenchDeployment): Promise<number | null> {
  const redis = createRedis(d.file.redisUrl, 'bench-info');
  try {
    await new Promise((resolve) => redis.once('ready', resolve));
    return redisServerPid(await redis.info('server'));
  } finally {
    redis.disconnect();
  }
}

/** Entries of `region`'s inbox not yet delivered to its group (null when Redis cannot tell). */
async function undelivered(d: BenchDeployment, region: string): Promise<number | null> {
  const redis = createRedis(d.file.redisUrl, 'bench-inbox');
  try {
    await new Promise((resolve) => redis.once('ready', resolve));
    return (await groupInfo(redis, replicationKeys(d.file.redisKeyPrefix).inbox(region))).find((g) => g.name === region)?.lag ?? null;
  } finally {
    redis.disconnect();
  }
}

/** Part 3: a backlog of distinct rows committed in us-iowa while asia-japan is paused; its time to apply them once resumed. */
async function applyBacklog(d: BenchDeployment, orgId: string, backlog: number): Promise<Applied> {
  const japan = d.procs[2] as RegionProcess;
  japan.pause();
  try {
    const japanUrl = d.file.regions[2]?.databaseUrl ?? '';
    const before = await appliedFrom(japanUrl, 'us-iowa');
    const ids = await commitBacklog(d, orgId, backlog);
    const iowaPool = regionPool(d.file.regions[0]?.databaseUrl ?? '', 1);
    const all = await heldRows(iowaPool, orgId, null).finally(() => iowaPool.end());
    await until('us-iowa to publish the backlog', async () => (await backlogOf(d.file.regions[0]?.databaseUrl ?? '')).unpublished === 0, 600_000, 500);
    await until('europe-belgium to apply the backlog', async () => (await appliedFrom(d.file.regions[1]?.databaseUrl ?? '', 'us-iowa')) >= before + backlog, 600_000, 500);
    const applyLoad = load();
    const entries = await undelivered(d, 'asia-japan');
    // One connection for the polls below, opened before the clock starts (a new backend per poll would
    // cost the machine more than the query).
    const japanPool = regionPool(japanUrl, 1);
    await japanPool.query('SELECT 1');
    const cpu0 = sampleCpu(japan.pid);
    const t0 = performance.now();
    japan.resume();
    // Timed on the rows themselves: the applied-events count is written once a second, which made this
    // figure a whole number of seconds after the first count (5.2 or 6.2 s for the same run). First the
    // backlog's very last row (one index lookup per poll: the polls share the cores with the apply), then
    // its last 1,000 (batches apply in stream order, two at a time), then every row of the organization
    // that us-iowa holds.
    const tail = ids.slice(-1000);
    try {
      await until('asia-japan to apply the backlog\'s last row', async () => (await heldRows(japanPool, orgId, tail.slice(-1))) === 1, 600_000, 20);
      await until('asia-japan to apply the backlog\'s last rows', async () => (await heldRows(japanPool, orgId, tail)) === tail.length, 600_000, 20);
      await until('asia-japan to apply the backlog', async () => (await heldRows(japanPool, orgId, null)) >= all, 600_000, 20);
    } finally {
      await japanPool.end();
    }
    const seconds = (performance.now() - t0) / 1000;
    return { seconds, load: applyLoad, entries, packs: d.file.replicationPacks !== false, cpu: cpuPerRequest(cpu0, sampleCpu(japan.pid), backlog) };
  } finally {
    japan.resume();
  }
}

/** Sequential PATCHes alternating local_region and all_regions (n each, after 20 warm-up), `gapMs` apart: p50 of each. */
async function sequentialLatency(url: string, headers: Record<string, string>, ids: string[], n: number, gapMs: number): Promise<LatencyP50> {
  const lat: Record<string, number[]> = { local_region: [], all_regions: [] };
  for (let i = 0; i < 2 * n + 20; i++) {
    const level = i % 2 ? 'all_regions' : 'local_region';
    const t = performance.now();
    const res = await fetch(`${url}${PATH}/${ids[i % ids.length]}`, {
      method: 'PATCH',
      headers: { ...headers, 'content-type': 'application/json', 'SlashID-Required-Consistency': level },
      body: JSON.stringify({ label: `s${i}` }),
    });
    await res.arrayBuffer();
    if (res.status !== 204) throw new Error(`PATCH answered ${res.status}`);
    if (i >= 20) lat[level]?.push(performance.now() - t);
    if (gapMs > 0) await sleep(gapMs);
  }
  return { local_region: r1(percentile50(lat.local_region ?? [])), all_regions: r1(percentile50(lat.all_regions ?? [])), load: load() };
}

export async function runThroughputBench(o: ThroughputOptions): Promise<void> {
  const SECONDS = o.seconds;
  // Unmeasured load before each side's measured run: V8 was still compiling the service's code (three
  // isolates: the main thread and two parse workers) for 12-16 s of load, 10-18 % of the region's CPU in
  // the measured window after a 2 s warm-up (perf, 2026-12-01). The baseline's few functions compile at once.
  const WARMUP = o.warmup;
  // The measured seconds of each side are taken in this many interleaved rounds (1: one run each, in turn).
  const ROUNDS = o.rounds;
  const N = o.n;
  // Between the sequential writes of part 2 (ms): each starts once the one before it has replicated.
  const GAP = o.gap;
  const BACKLOG = o.backlog;
  const STORED = o.stored;
  // --packs off: the regions deliver one event per inbox entry (config replicationPacks false), for an A/B.
  const PACKS = o.packs;
  // `npm run bench -- latency`: only part 2 (quick, to iterate on the replication path).
  const LATENCY_ONLY = o.only === 'latency';
  // `npm run bench -- apply`: only part 3.
  const APPLY_ONLY = o.only === 'apply';
  // `npm run bench -- throughput [--ops read,patch]`: only part 1, for the operations named (default all).
  const THROUGHPUT_ONLY = o.only === 'throughput';
  const ops = o.ops;
  const d = await benchDeployment({
    extra: { maxCredentialsPerOrg: 100_000, metadataFetchConcurrency: { perOrg: 100, perRegion: 1000 }, ackSignatures: o.ackSignatures, ...(PACKS ? {} : { replicationPacks: false }) },
  });
  const [iowa, europe, japan] = d.procs as [RegionProcess, RegionProcess, RegionProcess];
  let baseline: Awaited<ReturnType<typeof startBaseline>> | null = null;
  const started = { load: os.loadavg().map((x) => x.toFixed(1)).join(' ') };
  const armFlag = prepareArms(o.arms);
  try {
    for (const p of d.procs) p.start();
    await Promise.all(d.procs.map((p) => p.waitReady(120_000)));
    if (STORED > 0) {
      const t = performance.now();
      await storeCredentials(d, STORED);
      process.stdout.write(`stored ${STORED} credentials in every region in ${Math.round((performance.now() - t) / 1000)} s\n`);
    }
    const admin = { authorization: `Bearer ${d.adminToken}`, 'content-type': 'application/json', 'SlashID-Required-Consistency': 'all_regions' };
    const org = await json<{ id: string; api_key: string }>(await fetch(`${iowa.url}/admin/organizations`, { method: 'POST', headers: admin, body: JSON.stringify({ name: 'bench' }) }), 201);
    const headers = { 'SlashID-OrgID': org.id, 'SlashID-API-Key': org.api_key };
    // Creates rotate over ORGS organizations, as reads and patches rotate over rows: an organization's creates
    // in one region take its lock in turn (its credential limit), a hot spot no real load has.
    const creators = [headers];
    while (creators.length < ORGS) {
      const o = await json<{ id: string; api_key: string }>(await fetch(`${iowa.url}/admin/organizations`, { method: 'POST', headers: admin, body: JSON.stringify({ name: `bench ${creators.length}` }) }), 201);
      creators.push({ 'SlashID-OrgID': o.id, 'SlashID-API-Key': o.api_key });
    }
    const idpUrl = `http://${d.idpHost}/okta.xml`;
    const ids: string[] = [];
    for (let i = 0; i < ROWS; i++) {
      const res = await fetch(`${iowa.url}${PATH}`, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json', 'SlashID-Required-Consistency': 'all_regions' },
        body: JSON.stringify({ idp_metadata_url: idpUrl, label: `c${i}` }),
      });
      ids.push((await json<{ result: { id: string } }>(res, 201)).result.id);
    }
    if (LATENCY_ONLY) {
      const { p50, backToBack } = await latencyBothWays(iowa.url, headers, ids, N, GAP);
      process.stdout.write(`\n${latencyLine(N, GAP, p50, backToBack)}`);
      return;
    }
    if (APPLY_ONLY) {
      const a = await applyBacklog(d, org.id, BACKLOG);
      process.stdout.write(`\n${applyLine(BACKLOG, a)}`);
      return;
    }
    baseline = await startBaseline(d.file.redisKeyPrefix.replace(/:$/, ''), org.id);
    const redisPid = await benchRedisPid(d);
    const sides = { baseline: { ...baseline.target, redisPid, headers, creators, idpUrl }, service: { url: iowa.url, pid: iowa.pid, redisPid, database: databaseName(d.file.regions[0]?.databaseUrl ?? ''), orgId: org.id, headers, creators, ids, idpUrl } };

    // 1. Throughput, one region: the others paused, so the service has the machine the baseline has (but in
    // the blocks of the `running` arm). A warm-up of each side (JIT, pools, keep-alive), then the measured
    // slices, interleaved; per arm given, in its order.
    const blocks: Block[] = [];
    const armDeps = { others: [europe, japan], caughtUp: () => caughtUp(d), unconfirmed: async () => (await backlogOf(d.file.regions[0]?.databaseUrl ?? '')).unconfirmed, until };
    for (const arm of o.arms) {
      await enterArm(arm, armFlag, armDeps);
      for (const op of ops) blocks.push({ op, arm, pair: await interleaved(sides, op, SECONDS, WARMUP, ROUNDS) });
    }
    const table: Partial<Record<Op, Pair>> = Object.fromEntries(blocks.map((x) => [x.op, x.pair]));
    // The serving region's memory once the runs are over, and its peak since it started.
    const rss = residentMb(iowa.pid);
    europe.resume();
    japan.resume();
    if (THROUGHPUT_ONLY) {
      process.stdout.write(`\n${throughputTable(blocks, SECONDS, WARMUP, ROUNDS)}${rssLine(rss)}`);
      return;
    }
    await until('the paused regions to catch up', () => caughtUp(d), 600_000, 1000);

    // 2. all_regions − local_region, alternating so that the machine's load weighs on both alike.
    const { p50, backToBack } = await latencyBothWays(iowa.url, headers, ids, N, GAP);

    // 3. Apply a backlog of distinct rows after a pause.
    const applied = await applyBacklog(d, org.id, BACKLOG);
    const { seconds: applySeconds, load: applyLoad } = applied;

    const out = process.stdout;
    out.write(`\nMachine: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), node ${process.version}; load average at start ${started.load}${STORED ? `; ${STORED} stored credentials` : ''}; ackSignatures ${o.ackSignatures}\n`);
    out.write(`\n${throughputTable(blocks, SECONDS, WARMUP, ROUNDS)}${rssLine(rss)}`);
    out.write(`\n${latencyLine(N, GAP, p50, backToBack)}${applyLine(BACKLOG, applied)}`);
    out.write(`\n${JSON.stringify({ date: new Date().toISOString(), cores: os.cpus().length, load_at_start: started.load, ack_signatures: o.ackSignatures, stored: STORED, seconds: SECONDS, rounds: ROUNDS, warmup_seconds: WARMUP, throughput: table, serving_region_rss_mb: rss, latency_p50_ms: { ...p50, gap_ms: GAP, back_to_back: backToBack }, apply: { changes: BACKLOG, seconds: r1(applySeconds), per_second: Math.round(BACKLOG / applySeconds), load: applyLoad, entries: applied.entries, packs: applied.packs, cpu_per_change_us: applied.cpu } })}\n`);
  } finally {
    japan.resume();
    europe.resume();
    await baseline?.stop();
    await d.cleanup();
    await walPool?.end();
    walPool = null;
    cleanupArms(armFlag);
  }
}
