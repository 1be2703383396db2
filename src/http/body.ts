import { parse as parseContentType } from 'content-type';
import express, { type RequestHandler } from 'express';
import { badRequest } from './errors';
import { refuseUnstorableBody } from './storable-text';

export const BODY_LIMIT_BYTES = 64 * 1024;

const NO_BODY = 'A JSON request body is required.';

/**
 * Parses a JSON body; any other content type, a charset other than UTF-8 (JSON is UTF-8, RFC 8259), no body
 * (with a Content-Length of 0, or chunked and empty), or text Postgres cannot store in it is a 400 before
 * anything else runs.
 */
export function jsonBody(): RequestHandler {
  const parse = express.json({
    limit: BODY_LIMIT_BYTES,
    type: () => true,
    strict: false,
    // An empty chunked body would otherwise be parsed as {}. (body-parser wraps what verify throws as a 403;
    // the marker says which 400 it is.)
    verify: (_req, _res, buf) => {
      if (buf.length === 0) throw Object.assign(new Error(NO_BODY), { emptyBody: true });
    },
  });
  return (req, res, next) => {
    const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
    if (!hasBody) return next(badRequest(NO_BODY));
    const wrongType = () => badRequest(`Content-Type must be application/json (got '${(req.get('content-type') ?? 'none').slice(0, 100)}').`);
    if (!req.is('application/json')) return next(wrongType());
    // body-parser decodes any charset starting "utf-" (UTF-7 and UTF-16 included): text would arrive in a form
    // nothing upstream that reads the bytes saw (UTF-7's "+ADw-" is "<"). The charset is read as body-parser
    // reads it (quoted parameters, the last of a repeated one), not with a pattern of our own.
    let charset: string | undefined;
    try {
      charset = parseContentType(req.headers['content-type'] ?? '').parameters.charset?.toLowerCase();
    } catch {
      return next(wrongType());
    }
    if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') return next(badRequest('The request body must be UTF-8 encoded JSON.'));
    // body-parser knows UTF-8 only by that name; "utf8" is the same encoding.
    if (charset === 'utf8') req.headers['content-type'] = 'application/json; charset=utf-8';
    parse(req, res, (err?: unknown) => {
      if (err) return next((err as { emptyBody?: boolean }).emptyBody ? badRequest(NO_BODY) : err);
      try {
        refuseUnstorableBody(req.body);
      } catch (refused) {
        return next(refused);
      }
      next();
    });
  };
}
