/**
 * One region process: migrate its database, connect Redis, start replication and background jobs, serve
 * HTTP. `stop()` shuts down in order: stop accepting, let in-flight requests finish (their waits end by
 * their own deadline at the latest), stop background work, flush the outbox, disconnect.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp, frontDoor, refusalBody } from './app';
import { guardServer, REQUEST_HEADERS_TIMEOUT_MS, REQUEST_TIMEOUT_MS, SERVER_OPTIONS } from './http/edges';
import { httpUrl } from './http/url';
import { ADMIN_POOL_SIZE, admissionLimits, DB_POOL_SIZE, type Config } from './config';
import { createDb } from './db/client';
import { READINESS_POOL_SIZE, readerPool } from './db/reader-pool';
import { ensureDatabase, migrate, MigrationFailed, MigrationRefused } from './db/migrate';
import type { Feature } from './feature';
import { FEATURES } from './features';
import { createAdmission } from './http/admission';
import { closeIdpConnections } from './metadata/fetch-metadata';
import { createLogger, type Logger } from './logger';
import { registerAdmissionMetrics } from './observability/admission-metrics';
import { createMetrics } from './observability/metrics';
import { createReadiness, joiningOf } from './observability/readiness';
import { RedisLiveness, watchRedis } from './observability/redis-liveness';
import { registerReplicationMetrics } from './observability/replication-metrics';
import { startOperatorListener, type OperatorListener } from './operator/listener';
import { createReplication } from './replication';
import { withoutCredentials } from './replication/links';
import { reseedCommand } from './replication/reseed-command';
import { databaseAddress } from './db/address';
import { serverClasses } from './http/server-classes';
import { checkListen } from './listen-check';

/** The listening socket's accept queue (see the listen call). */
export const LISTEN_BACKLOG = 4096;

/** How long a stopping region waits for in-flight requests (an all_regions wait may last 120 s). */
export const DEFAULT_DRAIN_TIMEOUT_MS = 125_000;

export interface RegionOptions {
  features?: readonly Feature[];
  log?: Logger;
  /** Listen on this port instead of the configured one (0 = any free port; tests use it). */
  port?: number;
  /** The operator listener's port instead of the configured `operatorPort` (0 = any free port); null: none. */
  operatorPort?: number | null;
  /** When the operator port's /healthz says `stalled` (default 30 s; tests shorten it). */
  operatorStalledAfterMs?: number;
  /** Longest time to wait for in-flight requests on stop. */
  drainTimeoutMs?: number;
  /** How long a request has to arrive whole (default REQUEST_TIMEOUT_MS; tests shorten it). */
  requestTimeoutMs?: number;
  /** How long the start waits for the check of the region's database before it serves (default START_CHECK_WAIT_MS). */
  startCheckWaitMs?: number;
}

/**
 * How long the start waits for the check of its database (restore-check.ts) before its port opens. The check
 * needs the region's own Redis (and tries the peers' for a couple of seconds each): within this it has run
 * unless that Redis is down or hangs; then the region serves unchecked rather than not at all (without Redis
 * it still serves reads and local_region writes), and the check runs once Redis answers.
 */
export const START_CHECK_WAIT_MS = 10_000;

/**
 * A start that fails for a reason the operator fixes (the database refuses, a port cannot be bound): main.ts
 * prints its message as one line, without a stack.
 */
export class StartupError extends Error {}

/** Creates the region's database if missing and migrates it; a failure names the database and what it said. */
async function prepareDatabase(databaseUrl: string): Promise<{ created: boolean; applied: string[] }> {
  const failed = (err: unknown) => {
    const e = err as Error & { code?: string };
    return new StartupError(
      `cannot prepare the region's database at ${databaseAddress(databaseUrl)} (its databaseUrl in REGIONS_CONFIG, or DATABASE_URL): ${e.message}${typeof e.code === 'string' ? ` (${e.code})` : ''}`,
      { cause: err },
    );
  };
  // Reaching the database: whatever fails here is the server's, the network's or TLS's answer (some carry no code).
  const created = await ensureDatabase(databaseUrl).catch((err: unknown) => {
    throw failed(err);
  });
  // Migrating it: what the database said (to a migration's SQL too), or a record of it this version refuses,
  // is one line; a fault of ours keeps its stack.
  const applied = await migrate(databaseUrl).catch((err: unknown) => {
    const theirs = typeof (err as { code?: unknown }).code === 'string' || err instanceof MigrationFailed || err instanceof MigrationRefused;
    throw theirs ? failed(err) : err;
  });
  return { created, applied };
}

/**
 * The start's last line. `region ready` (what scripts and tests wait for) only for a region that takes traffic:
 * a joining member while another member is active answers /readyz 503 until it is re-seeded (readiness.ts), and
 * its line says so, with the command that seeds it (README, "Adding a region"). One joining with no other member
 * active serves what it holds: ready, saying joining.
 */
function logStarted(log: Logger, url: string, config: Config, figures: Parameters<typeof joiningOf>[0]): void {
  const region = config.region.id;
  const { joining, othersActive } = joiningOf(figures, region);
  if (!joining || !othersActive) {
    log.info({ url, ...(joining ? { joining: true } : {}) }, 'region ready');
    return;
  }
  const peer = figures.members.find((m) => m.region !== region && m.state === 'active' && m.verified !== false)?.region ?? '<an active region>';
  const reseed = reseedCommand(config, region, peer);
  log.warn({ url, joining: true, reseed }, `region up, not taking traffic until re-seeded (joining: /readyz answers 503): run ${reseed}`);
}

export async function startRegion(config: Config, opts: RegionOptions = {}) {
  const log = opts.log ?? createLogger({ level: config.logLevel, region: config.region.id });
  const features = opts.features ?? FEATURES;
  // Its ports first: one taken fails the start before the database is created and migrated and before the
  // region registers in the deployment (a new region registered joining is counted, and delivered every
  // change, by the regions running, until it is removed or started). The listens below can still fail if
  // another process takes a port meanwhile.
  const host = config.region.host ?? '127.0.0.1';
  const operatorPort = opts.operatorPort === undefined ? config.region.operatorPort : opts.operatorPort;
  await checkListen(host, opts.port ?? config.region.port);
  if (operatorPort !== undefined && operatorPort !== null) await checkListen(host, operatorPort);
  const { created, applied } = await prepareDatabase(config.region.databaseUrl);
  log.info({ created, applied }, 'database ready');

  const db = createDb(config.region.databaseUrl, { poolSize: DB_POOL_SIZE });
  // The operator's routes (admin, readiness, metrics) read through a small pool of their own, so that they
  // answer while API requests hold or queue for every connection of the main pool (src/http/admission.ts).
  const adminDb = createDb(config.region.databaseUrl, { poolSize: ADMIN_POOL_SIZE });
  // /readyz reads on a connection no other route uses: the admin routes' and /metrics' reads may hold every
  // connection of adminDb (several at once per request), and a probe waiting behind them said "unreachable".
  const readinessDb = readerPool(config.region.databaseUrl, READINESS_POOL_SIZE, (err) => log.warn({ err: err.message }, 'readiness: a database connection failed'));
  const replication = await createReplication({ config, db, log, tables: features.flatMap((f) => f.tables) });
  const deps = { config, db, repl: replication.repl, log, redis: replication.redis };
  // A registry of this region's own: figures are read at scrape time from what replication and features keep.
  const metrics = createMetrics({ region: config.region.id });
  registerReplicationMetrics(metrics.registry, { db: adminDb, region: config.region.id, regions: config.regions.map((r) => r.id), ...replication });
  for (const f of features) f.metrics?.({ ...deps, db: adminDb }, metrics.registry);
  // Bounds the API's use of the database pool; overload is answered 503 at the door (src/http/admission.ts).
  const admission = createAdmission(admissionLimits(config), log);
  registerAdmissionMetrics(metrics.registry, admission);
  // ioredis' status stays 'ready' while its Redis hangs; /healthz, /readyz and the operator port ask this.
  const redisLiveness = new RedisLiveness(replication.redis);
  // Set by stop(): /readyz on either port answers 503 from then on.
  let draining = false;
  // Set once the region's port listens: until then the operator port (which listens first) says not ready.
  let serving = false;
  const app = createApp({
    ...deps,
    features,
    adminDb,
    extraAdminRoutes: [replication.adminRoutes(adminDb)],
    health: async () => ({ redis: redisLiveness.status() }),
    readiness: createReadiness({
      db: readinessDb, log, redisStatus: () => redisLiveness.status(), draining: () => draining,
      joining: () => joiningOf(replication.figures(), config.region.id),
    }),
    metrics,
    admission,
  });
  const handle = frontDoor(app, admission);
  // Before any background work starts: an operator port taken since the check above fails the start here.
  const operator: OperatorListener | null =
    operatorPort === undefined || operatorPort === null
      ? null
      : await startOperatorListener({
          log,
          data: {
            region: config.region.id, host, port: operatorPort,
            databaseUrl: config.region.databaseUrl, redisUrls: replication.redisUrls, defaultRedisUrl: config.redisUrl,
            keyPrefix: config.redisKeyPrefix, adminTokens: [config.adminToken, ...config.adminAcceptedTokens], logLevel: config.logLevel,
            ...(opts.operatorStalledAfterMs !== undefined ? { stalledAfterMs: opts.operatorStalledAfterMs } : {}),
          },
          snapshot: () => ({ redisStatus: redisLiveness.status(), replication: replication.figures(), admission: admission.status(), draining, serving }),
        });
  await replication.start();
  // A database restored from a backup or replaced is marked joining (needs_reseed) before the region serves:
  // never served as `active` on it, nor counted so by its peers, for the second until the check ran.
  await replication.startChecked(opts.startCheckWaitMs ?? START_CHECK_WAIT_MS);
  const stops = features.flatMap((f) => (f.start ? [f.start(deps)] : []));

  // Requests and responses built with Express's prototypes already in place (see server-classes.ts).
  // Node checks the request timeouts below every connectionsCheckingInterval (30 s by default).
  const onRequest: http.RequestListener = (req, res) => {
    // While draining, end keep-alive connections after their current request so the server can close.
    if (draining) res.setHeader('Connection', 'close');
    handle(req, res);
  };
  const server = http.createServer({ ...serverClasses(app), ...SERVER_OPTIONS, connectionsCheckingInterval: 2000 }, onRequest);
  server.keepAliveTimeout = 5000;
  // A request arrives whole within these (Node's defaults: 60 s for the headers, 300 s for all of it); the
  // largest body taken is 512 KB. A request still arriving gets a 408 (guardServer).
  server.requestTimeout = opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  server.headersTimeout = Math.min(REQUEST_HEADERS_TIMEOUT_MS, server.requestTimeout);
  guardServer(server, onRequest, refusalBody);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // A deep accept queue: under a flood, connections wait there to be answered (503 at once when admission
    // is full) instead of having their SYNs dropped and retried seconds later. The kernel caps it at somaxconn.
    server.listen({ port: opts.port ?? config.region.port, host, backlog: LISTEN_BACKLOG }, () => resolve());
  }).catch(async (err: unknown) => {
    // The operator listener's thread would otherwise keep a process that failed to start alive.
    await operator?.stop();
    throw err;
  });
  const { port } = server.address() as AddressInfo;
  const url = httpUrl(host, port);
  serving = true;
  operator?.publish();
  logStarted(log, url, config, replication.figures());
  const ownRedisUrl = replication.redisUrls[config.region.id];
  const redisWatch = watchRedis(redisLiveness, log, ownRedisUrl ? { url: withoutCredentials(ownRedisUrl) } : {});

  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      log.info('shutting down');
      redisWatch.stop();
      draining = true;
      operator?.publish();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const idleSweep = setInterval(() => server.closeIdleConnections(), 100);
      const drained = await Promise.race([
        closed.then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), opts.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS).unref()),
      ]);
      clearInterval(idleSweep);
      if (!drained) server.closeAllConnections();
      for (const s of stops) await s().catch((err: Error) => log.error({ err: err.message }, 'feature stop failed'));
      await operator?.stop();
      await replication.stop();
      await db.$disconnect();
      await adminDb.$disconnect();
      await readinessDb.end();
      // Kept-alive connections to IdPs (shared by the process's regions: another one opens new ones).
      await closeIdpConnections();
      log.info('stopped');
    })());

  return { server, url, port, operator, db, adminDb, replication, admission, log, stop };
}

export type RunningRegion = Awaited<ReturnType<typeof startRegion>>;
