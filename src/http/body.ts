import { isUtf8 } from 'node:buffer';
import { parse as parseContentType } from 'content-type';
import express, { type Request, type RequestHandler, type Response } from 'express';
import { receivingOutsideAdmission } from './admission';
import { repeatedKey } from './duplicate-keys';
import { badRequest, bodyTooLarge, shownHeader, shownText } from './errors';
import { sentOnce } from './header-count';
import { refuseUnstorableBody } from './storable-text';

export const BODY_LIMIT_BYTES = 64 * 1024;

const NO_BODY = 'A JSON request body is required.';
const NOT_UTF8 = 'The request body must be UTF-8 encoded JSON.';

/** Each parsed body's text, for the repeated-key check (verify sees it; the parsed value does not keep it). */
const bodyText = new WeakMap<Request, Buffer>();

function repeatedKeyRefusal(req: Request): ReturnType<typeof badRequest> | null {
  const raw = bodyText.get(req);
  bodyText.delete(req);
  const found = raw === undefined ? null : repeatedKey(raw.toString('utf8'), req.body);
  if (found === null) return null;
  const where = found.path ? ` in ${shownText(found.path, 120)}` : '';
  return badRequest(
    `The request body names the field ${shownText(found.key)} more than once${where}; send each field once (JSON parsers differ on which value counts).`,
  );
}

/**
 * Whether the body's Content-Length (without a Content-Encoding: a decoded size shows only while reading) is
 * over the limit; if so, `res` will close the connection after its answer (the body is refused unread, and
 * its bytes would otherwise be read as the next request). The body parser reads the declared bytes off
 * before its refusal, to keep the connection: a client that declared 100 MB and sent one byte was answered
 * 408 at the request timeout instead of 400 (a review, 2026-12-06).
 */
function declaredTooLarge(req: Request, res: Response): boolean {
  if (req.headers['content-encoding'] !== undefined) return false;
  if (!(Number(req.headers['content-length'] ?? 0) > BODY_LIMIT_BYTES)) return false;
  res.setHeader('Connection', 'close');
  return true;
}

/**
 * A parameter of a Content-Type the content-type package parsed (so well formed: each parameter matches in
 * turn), its name and value; a quoted value is taken whole, so a "charset=" inside one is not a parameter.
 */
const PARAMETER = /;\s*([^\s=;]+)\s*=\s*(?:"(?:[^"\\]|\\.)*"|[^;\s]*)/g;
const timesNamed = (contentType: string, name: string): number =>
  [...contentType.matchAll(PARAMETER)].filter((m) => m[1]?.toLowerCase() === name).length;

/** Whether the request says it has a body (chunked, or a Content-Length above 0). */
export const hasBody = (req: Request): boolean =>
  req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;

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
    verify: (req, _res, buf) => {
      if (buf.length === 0) throw Object.assign(new Error(NO_BODY), { emptyBody: true });
      // Decoded as it is, a byte sequence that is not UTF-8 (a raw surrogate, 0xFF, an overlong form) became
      // U+FFFD and was stored and replicated so, where the escaped form (\ud800) is refused.
      if (!isUtf8(buf)) throw Object.assign(new Error(NOT_UTF8), { notUtf8: true });
      bodyText.set(req as Request, buf);
    },
  });
  const receive = receivingOutsideAdmission(parse);
  return (req, res, next) => {
    if (!hasBody(req)) return next(badRequest(NO_BODY));
    // Node keeps the first of two Content-Types; a proxy in front may have read the other.
    sentOnce(req, 'Content-Type', badRequest);
    const wrongType = () => {
      const type = req.get('content-type');
      return badRequest(`Content-Type must be application/json (got ${type === undefined ? 'none' : shownHeader(type)}).`);
    };
    if (!req.is('application/json')) return next(wrongType());
    // body-parser decodes any charset starting "utf-" (UTF-7 and UTF-16 included): text would arrive in a form
    // nothing upstream that reads the bytes saw (UTF-7's "+ADw-" is "<"). The charset is read as body-parser
    // reads it (quoted parameters, the first of a repeated one), not with a pattern of our own.
    let charset: string | undefined;
    const contentType = req.headers['content-type'] ?? '';
    try {
      charset = parseContentType(contentType).parameters.charset?.toLowerCase();
    } catch {
      return next(wrongType());
    }
    // A proxy in front that reads another of two charsets decodes the body otherwise than it is read here.
    if (timesNamed(contentType, 'charset') > 1) {
      return next(badRequest(`The Content-Type names charset more than once (got ${shownHeader(contentType)}); send it once (parsers differ on which one counts).`));
    }
    if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') return next(badRequest(NOT_UTF8));
    // body-parser knows UTF-8 only by that name; "utf8" is the same encoding.
    if (charset === 'utf8') req.headers['content-type'] = 'application/json; charset=utf-8';
    if (declaredTooLarge(req, res)) return next(bodyTooLarge(BODY_LIMIT_BYTES));
    receive(req, res, (err?: unknown) => {
      const marked = err as { emptyBody?: boolean; notUtf8?: boolean } | undefined;
      if (err) return next(marked?.emptyBody ? badRequest(NO_BODY) : marked?.notUtf8 ? badRequest(NOT_UTF8) : err);
      try {
        refuseUnstorableBody(req.body);
      } catch (refused) {
        bodyText.delete(req);
        return next(refused);
      }
      next(repeatedKeyRefusal(req) ?? undefined);
    });
  };
}

/** What a body sent to an operation that takes none may be: nothing, or JSON with nothing in it (`{}`, `null`). */
function emptyJson(body: unknown): boolean {
  const text = Buffer.isBuffer(body) ? body.toString('utf8').trim() : '';
  if (text === '') return true;
  try {
    const value: unknown = JSON.parse(text);
    return value === null || (typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length === 0);
  } catch {
    return false;
  }
}

/**
 * For a write that takes no body: its handler runs once the request has arrived whole. Node hands a request
 * over as soon as its headers are parsed, so a DELETE sent with a body (a malformed chunk, say) committed,
 * and then Node answered the broken body with a bare 400: the client was told no, and the write was made. A
 * body sent anyway is read by the body parser, as the operations that take one read theirs (decompressed,
 * within BODY_LIMIT_BYTES, an unknown Content-Encoding or a connection that fails before the body is whole
 * refused), and may be empty, `{}` or `null` (clients that send one with every POST); anything else is a 400
 * and the write is not made: a client that sent fields (`{"revoke_old":false}`) or broken JSON to a key
 * rotation meant something this operation does not do.
 */
export function noBody(): RequestHandler {
  // Like jsonBody, without the admission slot when the body trickles in (receivingOutsideAdmission).
  const receive = receivingOutsideAdmission(express.raw({ type: () => true, limit: BODY_LIMIT_BYTES }));
  const tooLarge = () => badRequest(`This operation takes no request body, and this one is over ${BODY_LIMIT_BYTES / 1024} KiB.`);
  return (req, res, next) => {
    if (!hasBody(req)) return next();
    if (declaredTooLarge(req, res)) return next(tooLarge());
    receive(req, res, (err?: unknown) => {
      // A 400, as a body over the limit is for the operations that take one (and as the OpenAPI lists).
      if ((err as { type?: unknown } | undefined)?.type === 'entity.too.large') return next(tooLarge());
      if (err) return next(err);
      const body: unknown = req.body;
      req.body = undefined;
      if (emptyJson(body)) return next();
      const bytes = Buffer.isBuffer(body) ? body.length : 0;
      next(badRequest(`This operation takes no request body; send none (or {}), not ${bytes} ${bytes === 1 ? 'byte' : 'bytes'} of something else.`));
    });
  };
}
