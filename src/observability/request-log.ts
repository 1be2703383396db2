/**
 * One JSON line per request: request id, method, path, route pattern, status, duration and, once
 * authentication resolved it, the organization. No headers and no bodies: they carry API keys, tokens and
 * tenants' data. Mount after requestId() so the line carries the id the client sees. Given the region's
 * metrics, the same listener records the request there (one listener per request for both).
 * Written here rather than with pino-http: that builds a child logger and serializers for every request
 * whether or not the line is written (~8 % of a region's CPU on a read-heavy load, measured with --cpu-prof).
 */
import type { Request, RequestHandler, Response } from 'express';
import { edgeAnsweredStatus } from '../http/edges';
import { getRequestId } from '../http/request-id';
import { requestPath } from '../http/url';
import type { Logger } from '../logger';
import { routePattern, type Metrics } from './metrics';

export function requestLog(log: Logger, metrics?: Pick<Metrics, 'observe'>): RequestHandler {
  return (req, res, next) => {
    const start = performance.now();
    // One listener per request for both the line and the metrics ('close' comes after 'finish', and also
    // when the client went away first).
    res.once('close', () => {
      const ms = performance.now() - start;
      // A request the listener's edge answered (its body did not arrive whole in time) has that answer's status.
      const edge = edgeAnsweredStatus(res);
      const answered = res.writableFinished || edge !== undefined;
      // Only answered requests are timed (as before: on 'finish'), the edge's answers included.
      if (metrics && answered) metrics.observe(req, res, ms / 1000, edge);
      // A 503 is admission control refusing a request under overload (src/http/admission.ts): an answer, not
      // a failure, and one that can come thousands of times a second. Admission logs a summary of them.
      // None when nothing was answered (the client went away first): statusCode would read its default, 200.
      const status = edge ?? (res.headersSent ? res.statusCode : null);
      const level = status !== null && status >= 500 && status !== 503 ? 'error' : 'info';
      if (!log.isLevelEnabled(level)) return;
      // The error itself was logged, with the request id, by the dialect's error middleware.
      log[level](line(req, res, status, answered, Math.round(ms * 1000) / 1000), 'request');
    });
    next();
  };
}

function line(req: Request, res: Response, status: number | null, answered: boolean, ms: number) {
  return {
    requestId: getRequestId(res),
    method: req.method,
    path: requestPath(req),
    route: routePattern(req),
    status,
    ms,
    // The client went away before the answer was written.
    ...(answered ? {} : { aborted: true }),
    ...orgOf(res),
  };
}

/** The organization the request acted for, as the dialect's authentication resolved it (never a raw header). */
function orgOf(res: Response): { orgId?: string } {
  const id: unknown = res.locals.orgId ?? res.locals.tokenOrgId;
  return typeof id === 'string' ? { orgId: id } : {};
}
