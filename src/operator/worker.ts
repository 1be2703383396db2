/**
 * The operator listener's thread (started by listener.ts): GET /healthz, /readyz and /admin/replication on
 * the operator port, with an event loop, a database pool and Redis connections of its own, so that they
 * answer while the main thread's loop is saturated by a flood (or blocked). What only the main thread knows
 * (waiters, admission, the relay's and applier's counters, members, Redis status) comes from the snapshot
 * it publishes every SNAPSHOT_INTERVAL_MS; the rest is read here when asked.
 *
 * No Prisma client here: a second one in this thread's isolate would cost ~90 MB; the status queries are
 * raw SQL, which a plain pg pool runs (SqlReader).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import express from 'express';
import { READINESS_POOL_SIZE, readerPool } from '../db/reader-pool';
import { methodNotAllowed, notFound } from '../http/errors';
import { noQuery } from '../http/no-query';
import { requestId } from '../http/request-id';
import { edgeChecks, guardServer, REQUEST_HEADERS_TIMEOUT_MS, SERVER_OPTIONS } from '../http/edges';
import { errorEnvelope, slashidErrors } from '../http/slashid';
import { createLogger } from '../logger';
import { createReadiness, joiningOf } from '../observability/readiness';
import { requestLog } from '../observability/request-log';
import { createRedis, replicationKeys } from '../redis';
import { replicationStatus } from '../replication/admin-status';
import { processConnectionName } from '../replication/connection-names';
import { PEER_COMMAND_TIMEOUT_MS, RedisLinks } from '../replication/links';
import { adminGuard, healthRoutes } from './routes';
import { OPERATOR_POOL_SIZE, STALLED_AFTER_MS, type FromWorker, type OperatorSnapshot, type OperatorWorkerData, type ToWorker } from './snapshot';
import { serverClasses } from '../http/server-classes';
import { routePrefix } from '../observability/metrics';

const d = workerData as OperatorWorkerData;
const port = parentPort;
if (!port) throw new Error('src/operator/worker.ts runs as a worker thread (src/operator/listener.ts starts it)');

const log = createLogger({ level: d.logLevel, region: d.region }).child({ listener: 'operator' });
const connectionFailed = (err: Error) => log.warn({ err: err.message }, 'operator listener: a database connection failed');
const db = readerPool(d.databaseUrl, OPERATOR_POOL_SIZE, connectionFailed);
// /readyz's own: /admin/replication's reads (several at once) may hold every connection of the other.
const readinessDb = readerPool(d.databaseUrl, READINESS_POOL_SIZE, connectionFailed);
const name = `${processConnectionName(d.keyPrefix, d.region)}:operator`;
const links = new RedisLinks({
  region: d.region, name, defaultUrl: d.defaultRedisUrl, configured: new Map(Object.entries(d.redisUrls)),
  own: createRedis(d.redisUrls[d.region] ?? d.defaultRedisUrl, `${name}:cmd`, { commandTimeoutMs: PEER_COMMAND_TIMEOUT_MS }),
});
const keys = replicationKeys(d.keyPrefix);

let snapshot: OperatorSnapshot | null = null;
const age = () => (snapshot ? Date.now() - snapshot.at : null);
const stalled = () => snapshot === null || (age() ?? 0) > (d.stalledAfterMs ?? STALLED_AFTER_MS);

const OWN_PATHS = ['/healthz', '/readyz', '/admin/replication'];
const notServed = () => notFound('The operator port serves GET /healthz, /readyz and /admin/replication; everything else is on the region\'s port.');

const app = express();
app.disable('x-powered-by');
app.set('trust proxy', false);
app.use(requestId());
app.use(requestLog(log));
app.use(edgeChecks());
// OPTIONS as the region's port answers it (app.ts): 405 on these paths, before the admin token; 404 elsewhere.
// Left to the routers, Express answered it itself on /healthz and /readyz (200, text/plain, the methods).
app.options(OWN_PATHS, (req) => {
  throw methodNotAllowed(req.method, ['GET', 'HEAD']);
});
app.use((req, _res, next) => (req.method === 'OPTIONS' ? next(notServed()) : next()));
app.use(healthRoutes({
  region: d.region,
  health: async () => ({
    ...(stalled() ? { status: 'stalled' } : {}),
    redis: snapshot?.redisStatus ?? 'unknown',
    main_thread: { snapshot_age_ms: age() },
  }),
  // A stalled main thread fails readiness too: a probe here must not keep a frozen region in service.
  readiness: createReadiness({
    db: readinessDb, log, redisStatus: () => snapshot?.redisStatus ?? 'unknown', draining: () => snapshot?.draining === true, stalled,
    joining: () => (snapshot ? joiningOf(snapshot.replication, d.region) : undefined),
    starting: () => snapshot?.serving === false,
  }),
}));
app.use('/admin', routePrefix(), ...adminGuard(d.adminTokens));
app.get('/admin/replication', noQuery(), async (_req, res) => {
  // Never null: the server listens once the first snapshot came.
  const s = snapshot as OperatorSnapshot;
  const status = await replicationStatus({ db, links, keys, region: d.region }, s.replication);
  res.json({
    ...status,
    ...(s.admission ? { admission: s.admission } : {}),
    snapshot: { taken_at: new Date(s.at).toISOString(), age_ms: Date.now() - s.at },
  });
});
// Its own paths asked with another method: 405 naming the methods, as the region's port answers them.
app.all(OWN_PATHS, (req) => {
  throw methodNotAllowed(req.method, ['GET', 'HEAD']);
});
app.use(() => {
  throw notServed();
});
app.use(slashidErrors(log));

const server = http.createServer({ ...serverClasses(app), ...SERVER_OPTIONS, connectionsCheckingInterval: 2000 }, app);
server.keepAliveTimeout = 5000;
// Its requests are GETs without a body: the headers' time is the whole request's.
server.requestTimeout = server.headersTimeout = REQUEST_HEADERS_TIMEOUT_MS;
// The region port's answers to what Node answers bare or not at all, in the admin API's envelope.
guardServer(server, app, (_path, refusal) => errorEnvelope(refusal));

port.on('message', (m: ToWorker) => {
  if (m.type === 'snapshot') {
    if (!snapshot) listen();
    snapshot = m.snapshot;
    // Members added at runtime: reach their Redis where the main thread does.
    for (const [region, url] of Object.entries(m.snapshot.replication.redisUrls)) links.learn(region, url);
  } else if (m.type === 'stop') {
    void stop();
  }
});

async function stop(): Promise<void> {
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
  links.disconnect();
  links.own.disconnect();
  await Promise.all([db.end(), readinessDb.end()]).catch(() => undefined);
  port?.close();
}

/** Listens once the main thread's first snapshot came (listener.ts sends it right away). */
function listen(): void {
  server.once('error', (err) => {
    throw err;
  });
  server.listen({ port: d.port, host: d.host }, () => {
    port?.postMessage({ type: 'listening', port: (server.address() as AddressInfo).port } satisfies FromWorker);
  });
}
