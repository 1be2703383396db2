/**
 * One error type for every dialect: status, a stable code, a message that is safe to show. Each dialect
 * has one middleware that renders it in its own envelope; anything else becomes a generic 500.
 */
import { isUtf8 } from 'node:buffer';
import { databaseRefusal, isConnectionLost, isConnectRefused, isDatabaseMissing, isSchemaMissing, pgCode, type DatabaseRefusal } from '../db/pg-errors';

export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** Dialect-specific extras, e.g. the resource of a 408 or validation details. */
    readonly extra: { result?: unknown; details?: unknown; retryAfterSeconds?: number; allow?: readonly string[] } = {},
  ) {
    super(message);
  }
}

export const badRequest = (message: string, details?: unknown) => new AppError(400, 'bad_request', message, { details });
export const unauthorized = (message: string) => new AppError(401, 'unauthorized', message);
export const forbidden = (message: string) => new AppError(403, 'forbidden', message);
export const notFound = (message: string) => new AppError(404, 'not_found', message);
export const conflict = (message: string) => new AppError(409, 'conflict', message);
/** A path the service has, asked with a method it does not take there; `allow`: the methods it takes (the `Allow` header). */
export const methodNotAllowed = (method: string, allow: readonly string[]) =>
  new AppError(405, 'method_not_allowed', `This path does not take ${method.slice(0, 16)}; it takes ${allow.join(', ')}.`, { allow });

interface BodyParserError {
  type?: string;
  status?: number;
  statusCode?: number;
  limit?: number;
  /** encoding.unsupported: the Content-Encoding, lower-cased. */
  encoding?: string;
}

/** What each kind of database refusal says to the client (src/db/pg-errors.ts, databaseRefusal). */
const REFUSAL_REASONS: Record<DatabaseRefusal, string> = {
  'read-only': "This region's database is read-only right now (a standby, or set read-only by an operator)",
  'cannot-write': "This region's database could not write (its disk is full, or an I/O error)",
  canceled: "This region's database canceled the statement (its statement_timeout ran out, or an administrator canceled it)",
};

/** Maps errors thrown by the JSON body parser (and our own) to AppError; null for unknown errors. */
export function asAppError(err: unknown, method = 'POST'): AppError | null {
  if (err instanceof AppError) return err;
  const bp = err as BodyParserError;
  return bodyParserError(bp) ?? databaseTrouble(err, method) ?? writeGivenUp(err) ?? clientError(err, bp);
}

/** A request body over `limit` bytes (the parser found it so, or its Content-Length said so). */
export function bodyTooLarge(limit: number): AppError {
  return badRequest(`The request body is too large (the limit is ${Math.round(limit / 1024)} KiB).`);
}

/** The JSON body parser's errors, by their type. */
function bodyParserError(bp: BodyParserError): AppError | null {
  switch (bp?.type) {
    case 'entity.parse.failed':
      return badRequest('The request body is not valid JSON.');
    case 'entity.too.large':
      return bodyTooLarge(bp.limit ?? 0);
    // The body's compression, not its text: a UTF-8 body sent with an unknown Content-Encoding was told it is not UTF-8.
    case 'encoding.unsupported':
      // The body may well be UTF-8 JSON, compressed in a way the parser does not take (zstd, say, or two codings).
      return badRequest(`Content-Encoding ${shownHeader(String(bp.encoding ?? ''))} is not supported: send the body uncompressed, or compressed with gzip, deflate or br.`);
    case 'charset.unsupported':
      return badRequest('The request body must be UTF-8 encoded JSON.');
    case 'request.aborted':
      return badRequest('The request was aborted by the client.');
    default:
      break;
  }
  return null;
}

/** The database could not serve the request (overloaded, gone, down, restarted, refusing): a 503. */
function databaseTrouble(err: unknown, method: string): AppError | null {
  // The pool had no connection for an interactive transaction within its maxWait (Prisma P2028). Admission
  // control (admission.ts) keeps the pool from running dry; should it happen anyway, it is overload: a 503.
  // The same from the pg pool itself (its connectionTimeoutMillis, src/db/client.ts).
  if ((err as { code?: unknown })?.code === 'P2028' || /Unable to start a transaction in the given time|timeout exceeded when trying to connect/.test(String((err as Error)?.message))) {
    return new AppError(503, 'overloaded', 'This region is at capacity (no database connection freed up in time); nothing was done. Retry shortly.', { retryAfterSeconds: 2 });
  }
  // The database is gone, or holds none of the service's tables (dropped, or created again empty under the
  // running region): no retry mends that, its operator must restart the region (which creates and migrates
  // it) and re-seed it. A 503 that says so, not "retry shortly" nor a 500 (a helper's operations pass found
  // every route answering 500 once the database was created again empty).
  const databaseMissing = isDatabaseMissing(err);
  if (databaseMissing || isSchemaMissing(err)) {
    const what = databaseMissing ? 'does not exist (it was dropped, or the region is configured with another)' : 'lacks its tables (created again empty, or not migrated)';
    return new AppError(
      503,
      'database_unavailable',
      `This region's database ${what}; nothing was done. Send the request to another region: this one's operator must restart it, which creates and migrates its database, and then re-seed it.`,
      { retryAfterSeconds: 30 },
    );
  }
  // The database refused the connection or is not there (down, restarting, out of connections): nothing of
  // the request ran, and it may well work in a moment. A 503 with Retry-After, not a 500 (a helper's review
  // found every /admin route and the API answering 500 while the database refused connections).
  if (isConnectRefused(err)) {
    return new AppError(503, 'database_unavailable', "This region's database is not accepting connections right now; nothing was done. Retry shortly.", { retryAfterSeconds: 2 });
  }
  // A replicated write's transaction that lost its connection before its COMMIT was sent, as often as it may
  // run again (replication/pg-tx.ts; by name, as for TransactionPastBound below): rolled back.
  if ((err as { name?: unknown } | null)?.name === 'ConnectionLost' && (err as { commitSent?: unknown }).commitSent === false) {
    return new AppError(503, 'database_unavailable', "This region's database ended the write's connection before it committed (the database restarted, or ended the session); nothing was done. Retry shortly.", { retryAfterSeconds: 2 });
  }
  // Any other connection lost under a statement (the database restarted, or ended the session): reads were
  // tried again on other connections already (retryingReads), and a replicated write found out what became
  // of it (Replicator.write). A 503: the database is most likely coming back. A read changed nothing; a
  // write's outcome is not known here, and the message says so (as the API documents its 503).
  if (isConnectionLost(err)) {
    const outcome = method === 'GET' || method === 'HEAD' ? 'nothing was changed' : 'a write may or may not have been carried out: read the resource to see';
    return new AppError(503, 'database_unavailable', `This region lost its connection to its database while the request ran (the database restarted, or ended the session). Retry shortly; ${outcome}.`, { retryAfterSeconds: 2 });
  }
  // The database refused a statement for its own state (read-only, out of disk, its statement_timeout): the
  // region cannot serve the request now, the request was not wrong. A 503 with Retry-After, not a 500 (a
  // fault drill found every write answering 500 while the database was read-only).
  const refusal = databaseRefusal(err);
  if (refusal !== null) {
    return new AppError(503, 'database_unavailable', `${REFUSAL_REASONS[refusal]}, so the request failed and its transaction was rolled back. Retry shortly, or send it to another region.`, { retryAfterSeconds: 2 });
  }
  return null;
}

/** A write given up on (collisions on every attempt, a transaction past its bound) where no route answered it. */
function writeGivenUp(err: unknown): AppError | null {
  // A local write that collided with concurrent changes on each of its attempts (replicator.ts,
  // CollisionsExhausted; by name, as for TransactionPastBound below): every attempt rolled back, so nothing
  // was done, and it is likely to go through in a moment. A 503 with Retry-After, not a 500. (Other
  // deadlocks and serialization failures stay 500s: a route that ran several transactions cannot say
  // nothing was done.)
  if ((err as Error | null)?.name === 'CollisionsExhausted') {
    // The last attempt's error: a lock the database's lock_timeout gave up waiting for (55P03) is not a collision.
    const lockWait = pgCode((err as Error).cause) === '55P03';
    const what = lockWait
      ? "The request waited for a lock held by another session of this region's database longer than the database's lock_timeout, on each of its attempts"
      : 'The request collided with concurrent changes of the same data more often than it is retried';
    return new AppError(503, 'contention', `${what}; nothing was done. Retry shortly.`, { retryAfterSeconds: 1 });
  }
  // A write transaction past its bound (replication/pg-tx.ts) on a path that did not answer it itself
  // (writeWithConsistency does, saying whether it was kept): by name, as this layer does not import that one.
  if ((err as Error | null)?.name === 'TransactionPastBound') {
    return new AppError(408, 'consistency_timeout', 'The write did not finish within the time a write transaction may run (the database was slow, or the row was locked); read the resource to see whether it was kept, or retry.');
  }
  return null;
}

/** The HTTP plumbing's client errors: a malformed %-escape, a body that does not decompress or cannot be read. */
function clientError(err: unknown, bp: BodyParserError): AppError | null {
  // The router's decoding of a path parameter with a malformed %-escape.
  if (err instanceof URIError) return badRequest('The URL contains a malformed %-escape.');
  // A body that does not decompress as its Content-Encoding says (zlib's Z_* codes, brotli's ERR__ERROR_*).
  if (bp?.status === 400 && /^(Z_|ERR__ERROR_)/.test(String((err as { code?: unknown }).code))) {
    return badRequest('The request body could not be decompressed as its Content-Encoding says (corrupt or cut off, or not compressed at all).');
  }
  // Any other client error from the HTTP plumbing (a body that does not inflate, a size that does not match):
  // a 400 with a fixed message, never the library's wording, which may quote the input.
  const status = bp?.status ?? bp?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return badRequest(`The request body could not be read${typeof bp.type === 'string' ? ` (${bp.type.slice(0, 40)})` : ''}.`);
  }
  return null;
}
/**
 * A request header's value as an error message quotes it, in quotes. Node reads header bytes as latin-1, so a
 * UTF-8 value read back as UTF-8 shows as sent (not as mojibake); other bytes above ASCII, control and
 * invisible formatting characters (a right-to-left override, say) show as `?`; a long value is cut, its
 * length said after the quotes (a message stays a message, whatever was sent).
 */
export function shownHeader(value: string, max = 64): string {
  const bytes = Buffer.from(value, 'latin1');
  const text = !/[\x80-\xff]/.test(value) ? value : isUtf8(bytes) ? bytes.toString('utf8') : value.replace(/[\x80-\xff]/g, '?');
  return shownText(text, max);
}

/**
 * Text the client sent (already decoded: a query parameter, say) as an error message quotes it, in quotes:
 * control and invisible formatting characters as `?`, a long value cut with its length after the quotes.
 */
export function shownText(text: string, max = 64): string {
  const chars = [...text];
  const clean = chars.slice(0, max).join('').replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}\p{Co}\p{Cn}\ufffd]/gu, '?');
  return chars.length > max ? `'${clean}…' (${chars.length} characters)` : `'${clean}'`;
}
