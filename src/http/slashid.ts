/**
 * The SlashID dialect: the {meta, errors, result} envelope, its error renderer, and API-key authentication
 * (SlashID-API-Key for the org in SlashID-OrgID, or for one of its ancestors).
 */
import type { ErrorRequestHandler, RequestHandler, Response } from 'express';
import type { Db } from '../db/client';
import type { Logger } from '../logger';
import { authenticateApiKey } from '../organizations/service';
import { isSelfOrAncestor } from '../organizations/store';
import { AppError, asAppError, badRequest, forbidden, unauthorized } from './errors';
import { getRequestId } from './request-id';
import { UUID_PATTERN } from './validate';

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
    const known = asAppError(err);
    if (!known) {
      log.error({ err, requestId: getRequestId(res), method: req.method, path: req.path }, 'unhandled error');
    }
    const e = known ?? new AppError(500, 'internal', `Internal error; quote request id ${getRequestId(res)} when reporting it.`);
    if (res.headersSent) return;
    res.status(e.status).json(errorEnvelope(e));
  };
}

const UUID = new RegExp(UUID_PATTERN);

export function isUuid(s: string): boolean {
  return UUID.test(s);
}

/** Resolves the organization the request acts on, or answers 401/400/403. */
export function slashidAuth(db: Db): RequestHandler {
  return async (req, res, next) => {
    const apiKey = req.get('SlashID-API-Key');
    if (!apiKey) throw unauthorized('Missing SlashID-API-Key header.');
    const keyOrg = await authenticateApiKey(db, apiKey);
    if (!keyOrg) throw unauthorized('The API key in SlashID-API-Key is not valid.');
    const orgId = req.get('SlashID-OrgID');
    if (!orgId) throw badRequest('Missing SlashID-OrgID header.');
    if (!isUuid(orgId)) throw badRequest(`SlashID-OrgID must be an organization ID (a UUID), got '${orgId}'.`);
    // authenticateApiKey only returns organizations that exist, so the common case needs no query.
    if (keyOrg !== orgId.toLowerCase() && !(await isSelfOrAncestor(db, keyOrg, orgId.toLowerCase()))) {
      throw forbidden(`This API key is not valid for organization ${orgId}.`);
    }
    res.locals.orgId = orgId.toLowerCase();
    next();
  };
}

export function orgIdOf(res: Response): string {
  const id: unknown = res.locals.orgId;
  if (typeof id !== 'string') throw new Error('slashidAuth did not run before this handler');
  return id;
}
