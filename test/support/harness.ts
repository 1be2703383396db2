/**
 * Multi-region test harness: every region is its own OS process (dist/src/main.js) with its own database,
 * all on one Redis. Regions can be paused (SIGSTOP), resumed, killed with -9, stopped and restarted.
 * Needs a build (`npm test` builds first).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Client } from 'pg';
import { RegionProcess } from '../../src/cluster/region-process';
import type { ConfigFile, RegionConfig } from '../../src/config-schema';
import { PROJECT_ROOT } from '../../src/paths';
import { parseBody } from '../../scripts/harness/client';
import { ADMIN_TOKEN, createDeployment, FIXTURE_DATE, freePorts, PG_BASE, TEST_REPLICATION_KEYS, TEST_SIGNING_SECRET, type TestDeployment } from './env';

export interface Cluster {
  deployment: TestDeployment;
  regions: string[];
  proc(region: string): RegionProcess;
  url(region: string): string;
  /** Last lines each region printed (for failure messages). */
  logs(region: string): string[];
  /**
   * Stops every region (SIGTERM, then kill -9 after `graceMs`) and drops what the cluster made. A file that
   * checks nothing about its regions' shutdown may pass 0: the drop does not need them to have drained.
   */
  stop(graceMs?: number): Promise<void>;
}

/** The environment a test's region process runs with: its config file, the test secrets, the log level, the fixtures' date. */
export function regionProcessEnv(configPath: string): Record<string, string> {
  return {
    REGIONS_CONFIG: configPath,
    ADMIN_TOKEN,
    TOKEN_SIGNING_SECRET: TEST_SIGNING_SECRET,
    REPLICATION_KEYS: TEST_REPLICATION_KEYS,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
    METADATA_VALIDATION_TIME: FIXTURE_DATE,
  };
}

/**
 * A region added to `cluster`'s deployment at runtime, as docs/operations.md "Adding a region" has it: a config
 * file (`configName`, beside the deployment's) naming it after the others, with its own database (created by the
 * region at start: the caller drops it) and, given `redisUrl`, a Redis of its own. Its process is not started.
 */
export async function addedRegionProcess(
  cluster: Pick<Cluster, 'deployment'>,
  region: string,
  opts: { configName: string; redisUrl?: string; onLine?: (line: string) => void },
): Promise<{ process: RegionProcess; databaseUrl: string; configPath: string }> {
  const [port = 0] = await freePorts(1);
  const file = JSON.parse(fs.readFileSync(cluster.deployment.configPath, 'utf8')) as ConfigFile;
  const databaseUrl = `${PG_BASE}/${cluster.deployment.name}_${region.replace(/-/g, '_')}`;
  const configPath = path.join(path.dirname(cluster.deployment.configPath), opts.configName);
  const entry: RegionConfig = { id: region, port, databaseUrl, ...(opts.redisUrl ? { redisUrl: opts.redisUrl } : {}) };
  fs.writeFileSync(configPath, JSON.stringify({ ...file, regions: [...file.regions, entry] }, null, 2));
  const proc = new RegionProcess({ region, url: `http://127.0.0.1:${port}`, env: regionProcessEnv(configPath), ...(opts.onLine ? { onLine: opts.onLine } : {}) });
  return { process: proc, databaseUrl, configPath };
}

export function assertBuilt(): void {
  const main = path.join(PROJECT_ROOT, 'dist', 'src', 'main.js');
  if (!fs.existsSync(main)) throw new Error('dist/src/main.js is missing: run `npm run build` (npm test does it)');
}

export async function startCluster(
  label: string,
  regionIds: string[],
  opts: {
    extra?: Partial<ConfigFile>;
    env?: Record<string, string>;
    regionEnv?: Record<string, Record<string, string>>;
    /** Extra fields of some regions' config entries (e.g. `redisUrl`: a Redis of their own). */
    regionConfig?: Record<string, Partial<RegionConfig>>;
    /** Runs once the deployment is made, before any region starts (e.g. databaseSetting's). */
    beforeStart?: (deployment: TestDeployment) => Promise<void>;
    /** Every line a region prints (`logs()` keeps only each region's last 200). */
    onLine?: (region: string, line: string) => void;
    /**
     * Regions whose databases the deployment leaves absent, for their start to create and migrate (see
     * createDeployment); a region started with a MIGRATIONS_DIR of its own is always one of them.
     */
    absentDatabases?: boolean | readonly string[];
  } = {},
): Promise<Cluster> {
  assertBuilt();
  const ownMigrations = regionIds.filter((r) => (opts.regionEnv?.[r]?.MIGRATIONS_DIR ?? opts.env?.MIGRATIONS_DIR) !== undefined);
  const absentDatabases = opts.absentDatabases === true || [...(Array.isArray(opts.absentDatabases) ? opts.absentDatabases : []), ...ownMigrations];
  const deployment = await createDeployment(label, regionIds, opts.extra, opts.regionConfig, { absentDatabases });
  await opts.beforeStart?.(deployment).catch(async (err: unknown) => {
    await deployment.cleanup();
    throw err;
  });
  const logs = new Map<string, string[]>(regionIds.map((r) => [r, []]));
  const procs = new Map<string, RegionProcess>();
  for (const r of deployment.file.regions) {
    procs.set(
      r.id,
      new RegionProcess({
        region: r.id,
        url: `http://127.0.0.1:${r.port}`,
        env: { ...regionProcessEnv(deployment.configPath), ...opts.env, ...opts.regionEnv?.[r.id] },
        onLine: (line) => {
          const buf = logs.get(r.id) ?? [];
          buf.push(line);
          if (buf.length > 200) buf.shift();
          opts.onLine?.(r.id, line);
          if (process.env.TEST_LOG_LEVEL) process.stdout.write(`[${r.id}] ${line}\n`);
        },
      }),
    );
  }
  const proc = (region: string) => {
    const p = procs.get(region);
    if (!p) throw new Error(`no region ${region}`);
    return p;
  };
  for (const p of procs.values()) p.start();
  try {
    await Promise.all([...procs.values()].map((p) => p.waitReady(60_000)));
  } catch (err) {
    const dump = [...logs].map(([r, l]) => `--- ${r}\n${l.slice(-20).join('\n')}`).join('\n');
    await Promise.all([...procs.values()].map((p) => p.kill()));
    await deployment.cleanup();
    throw new Error(`${(err as Error).message}\n${dump}`);
  }
  return {
    deployment,
    regions: regionIds,
    proc,
    url: (region) => proc(region).url,
    logs: (region) => logs.get(region) ?? [],
    async stop(graceMs = 10_000) {
      await Promise.all([...procs.values()].map((p) => p.stop(graceMs)));
      await deployment.cleanup();
    },
  };
}

export interface ApiResponse<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

/** A small HTTP client for tests: JSON in, JSON out (body is null for an empty response). */
export async function call<T = any>(
  baseUrl: string,
  method: string,
  urlPath: string,
  opts: { body?: unknown; headers?: Record<string, string>; rawBody?: string; timeoutMs?: number } = {},
): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = { ...opts.headers };
  let body: string | undefined = opts.rawBody;
  if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    headers['content-type'] ??= 'application/json';
  }
  const res = await fetch(baseUrl + urlPath, { method, headers, body, signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000) });
  return { status: res.status, body: parseBody(await res.text()) as T, headers: res.headers };
}

export const adminHeaders = { authorization: `Bearer ${ADMIN_TOKEN}` };

/**
 * The credential a SlashID create's 408 names in `Location` (SlashID's error envelope has no `result`);
 * throws when there is none.
 */
export function locatedId(res: ApiResponse): string {
  const id = (res.headers.get('location') ?? '').match(/\/organizations\/sso\/saml\/provider-credentials\/([0-9a-f-]{36})$/)?.[1];
  if (!id) throw new Error(`no credential in Location: ${res.status} ${res.headers.get('location')} ${JSON.stringify(res.body)}`);
  return id;
}

/** Creates an organization through the admin API of `baseUrl` and returns its id and key. */
export async function createOrg(baseUrl: string, name = 'acme', extra: { parent_id?: string; headers?: Record<string, string> } = {}) {
  const res = await call(baseUrl, 'POST', '/admin/organizations', {
    body: { name, ...(extra.parent_id ? { parent_id: extra.parent_id } : {}) },
    headers: { ...adminHeaders, ...extra.headers },
  });
  if (res.status !== 201) throw new Error(`create org: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body as { id: string; name: string; parent_id: string | null; created_at: string; api_key: string };
}

export function slashidHeaders(org: { id: string; api_key: string }, extra: Record<string, string> = {}) {
  return { 'SlashID-OrgID': org.id, 'SlashID-API-Key': org.api_key, ...extra };
}

/**
 * Whether a statement of another connection (one or more) now waits on a lock `locker`'s connection holds.
 * The locker is in a transaction: the activity it reads is what the transaction's first look cached
 * (Postgres keeps one snapshot of it per transaction), so that snapshot is dropped first. Without it, a poll
 * that began before the other connection waited saw it not waiting, every time, until its time ran out.
 */
export async function blocksAnother(locker: Pick<import('pg').Client, 'query'>): Promise<boolean> {
  await locker.query('SELECT pg_stat_clear_snapshot()');
  const { rows } = await locker.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))');
  return (rows[0]?.n ?? 0) >= 1;
}

/** Polls `fn` until it returns true or the time runs out. */
export async function eventually(fn: () => Promise<boolean>, timeoutMs = 15_000, stepMs = 100): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await fn().catch(() => false)) return true;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return false;
}

/** A change's status as the region at `url` reports it (GET /admin/replication/changes/:id). */
export async function adminChangeStatus(url: string, changeId: string): Promise<any> {
  return (await call(url, 'GET', `/admin/replication/changes/${changeId}`, { headers: adminHeaders })).body;
}

/**
 * Waits (up to 15 s) until the region at `url` reports `changeId` pending in `regions` alone. An all_regions
 * write's 408 says only that not every region had acked within its timeout: on a loaded host a reachable
 * region's ack can come after it too.
 */
export async function pendingOnlyIn(url: string, changeId: string, regions: string[]): Promise<boolean> {
  return eventually(async () => JSON.stringify((await adminChangeStatus(url, changeId)).pending_regions) === JSON.stringify(regions), 15_000, 200);
}

/**
 * Waits (up to 30 s) until the region at `url` counts no region as needing a re-seed. A re-seed marks its
 * target active in each Redis and exits; a region's own view follows on the record's announcement (or its
 * refresh, every second), a moment later, and a group that was behind the cap once the target's applier has
 * read past the trim. Answers true, or what the region said last (its needs_reseed, members and groups), so
 * that a failure shows which of them held it (15 s was once not enough in a clean-clone CI, 2026-12-08).
 */
export async function reseedSeen(url: string): Promise<true | Record<string, unknown>> {
  let last: Record<string, unknown> = {};
  const seen = await eventually(async () => {
    const body = (await call(url, 'GET', '/admin/replication', { headers: adminHeaders })).body;
    last = { needs_reseed: body.needs_reseed, members: body.members, pending: body.pending };
    return body.needs_reseed?.length === 0;
  }, 30_000, 200);
  return seen ? true : last;
}

/**
 * Waits until the outbox in the region database at `databaseUrl` holds no change unconfirmed (each one applied by every
 * member). GET /admin/replication reads the same: its `outbox.unpublished` + `outbox.unconfirmed`; `unconfirmed` alone
 * reads 0 right after an all_regions write, which counts as unpublished until the origin records its deliveries
 * (test/replication/outbox-figures.test.ts).
 */
export async function outboxConfirmed(databaseUrl: string): Promise<boolean> {
  const db = new Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    return await eventually(async () => (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM replication_outbox WHERE confirmed_at IS NULL')).rows[0]?.n === 0, 30_000, 200);
  } finally {
    await db.end();
  }
}

/**
 * Runs one of the compiled operator scripts (dist/scripts/<name>.js) against the cluster's config, `env` over
 * this process's environment.
 * Asynchronous: a synchronous spawn would stop this process's event loop for the whole run, and a
 * keep-alive socket a region closed meanwhile would then be taken for the next request ("other side closed").
 */
export function runScript(cluster: Pick<Cluster, 'deployment'>, name: string, args: string[], env: Record<string, string> = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [path.join(PROJECT_ROOT, 'dist', 'scripts', `${name}.js`), ...args],
      { env: { ...process.env, REGIONS_CONFIG: cluster.deployment.configPath, ...env }, encoding: 'utf8', timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (err as NodeJS.ErrnoException & { code?: unknown }).code : 0;
        if (err && typeof code !== 'number') return reject(err);
        resolve({ status: typeof code === 'number' ? code : 0, stdout, stderr });
      },
    );
  });
}

/** Runs `npm run reseed` (its compiled script) against the cluster's config. */
export function runReseed(cluster: Pick<Cluster, 'deployment'>, from: string, to: string, extra: string[] = []): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return runScript(cluster, 'reseed', ['--from', from, '--to', to, ...extra]);
}
