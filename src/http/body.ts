import express, { type RequestHandler } from 'express';
import { badRequest } from './errors';
import { refuseUnstorableBody } from './storable-text';

export const BODY_LIMIT_BYTES = 64 * 1024;

/**
 * Parses a JSON body; any other content type, no body, or text Postgres cannot store in it is a 400 before
 * anything else runs.
 */
export function jsonBody(): RequestHandler {
  const parse = express.json({ limit: BODY_LIMIT_BYTES, type: () => true, strict: false });
  return (req, res, next) => {
    const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
    if (!hasBody) return next(badRequest('A JSON request body is required.'));
    if (!req.is('application/json')) {
      return next(badRequest(`Content-Type must be application/json (got '${(req.get('content-type') ?? 'none').slice(0, 100)}').`));
    }
    parse(req, res, (err?: unknown) => {
      if (err) return next(err);
      try {
        refuseUnstorableBody(req.body);
      } catch (refused) {
        return next(refused);
      }
      next();
    });
  };
}
