/**
 * Prometheus metrics of one region process, served at GET /metrics behind the admin token. Each region
 * gets a registry of its own (never prom-client's global one), so several regions in one process — the
 * in-process tests — do not collide. The request path pays for one histogram observation; everything
 * else (replication, metadata refresh) is read when Prometheus scrapes, by collect callbacks registered
 * next to the code that knows the figures.
 */
import type { Request, RequestHandler, Response } from 'express';
import { collectDefaultMetrics, Histogram, Registry } from 'prom-client';

export interface Metrics {
  registry: Registry;
  /**
   * Records a request that was answered (its duration by route pattern, method and status, and its
   * consistency wait): called once per request by the request observer (request-log.ts).
   */
  /** `status`: the answer's, when it was not written through `res` (the listener's edge answered it). */
  observe(req: Request, res: Response, seconds: number, status?: number): void;
  /** Answers GET /metrics (mount it behind the admin token). */
  handler: RequestHandler;
}

/** Request durations are mostly milliseconds; all_regions waits last up to the 120 s maximum timeout. */
const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export function createMetrics(opts: { region: string }): Metrics {
  const registry = new Registry();
  registry.setDefaultLabels({ region: opts.region });
  collectDefaultMetrics({ register: registry });

  const requests = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP requests by route pattern, method and status (the _count is the number of requests).',
    labelNames: ['route', 'method', 'status'] as const,
    buckets: HTTP_BUCKETS,
    registers: [registry],
  });
  const waits = new Histogram({
    name: 'consistency_wait_seconds',
    help: 'Replicated writes by consistency level and outcome (reached, timeout = 408, conflict = 409, error), from request start.',
    labelNames: ['level', 'outcome'] as const,
    buckets: HTTP_BUCKETS,
    registers: [registry],
  });

  // The labelled histogram per route, method and status, kept: prom-client hashes the label values of
  // every observe() it is given them on, where the kept child observes straight away.
  const children = new Map<string, ReturnType<typeof requests.labels>>();
  const observe = (req: Request, res: Response, seconds: number, answered = res.statusCode) => {
    const route = routePattern(req);
    const status = String(answered);
    const key = `${route} ${req.method} ${status}`;
    let child = children.get(key);
    if (!child) {
      child = requests.labels({ route, method: req.method, status });
      // Route patterns and methods are few; a bound all the same (unknown methods reach the 404 route).
      if (children.size < 10_000) children.set(key, child);
    }
    child.observe(seconds);
    const wait = consistencyWait(req, res);
    if (wait) waits.observe(wait, seconds);
  };

  const handler: RequestHandler = async (_req, res) => {
    const body = await registry.metrics();
    res.set('Content-Type', registry.contentType).send(body);
  };

  return { registry, observe, handler };
}

/**
 * The Express route pattern that answered (`/organizations/:orgId`), never the raw path, so ids do not
 * become label values. A request answered before a route matched, under a prefix whose guards run first
 * (routePrefix: the API key or admin token check, the URL check), is labelled with that prefix and `/*`;
 * any other (404) shares one value. Routers are mounted at the root, so the pattern is the route's own path.
 */
export function routePattern(req: Request): string {
  const route: unknown = req.route;
  if (route && typeof route === 'object' && 'path' in route && typeof route.path === 'string') return mountPath(req) + route.path;
  const prefix: unknown = req.res?.locals.routePrefix;
  return typeof prefix === 'string' ? `${prefix}/*` : '(unmatched)';
}

/**
 * Mounted first among a prefix's guards (`router.use(prefix, routePrefix(), guard)`): notes the prefix, so
 * that a request a guard answers (401, 403, 400) is logged and counted under it rather than unmatched.
 */
export function routePrefix(): RequestHandler {
  return (req, res, next) => {
    res.locals.routePrefix = mountPath(req);
    next();
  };
}

/**
 * The path the request's router is mounted at, as the service declares it. Express matches paths in any
 * case and `req.baseUrl` keeps the client's (`/API/V1`): as a label it would make a series per spelling,
 * which anyone could send without a token until a scrape weighed megabytes (a review, 2026-12-06). Every
 * mount path the service declares is lower case.
 */
function mountPath(req: Request): string {
  return req.baseUrl.toLowerCase();
}

/**
 * A request waited for a consistency level when it committed a replicated write (the routes answer its
 * X-Change-Id) or answered 408 (only a consistency timeout does). Its outcome is its status.
 */
function consistencyWait(req: Request, res: Response): { level: string; outcome: string } | null {
  const status = res.statusCode;
  if (res.getHeader('x-change-id') === undefined && status !== 408) return null;
  const level = req.get('SlashID-Required-Consistency') === 'all_regions' ? 'all_regions' : 'local_region';
  const outcome = status === 408 ? 'timeout' : status === 409 ? 'conflict' : status < 300 ? 'reached' : 'error';
  return { level, outcome };
}

/** A scrape starts every collect callback at once: those calls share one load (null when it fails). */
export function shared<T>(load: () => Promise<T>): () => Promise<T | null> {
  let pending: Promise<T | null> | null = null;
  return () =>
    (pending ??= load()
      .catch(() => null)
      .finally(() => {
        pending = null;
      }));
}
