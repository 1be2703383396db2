/**
 * One JSON line per request: request id, method, path, route pattern, status, duration and, once
 * authentication resolved it, the organization. No headers and no bodies: they carry API keys, tokens and
 * tenants' data. Mount after requestId() so the line carries the id the client sees.
 * Written here rather than with pino-http: that builds a child logger and serializers for every request
 * whether or not the line is written (~8 % of a region's CPU on a read-heavy load, measured with --cpu-prof).
 */
import type { Request, RequestHandler, Response } from 'express';
import { getRequestId } from '../http/request-id';
import type { Logger } from '../logger';
import { routePattern } from './metrics';

export function requestLog(log: Logger): RequestHandler {
  return (req, res, next) => {
    const start = performance.now();
    res.once('close', () => {
      // A 503 is admission control refusing a request under overload (src/http/admission.ts): an answer, not
      // a failure, and one that can come thousands of times a second. Admission logs a summary of them.
      const status = res.statusCode;
      const level = status >= 500 && status !== 503 ? 'error' : 'info';
      if (!log.isLevelEnabled(level)) return;
      // The error itself was logged, with the request id, by the dialect's error middleware.
      log[level](line(req, res, Math.round((performance.now() - start) * 1000) / 1000), 'request');
    });
    next();
  };
}

function line(req: Request, res: Response, ms: number) {
  return {
    requestId: getRequestId(res),
    method: req.method,
    path: req.path,
    route: routePattern(req),
    status: res.statusCode,
    ms,
    // The client went away before the answer was written.
    ...(res.writableFinished ? {} : { aborted: true }),
    ...orgOf(res),
  };
}

/** The organization the request acted for, as the dialect's authentication resolved it (never a raw header). */
function orgOf(res: Response): { orgId?: string } {
  const id: unknown = res.locals.orgId ?? res.locals.tokenOrgId;
  return typeof id === 'string' ? { orgId: id } : {};
}
