/**
 * One JSON line per request (pino-http): request id, method, path, route pattern, status, duration and,
 * once authentication resolved it, the organization. No headers and no bodies: they carry API keys,
 * tokens and tenants' data. Mount after requestId() so the line carries the id the client sees.
 */
import type { Request, Response } from 'express';
import { pinoHttp, type HttpLogger } from 'pino-http';
import { getRequestId } from '../http/request-id';
import type { Logger } from '../logger';
import { routePattern } from './metrics';

export function requestLog(log: Logger): HttpLogger<Request, Response> {
  const line = (req: Request, res: Response, responseTime: number) => ({
    method: req.method,
    path: req.path,
    route: routePattern(req),
    status: res.statusCode,
    ms: responseTime,
    ...orgOf(res),
  });
  return pinoHttp<Request, Response>({
    logger: log,
    genReqId: (_req, res) => getRequestId(res),
    customAttributeKeys: { reqId: 'requestId' },
    // The request id alone on req.log / res.log, instead of the whole serialized request.
    quietReqLogger: true,
    quietResLogger: true,
    // A 503 is admission control refusing a request under overload (src/http/admission.ts): an answer, not a
    // failure, and one that can come thousands of times a second. Admission logs a summary of them instead.
    customLogLevel: (_req, res, err) => (res.statusCode === 503 ? 'info' : err || res.statusCode >= 500 ? 'error' : 'info'),
    customSuccessMessage: () => 'request',
    customErrorMessage: () => 'request',
    customSuccessObject: (req, res, val: { responseTime: number }) => line(req, res, val.responseTime),
    // The error itself was logged, with the request id, by the dialect's error middleware.
    customErrorObject: (req, res, _err, val: { responseTime: number }) => line(req, res, val.responseTime),
  });
}

/** The organization the request acted for, as the dialect's authentication resolved it (never a raw header). */
function orgOf(res: Response): { orgId?: string } {
  const id: unknown = res.locals.orgId ?? res.locals.tokenOrgId;
  return typeof id === 'string' ? { orgId: id } : {};
}
