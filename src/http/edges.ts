/**
 * What reaches a server before any route: requests Node's parser refuses, what Node answers by itself
 * (bare or not at all), and headers it would drop. Each is answered in the envelope of the API the request
 * was sent to, as every other refusal is; `guardServer` sets a server up for it and `edgeChecks` is the
 * app's first middleware. Both the region's port and the operator port use them (a fuzzing review found
 * the operator port answering bare status lines, sending 100 Continue for anything and hanging on CONNECT).
 */
import crypto from 'node:crypto';
import { maxHeaderSize, STATUS_CODES, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { RequestHandler } from 'express';
import { formatBytes } from '../format-bytes';
import { AppError, shownHeader } from './errors';

/** How long a client has to send a request's headers, and the whole request (a 408 after). */
export const REQUEST_HEADERS_TIMEOUT_MS = 10_000;
export const REQUEST_TIMEOUT_MS = 30_000;

/** The body of a refusal of a request to `path` (the envelope of that path's API). */
export type RenderRefusal = (path: string, refusal: AppError, id: string) => unknown;

/** Marks a request whose client waits for 100 Continue (Node left it to us: guardServer). */
const CONTINUE_DUE = Symbol('100 Continue due');

/** Marks a connection answerClientError is closing once its current answer is sent. */
const CLOSING = Symbol('closing after its answer');

/** The first bytes of the request whose headers are still arriving on a connection (rememberRequestStarts). */
const REQUEST_START = Symbol('start of the request arriving');

/** The status answerClientError wrote on the socket for a request the app had already taken. */
const EDGE_STATUS = Symbol('answered at the edge');

/**
 * The status the client got from answerClientError for this request, if it answered it: the app's own
 * error handling of the same failure (its body read aborted) writes nothing that reaches the client.
 */
export function edgeAnsweredStatus(res: object): number | undefined {
  return (res as { [EDGE_STATUS]?: number })[EDGE_STATUS];
}

const CLIENT_ERRORS: Record<number, string> = {
  400: 'The request is not valid HTTP/1.1 (its request line, a header value or its body framing); nothing was done.',
  408: 'The request did not arrive whole in time; nothing was done.',
  413: 'The request is too large; nothing was done.',
  // Node's limit, which --max-http-header-size (in NODE_OPTIONS too) changes.
  431: `The request line and headers are too large (a long URL counts with them; together at most ${formatBytes(maxHeaderSize)}); nothing was done.`,
};

/**
 * The server's 'clientError': a request Node's parser refused (a control character in a header value, a
 * malformed chunk, a header block too large, a body still arriving at the request timeout) gets its status
 * in the envelope of the API it was sent to, as every other refusal does (Node's own answer is a bare
 * status line), and the connection is closed. When an earlier request on the connection arrived whole and
 * is being answered (a pipelined request after it failed), that answer is the client's: it is sent, then
 * the connection closes, with nothing of ours written into it.
 */
function answerClientError(render: RenderRefusal) {
  return (err: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: Duplex): void => {
    const answering = (socket as Duplex & { _httpMessage?: ServerResponse })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
    if (answering && (answering.headersSent || answering.req?.complete)) {
      // Read nothing more (each further chunk would come back here, and a request after it could still
      // complete and run); close once that answer is sent.
      socket.pause();
      const closing = socket as Duplex & { [CLOSING]?: boolean };
      if (closing[CLOSING]) return;
      closing[CLOSING] = true;
      if (answering.writableFinished) socket.destroy();
      else answering.once('close', () => socket.destroy());
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : err.code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW' ? 413 : 400;
    const refusal = new AppError(status, 'bad_request', CLIENT_ERRORS[status] ?? CLIENT_ERRORS[400] ?? '');
    // The request it refused, when Node got as far as its headers; else the request line of the request whose
    // headers were arriving (the headers timeout gives no packet), else of the packet.
    // (Express's routers strip their mount path from req.url as they go: originalUrl is the request's.)
    const path = (answering?.req as { originalUrl?: string } | undefined)?.originalUrl ?? answering?.req?.url ??
      requestTarget((socket as { [REQUEST_START]?: string })[REQUEST_START]) ?? requestTarget(err.rawPacket?.toString('latin1', 0, 256)) ?? '/';
    // A request the app took already has its id (the caller's X-Request-Id, or one made for it) in its log
    // line: the answer carries that one, so the reqId the client quotes finds the line.
    const taken = (answering as { locals?: { requestId?: unknown } } | undefined)?.locals?.requestId;
    const id = typeof taken === 'string' ? taken : crypto.randomUUID();
    if (answering) (answering as { [EDGE_STATUS]?: number })[EDGE_STATUS] = status;
    answerOnSocket(socket, refusal.status, id, render(path, refusal, id));
  };
}

/** The target of the request line `head` starts with (blank lines before a request are allowed), if it does. */
const requestTarget = (head: string | undefined): string | undefined => (head === undefined ? undefined : /^(?:\r?\n)*[A-Za-z]+ (\S+)/.exec(head)?.[1]);

/** What rememberRequestStarts uses of a connection's HTTP parser (Node's, internal: checked before use). */
interface ConnectionParser {
  headersCompleted(): boolean;
  getCurrentBuffer(): Buffer;
}

/**
 * Keeps on `socket` the first bytes of a request whose headers are still arriving after a read, so that a
 * 408 of the headers timeout (for which Node hands clientError no packet) is answered in the envelope of the
 * path the client sent, not SlashID's for '/'. Node's parser reads the socket natively (no 'data' events) and
 * calls back after each read: that callback is wrapped. A read that completes a request's headers (nearly
 * every one) costs a call and a native flag check; only a request whose headers span reads is copied, its
 * first read once (up to 256 bytes kept). Where Node's parser does not look as expected, nothing is kept
 * ('/' as before). Its limit: a request pipelined into the read that finished the one before it is read from
 * the start of that read (the earlier request's path).
 */
function rememberRequestStarts(socket: Duplex): void {
  const parser = (socket as { parser?: unknown }).parser;
  if (typeof parser !== 'object' || parser === null) return;
  const p = parser as ConnectionParser & Record<number, unknown>;
  const kOnExecute = (parser.constructor as { kOnExecute?: unknown }).kOnExecute;
  if (typeof kOnExecute !== 'number' || typeof p.headersCompleted !== 'function' || typeof p.getCurrentBuffer !== 'function') return;
  const onExecute = p[kOnExecute];
  if (typeof onExecute !== 'function') return;
  const s = socket as Duplex & { [REQUEST_START]?: string };
  p[kOnExecute] = function afterRead(this: unknown, ...args: unknown[]): unknown {
    if (p.headersCompleted()) s[REQUEST_START] = undefined;
    else s[REQUEST_START] ??= p.getCurrentBuffer().toString('latin1', 0, 256);
    return (onExecute as (...a: unknown[]) => unknown).apply(this, args);
  };
}

/**
 * Writes `body` with `status` (and `id` as x-request-id) straight on `socket`, then closes it. `drain`: for a socket Node's parser has
 * let go of (a CONNECT's), what the client still sends is read and dropped until it closes (at most 2 s),
 * so that closing on unread bytes does not reset the connection and the answer with it. Otherwise closed
 * once written, as Node does: a half-closed socket that Node still parses went on reading, and the request
 * it refused (its body still arriving at the timeout) completed and was carried out after "nothing was done".
 */
function answerOnSocket(socket: Duplex, status: number, id: string, body: unknown, drain = false): void {
  // Node takes its own error listener off a socket it hands over (a CONNECT's): a reset while this is
  // written must not become an uncaught exception, which ends the process (a review's finding).
  socket.on('error', () => socket.destroy());
  if (!socket.writable) return void socket.destroy();
  const text = JSON.stringify(body);
  // The headers every answer of the app carries (request-id.ts): a 405 is cacheable by default (RFC 9110, 15.5.6).
  const answer = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\ncontent-type: application/json; charset=utf-8\r\nx-content-type-options: nosniff\r\ncache-control: no-store\r\nx-request-id: ${id}\r\n` +
    `content-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`;
  if (!drain) return void socket.end(answer, () => socket.destroy());
  socket.once('end', () => socket.destroy());
  setTimeout(() => socket.destroy(), 2000).unref();
  socket.resume();
  socket.end(answer);
}

/**
 * The most header lines a request may carry: Node keeps this many and drops the rest without a word (a
 * consistency or Idempotency-Key header after them went unseen: an all_regions write answered as
 * local_region), so a request that reaches the count is refused (431) instead. Without a count cap, 16,000
 * empty headers fit in Node's 16 KiB (it counts the URL, names and values, not the line framing) and cost
 * ~850 KB of heap each.
 */
export const MAX_REQUEST_HEADERS = 200;

/** Why a request is refused before any route (a refusal Node would have answered bare, or headers it dropped); null when it is not. */
function edgeRefusal(req: IncomingMessage): AppError | null {
  if (req.rawHeaders.length >= 2 * MAX_REQUEST_HEADERS) {
    return new AppError(431, 'bad_request', `A request may carry at most ${MAX_REQUEST_HEADERS - 1} headers; nothing was done.`);
  }
  if (req.headers.host === undefined && (req.httpVersionMajor > 1 || req.httpVersionMinor >= 1)) {
    return new AppError(400, 'bad_request', 'An HTTP/1.1 request needs a Host header; nothing was done.');
  }
  const expect = req.headers.expect;
  if (expect !== undefined && expect.toLowerCase() !== '100-continue') {
    return new AppError(417, 'bad_request', `Only "Expect: 100-continue" is supported (got ${shownHeader(expect)}); nothing was done.`);
  }
  const coding = req.headers['transfer-encoding'];
  if (coding !== undefined && !isChunkedAlone(coding)) {
    return new AppError(
      400,
      'bad_request',
      `Transfer-Encoding ${shownHeader(coding)} is not supported: only "chunked" alone is (compress a body with Content-Encoding: gzip, deflate or br); nothing was done.`,
    );
  }
  const precondition = writePrecondition(req);
  if (precondition) return new AppError(400, 'bad_request', precondition);
  return null;
}

/** The methods that write nothing (RFC 9110, 9.2.1): a precondition on them is Express's to answer (a GET's 304). */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

/**
 * Why a write's precondition is refused, or null. The service evaluates none on a write: its ETags are weak
 * (Express's hash of the body it answered), which If-Match never matches (it compares strongly, RFC 9110,
 * 13.1.1), and a write does not compute the resource's current ETag for If-None-Match. Ignored, they let a
 * client that guards against lost updates overwrite a change it never saw (a review's probe: a PATCH with
 * `If-Match: "stale"` answered 204). `If-Match: *` asks only that the resource exist, which the route's 404
 * answers: it is taken.
 */
function writePrecondition(req: IncomingMessage): string | null {
  if (SAFE_METHODS.has(req.method ?? 'GET')) return null;
  const ifMatch = req.headers['if-match'];
  const ifNoneMatch = req.headers['if-none-match'];
  const [name, value] = ifMatch !== undefined && ifMatch.trim() !== '*' ? ['If-Match', ifMatch] : ifNoneMatch !== undefined ? ['If-None-Match', ifNoneMatch] : [];
  if (name === undefined) return null;
  return `${name} ${shownHeader(value ?? '')} is not evaluated for a write: this service's ETags are weak and conditional writes are not supported; nothing was done. Send the write without it (If-Match: * is taken), after reading the resource if it may have changed.`;
}

/**
 * Whether a Transfer-Encoding names the chunked coding alone. Node's parser frames a body by its last coding
 * when that is chunked and hands the body on with the codings before it (`gzip, chunked`, `x-foo, chunked`,
 * one per header line too) still applied: read as it came, it was taken as the JSON it was not, and the write
 * carried out (a review's probe; a proxy in front that applies them would have judged other bytes). A coding
 * the server does not implement is refused, not ignored (RFC 9112, 6.1).
 */
function isChunkedAlone(value: string): boolean {
  return value.trim().toLowerCase() === 'chunked';
}

/**
 * The app's first middleware (after the request id and log): refuses what edgeRefusal names, sends the 100
 * Continue Node left to us once the request passed (and any front door before the app), and closes the
 * connection after a request that asked for an upgrade (none is taken: Node's parser stays in upgrade mode
 * after it, so a request pipelined behind it would never be read and hang until the keep-alive timeout).
 */
export function edgeChecks(): RequestHandler {
  return (req, res, next) => {
    // First: a refused upgrade request's connection must close too (a review's finding).
    if (req.headers.upgrade !== undefined) res.setHeader('Connection', 'close');
    const refusal = edgeRefusal(req);
    // A body refused for its transfer codings is not read: nothing after it on the connection is either.
    if (refusal && req.headers['transfer-encoding'] !== undefined) res.setHeader('Connection', 'close');
    if (refusal) return next(refusal);
    if ((req as { [CONTINUE_DUE]?: boolean })[CONTINUE_DUE]) res.writeContinue();
    next();
  };
}

/** The options of a server guardServer sets up (with requireHostHeader off: edgeChecks refuses a missing Host). */
export const SERVER_OPTIONS = { requireHostHeader: false } as const;

/**
 * Sets `server` (created with SERVER_OPTIONS, `handler` its request listener, whose app runs edgeChecks
 * first) up to answer in the envelope `render` gives what Node answers by itself, bare or not at all:
 * requests its parser refuses, an `Expect` other than 100-continue (a bare 417: the request goes to
 * `handler`, which refuses it like any other), a CONNECT (the connection was closed without an answer).
 */
export function guardServer(server: Server, handler: RequestListener, render: RenderRefusal): void {
  server.maxHeadersCount = MAX_REQUEST_HEADERS;
  server.on('clientError', answerClientError(render));
  // After Node's own 'connection' listener, which gives the socket its parser.
  server.on('connection', rememberRequestStarts);
  server.on('checkExpectation', handler);
  // Node would send 100 Continue for any Expect naming it, before a front door's overload 503 or the
  // app's refusal of the body it had asked for: edgeChecks sends it once the request passed both.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    (req as IncomingMessage & { [CONTINUE_DUE]?: boolean })[CONTINUE_DUE] = true;
    handler(req, res);
  });
  server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    const refusal = new AppError(405, 'bad_request', 'CONNECT is not supported; nothing was done.');
    const id = crypto.randomUUID();
    answerOnSocket(socket, 405, id, render(req.url ?? '/', refusal, id), true);
  });
}
