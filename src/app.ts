import crypto from 'node:crypto';
import { STATUS_CODES, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import express, { type Express, type Router } from 'express';
import type { Feature, FeatureDeps } from './feature';
import { adminAuth } from './http/admin-auth';
import { withAdmissionBlock, type Admission } from './http/admission';
import { AppError, notFound } from './http/errors';
import { requestId } from './http/request-id';
import { errorEnvelope, slashidErrors } from './http/slashid';
import { infisicalErrors, renderError } from './infisical/errors';
import { API_PREFIX } from './infisical/routes';
import { routePrefix, type Metrics } from './observability/metrics';
import type { ReadinessReport } from './observability/readiness';
import { requestLog } from './observability/request-log';
import { adminGuard, healthRoutes } from './operator/routes';

export interface AppDeps extends FeatureDeps {
  features: readonly Feature[];
  /** Admin routes that are not a feature's (replication status). */
  extraAdminRoutes: Router[];
  /** Liveness details for /healthz. */
  health: () => Promise<Record<string, unknown>>;
  /** Readiness for /readyz: the database answers and is migrated. */
  readiness: () => Promise<ReadinessReport>;
  metrics: Metrics;
  /** Gates the API routes (src/http/admission.ts); health, metrics and admin routes pass no gate. */
  admission?: Admission;
  /** The database client of the admin routes (a pool of their own); `db` when absent. */
  adminDb?: FeatureDeps['db'];
}

export function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.use(requestId());
  app.use(requestLog(deps.log, deps.metrics));
  // What Node answered bare (see nodeRefusals), and what it would have dropped: answered in the envelope,
  // before anything else (the OPTIONS answer below included).
  app.use((req, res, next) => {
    const refusal = edgeRefusal(req);
    if (refusal) return next(refusal);
    if ((req as { [CONTINUE_DUE]?: boolean })[CONTINUE_DUE]) res.writeContinue();
    next();
  });
  // Express's routers answer an OPTIONS request themselves (200, text/plain, the path's methods) on any
  // path they route, past the routes' authentication: the service takes no OPTIONS (no browser calls its
  // APIs across origins), so it is answered like any other method a path does not take. Infisical's paths
  // answer it in their own envelope (their router ends in a catch-all).
  app.use((req, _res, next) => (req.method === 'OPTIONS' && !INFISICAL_PATH.test(req.url) ? next(notFound('No such endpoint.')) : next()));

  // The console's pages (under /admin, public: they ask for the token), /openapi.json, health, metrics and
  // the admin API: paths of their own (UNGATED), so an API request skips all their routers' layers in one
  // test instead of matching each of them (Express walks every layer it meets).
  const operator = express.Router();
  for (const f of deps.features) if (f.pages) operator.use(f.pages(deps));
  operator.use(healthRoutes({ region: deps.config.region.id, health: deps.health, readiness: deps.readiness }));
  // Prometheus sends the admin token with `authorization: { credentials: … }` in its scrape config.
  const adminTokens = [deps.config.adminToken, ...deps.config.adminAcceptedTokens];
  operator.get('/metrics', adminAuth(adminTokens), deps.metrics.handler);
  operator.use('/admin', routePrefix(), ...adminGuard(adminTokens));
  const adminDeps = { ...deps, db: deps.adminDb ?? deps.db };
  for (const f of deps.features) if (f.adminRoutes) operator.use(f.adminRoutes(adminDeps));
  if (deps.admission) operator.get('/admin/replication', withAdmissionBlock(deps.admission));
  for (const r of deps.extraAdminRoutes) operator.use(r);
  app.use((req, res, next) => (UNGATED.test(req.url) ? operator(req, res, next) : next()));

  if (deps.admission) {
    // A refusal leaves in the envelope of the API it was sent to: Infisical's under its prefix, else SlashID's.
    // Each refusal is rendered right behind the gate: under a flood thousands of them a second would
    // otherwise each walk every feature's router on the way to the error renderer at the end.
    app.use(API_PREFIX, deps.admission.middleware, infisicalErrors(deps.log));
    app.use(deps.admission.middleware, slashidErrors(deps.log));
  }
  for (const f of deps.features) if (f.routes) app.use(f.routes(deps));

  app.use(() => {
    throw notFound('No such endpoint.');
  });
  app.use(slashidErrors(deps.log));
  return app;
}

/** Paths the gates never see (they are answered before admission in createApp). */
const UNGATED = /^\/(admin|healthz|readyz|metrics|openapi\.json)(\/|\?|$)/;

/**
 * The server's request handler: `app`, behind a front door that answers an API request the gates would
 * refuse at once (src/http/admission.ts) with its 503 straight away, in its dialect's envelope, before any
 * middleware runs. A flood of 10,000 connections is then mostly cheap refusals, and the event loop stays
 * free for the admin routes and the requests that were admitted. (Such refusals are counted by admission,
 * not in the per-route HTTP metrics.)
 */
/** The Infisical dialect's paths, as Express matches them (any case; a query may follow the prefix). */
const INFISICAL_PATH = new RegExp(`^${API_PREFIX.replaceAll('/', '\\/')}(?:[/?]|$)`, 'i');

/** A refusal in the envelope of the API `url` belongs to: Infisical's under its prefix, else SlashID's. */
function refusalBody(url: string, refusal: AppError, id: string) {
  return INFISICAL_PATH.test(url) ? renderError(refusal, id) : errorEnvelope(refusal);
}

export function frontDoor(app: Express, admission: Admission | undefined): RequestListener {
  if (!admission) return app;
  return (req, res) => {
    const url = req.url ?? '/';
    const refusal = UNGATED.test(url) ? null : admission.refuseAtOnce(req.method);
    if (!refusal) return void app(req, res);
    const id = crypto.randomUUID();
    const body = refusalBody(url, refusal, id);
    res.writeHead(503, {
      'content-type': 'application/json; charset=utf-8',
      'x-request-id': id,
      'retry-after': String(refusal.extra.retryAfterSeconds ?? admission.limits.retryAfterSeconds),
      // The request's body is not read: this connection is not reused.
      connection: 'close',
    });
    res.end(JSON.stringify(body));
  };
}

/** Marks a request whose client waits for 100 Continue (Node left it to us: nodeRefusals). */
const CONTINUE_DUE = Symbol('100 Continue due');

/** Marks a connection answerClientError is closing once its current answer is sent. */
const CLOSING = Symbol('closing after its answer');

const CLIENT_ERRORS: Record<number, string> = {
  400: 'The request is not valid HTTP/1.1 (its request line, a header value or its body framing); nothing was done.',
  408: 'The request did not arrive whole in time; nothing was done.',
  413: 'The request is too large; nothing was done.',
  431: 'The request headers are too large; nothing was done.',
};

/**
 * The server's 'clientError': a request Node's parser refused (a control character in a header value, a
 * malformed chunk, a header block too large, a body still arriving at the request timeout) gets its status
 * in the envelope of the API it was sent to, as every other refusal does (Node's own answer is a bare
 * status line), and the connection is closed. When an earlier request on the connection arrived whole and
 * is being answered (a pipelined request after it failed), that answer is the client's: it is sent, then
 * the connection closes, with nothing of ours written into it.
 */
export function answerClientError(err: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: Duplex): void {
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
  const id = crypto.randomUUID();
  // The request it refused, when Node got as far as its headers; else the request line of the packet.
  // (Express's routers strip their mount path from req.url as they go: originalUrl is the request's.)
  const path = (answering?.req as { originalUrl?: string } | undefined)?.originalUrl ?? answering?.req?.url ?? /^[A-Za-z]+ (\S+)/.exec(err.rawPacket?.toString('latin1', 0, 256) ?? '')?.[1] ?? '/';
  answerOnSocket(socket, path, refusal, id);
}

/**
 * Writes `refusal` in the envelope of `path`'s API straight on `socket`, then closes it. `drain`: for a
 * socket Node's parser has let go of (a CONNECT's), what the client still sends is read and dropped until
 * it closes (at most 2 s), so that closing on unread bytes does not reset the connection and the answer
 * with it. Otherwise closed once written, as Node does: a half-closed socket that Node still parses went on
 * reading, and the request it refused (its body still arriving at the timeout) completed and was carried
 * out after "nothing was done".
 */
function answerOnSocket(socket: Duplex, path: string, refusal: AppError, id = crypto.randomUUID(), drain = false): void {
  // Node takes its own error listener off a socket it hands over (a CONNECT's): a reset while this is
  // written must not become an uncaught exception, which ends the process (a review's finding).
  socket.on('error', () => socket.destroy());
  if (!socket.writable) return void socket.destroy();
  const body = JSON.stringify(refusalBody(path, refusal, id));
  const answer = `HTTP/1.1 ${refusal.status} ${STATUS_CODES[refusal.status] ?? ''}\r\ncontent-type: application/json; charset=utf-8\r\nx-request-id: ${id}\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
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
export function edgeRefusal(req: IncomingMessage): AppError | null {
  if (req.rawHeaders.length >= 2 * MAX_REQUEST_HEADERS) {
    return new AppError(431, 'bad_request', `A request may carry at most ${MAX_REQUEST_HEADERS - 1} headers; nothing was done.`);
  }
  if (req.headers.host === undefined && (req.httpVersionMajor > 1 || req.httpVersionMinor >= 1)) {
    return new AppError(400, 'bad_request', 'An HTTP/1.1 request needs a Host header; nothing was done.');
  }
  const expect = req.headers.expect;
  if (expect !== undefined && expect.toLowerCase() !== '100-continue') {
    return new AppError(417, 'bad_request', `Only "Expect: 100-continue" is supported (got "${expect.slice(0, 64)}"); nothing was done.`);
  }
  return null;
}

/** The options of a server whose requests nodeRefusals answers (with requireHostHeader off: the app refuses a missing Host). */
export const SERVER_OPTIONS = { requireHostHeader: false } as const;

/**
 * What Node answers by itself, bare or not at all, answered in the envelope of the API the request was
 * sent to (as a fuzzing review found): an `Expect` other than 100-continue (a bare 417: the request goes to
 * `handler`, and the app answers it like any refusal), a CONNECT (the connection closed without an answer).
 */
export function nodeRefusals(server: Server, handler: RequestListener): void {
  server.maxHeadersCount = MAX_REQUEST_HEADERS;
  server.on('checkExpectation', handler);
  // Node would send 100 Continue for any Expect naming it, before the front door's overload 503 or the
  // app's refusal of the body it had asked for: the app sends it once the request passed both (createApp).
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    (req as IncomingMessage & { [CONTINUE_DUE]?: boolean })[CONTINUE_DUE] = true;
    handler(req, res);
  });
  server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    answerOnSocket(socket, req.url ?? '/', new AppError(405, 'bad_request', 'CONNECT is not supported; nothing was done.'), undefined, true);
  });
}
