import crypto from 'node:crypto';
import type { RequestListener } from 'node:http';
import express, { type Express, type Router } from 'express';
import type { Feature, FeatureDeps } from './feature';
import { adminAuth } from './http/admin-auth';
import { withAdmissionBlock, type Admission } from './http/admission';
import { edgeChecks } from './http/edges';
import { allowedMethodsOf } from './http/allowed-methods';
import { methodNotAllowed, notFound, type AppError } from './http/errors';
import { requestId } from './http/request-id';
import { errorEnvelope, slashidErrors } from './http/slashid';
import { infisicalErrors, renderError } from './infisical/errors';
import { API_ROOT } from './infisical/routes';
import { routePrefix, type Metrics } from './observability/metrics';
import type { ReadinessReport } from './observability/readiness';
import { allOperations } from './openapi/feature';
import { requestLog } from './observability/request-log';
import { adminGuard, healthRoutes } from './operator/routes';

export interface AppDeps extends FeatureDeps {
  features: readonly Feature[];
  /** Admin routes that are not a feature's (replication status). */
  extraAdminRoutes: Router[];
  /** Liveness details for /healthz. */
  health: () => Promise<Record<string, unknown>>;
  /** Readiness for /readyz: the database answers and is migrated. */
  readiness: () => Promise<ReadinessReport>;
  metrics: Metrics;
  /** Gates the API routes (src/http/admission.ts); health, metrics and admin routes pass no gate. */
  admission?: Admission;
  /** The database client of the admin routes (a pool of their own); `db` when absent. */
  adminDb?: FeatureDeps['db'];
}

export function createApp(deps: AppDeps): Express {
  // A path of the service asked with a method it does not take there is a 405 naming those it takes (the
  // Infisical dialect's paths answer 404 as Infisical's own server does: they end in its router's catch-all).
  const allowedOn = allowedMethodsOf(allOperations(deps.features).filter((op) => !isInfisical(op.path)));
  const noSuchEndpoint = (method: string, path: string): AppError => {
    const allow = allowedOn(path);
    return allow.length > 0 ? methodNotAllowed(method, allow) : notFound('No such endpoint.');
  };
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.use(requestId());
  app.use(requestLog(deps.log, deps.metrics));
  // What Node answered bare (see guardServer), and what it would have dropped: answered in the envelope,
  // before anything else (the OPTIONS answer below included).
  app.use(edgeChecks());
  // Express's routers answer an OPTIONS request themselves (200, text/plain, the path's methods) on any
  // path they route, past the routes' authentication: the service takes no OPTIONS (no browser calls its
  // APIs across origins), so it is answered like any other method a path does not take. Infisical's paths
  // answer it in their own envelope (their router ends in a catch-all).
  app.use((req, _res, next) => (req.method === 'OPTIONS' && !isInfisical(req.url) ? next(noSuchEndpoint(req.method, req.path)) : next()));

  // The console's pages (under /admin, public: they ask for the token), /openapi.json, health, metrics and
  // the admin API: paths of their own (UNGATED), so an API request skips all their routers' layers in one
  // test instead of matching each of them (Express walks every layer it meets).
  const operator = express.Router();
  for (const f of deps.features) if (f.pages) operator.use(f.pages(deps));
  operator.use(healthRoutes({ region: deps.config.region.id, health: deps.health, readiness: deps.readiness }));
  // Prometheus sends the admin token with `authorization: { credentials: … }` in its scrape config.
  const adminTokens = [deps.config.adminToken, ...deps.config.adminAcceptedTokens];
  operator.get('/metrics', adminAuth(adminTokens), deps.metrics.handler);
  operator.use('/admin', routePrefix(), ...adminGuard(adminTokens));
  const adminDeps = { ...deps, db: deps.adminDb ?? deps.db };
  for (const f of deps.features) if (f.adminRoutes) operator.use(f.adminRoutes(adminDeps));
  if (deps.admission) operator.get('/admin/replication', withAdmissionBlock(deps.admission));
  for (const r of deps.extraAdminRoutes) operator.use(r);
  app.use((req, res, next) => (isUngated(req.url) ? operator(req, res, next) : next()));

  if (deps.admission) {
    // A refusal leaves in the envelope of the API it was sent to: Infisical's under its prefix, else SlashID's.
    // Each refusal is rendered right behind the gate: under a flood thousands of them a second would
    // otherwise each walk every feature's router on the way to the error renderer at the end.
    app.use(API_ROOT, deps.admission.middleware, infisicalErrors(deps.log));
    app.use(deps.admission.middleware, slashidErrors(deps.log));
  }
  for (const f of deps.features) if (f.routes) app.use(f.routes(deps));

  app.use((req) => {
    throw noSuchEndpoint(req.method, req.path);
  });
  app.use(slashidErrors(deps.log));
  return app;
}

/** Paths the gates never see (they are answered before admission in createApp). */
const UNGATED = /^\/(admin|healthz|readyz|metrics|openapi\.json)(\/|\?|#|$)/i;

/**
 * A request target's path and query: an absolute-form target (`http://host/path`, which RFC 9112 has a
 * server accept, and Express routes by its path) without its scheme and authority.
 */
const pathOf = (url: string) => url.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, '');

/** Whether `url` is one of the UNGATED paths, matched as Express matches routes (any case, absolute form too; a fuzzing review found them 404 so). */
const isUngated = (url: string) => UNGATED.test(pathOf(url));

/**
 * The server's request handler: `app`, behind a front door that answers an API request the gates would
 * refuse at once (src/http/admission.ts) with its 503 straight away, in its dialect's envelope, before any
 * middleware runs. A flood of 10,000 connections is then mostly cheap refusals, and the event loop stays
 * free for the admin routes and the requests that were admitted. (Such refusals are counted by admission,
 * not in the per-route HTTP metrics.)
 */
/**
 * The Infisical dialect's paths, as Express matches them (any case; a query may follow the prefix): all of
 * /api, not /api/v1 alone, so that a client of that dialect naming another version is answered in its shape.
 */
const INFISICAL_PATH = new RegExp(`^${API_ROOT.replaceAll('/', '\\/')}(?:[/?#]|$)`, 'i');
const isInfisical = (url: string) => INFISICAL_PATH.test(pathOf(url));

/** A refusal in the envelope of the API `url` belongs to: Infisical's under its prefix, else SlashID's. */
export function refusalBody(url: string, refusal: AppError, id: string) {
  return isInfisical(url) ? renderError(refusal, id) : errorEnvelope(refusal);
}

export function frontDoor(app: Express, admission: Admission | undefined): RequestListener {
  if (!admission) return app;
  return (req, res) => {
    const url = req.url ?? '/';
    const refusal = isUngated(url) ? null : admission.refuseAtOnce(req.method);
    if (!refusal) return void app(req, res);
    const id = crypto.randomUUID();
    const body = refusalBody(url, refusal, id);
    res.writeHead(503, {
      'content-type': 'application/json; charset=utf-8',
      'x-content-type-options': 'nosniff',
      // As every answer of the app (request-id.ts).
      'cache-control': 'no-store',
      'x-request-id': id,
      'retry-after': String(refusal.extra.retryAfterSeconds ?? admission.limits.retryAfterSeconds),
      // The request's body is not read: this connection is not reused.
      connection: 'close',
    });
    res.end(JSON.stringify(body));
  };
}
