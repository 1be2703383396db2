/**
 * The SlashID dialect: the {meta, errors, result} envelope and its error renderer. Its API-key
 * authentication belongs to the feature that owns the keys: src/organizations/slashid-auth.ts.
 */
import type { ErrorRequestHandler } from 'express';
import type { Logger } from '../logger';
import { AppError, asAppError } from './errors';
import { getRequestId } from './request-id';
import { requestPath } from './url';

export interface Pagination {
  limit: number;
  offset: number;
  total_count: number;
}

export function envelope(result: unknown, meta: { pagination?: Pagination } = {}) {
  return { meta, errors: [] as { httpcode: number; message: string }[], result };
}

export function errorEnvelope(err: AppError) {
  const body: { meta: object; errors: { httpcode: number; message: string }[]; result?: unknown } = {
    meta: {},
    errors: [{ httpcode: err.status, message: err.message }],
  };
  if (err.extra.result !== undefined) body.result = err.extra.result;
  return body;
}

export function slashidErrors(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const known = asAppError(err, req.method);
    if (!known) {
      log.error({ err, requestId: getRequestId(res), method: req.method, path: requestPath(req) }, 'unhandled error');
    }
    const e = known ?? new AppError(500, 'internal', `Internal error; quote request id ${getRequestId(res)} when reporting it.`);
    if (res.headersSent) return;
    if (e.extra.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(e.extra.retryAfterSeconds));
    if (e.extra.allow) res.setHeader('Allow', e.extra.allow.join(', '));
    res.status(e.status).json(errorEnvelope(e));
  };
}
