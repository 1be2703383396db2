/**
 * Admission control: a bounded number of API requests in their database phase, and a bounded queue in
 * front of them. Beyond the bounds a request is answered 503 with Retry-After at once, in its dialect's
 * envelope, instead of queueing without end inside the database pool (where the interactive transaction's
 * maxWait ran out as a 500). Writes and reads have a gate each, sized together below the pool so that the
 * admin and health routes, which pass no gate, and background replication always find a connection.
 *
 * A request holds its slot from arrival until it leaves the database phase: when it answers, or when a
 * replicated write has committed and only waits for other regions (`leaveAdmission()`, called by
 * consistency.ts). A waiter therefore costs a pending promise and its socket, never a slot or a connection.
 */
import type { Request, RequestHandler, Response } from 'express';
import type { Logger } from '../logger';
import { AppError } from './errors';
import { Gate, Refused, SlotBudget, type GateLimits, type RefusalReason } from './admission-gate';

export interface AdmissionLimits {
  writes: GateLimits;
  reads: GateLimits;
  /**
   * Requests of both kinds in their database phase at once. A kind may use what the other leaves idle, up
   * to its own concurrency; with each kind's concurrency below this, each always has the rest.
   */
  databaseSlots: number;
  /** Retry-After of a refusal (seconds). */
  retryAfterSeconds: number;
}

/**
 * The database pool (src/db/client.ts) has 10 connections; the gates take 8 together, the rest is headroom
 * for replication. Either kind may take 6 of the 8 when the other is idle, so each always has 2.
 */
export const DEFAULT_ADMISSION: AdmissionLimits = {
  writes: { concurrency: 6, queue: 2000, queueWaitMs: 10_000 },
  reads: { concurrency: 6, queue: 1000, queueWaitMs: 5_000 },
  databaseSlots: 8,
  retryAfterSeconds: 2,
};

export interface Admission {
  gates: { writes: Gate; reads: Gate };
  limits: AdmissionLimits;
  /** Gates an API request (mount in front of the API routes, followed by the dialect's error renderer). */
  middleware: RequestHandler;
  /** The `admission` block of /admin/replication. */
  status(): Record<string, unknown>;
  /**
   * For the server's front door: the 503 of a request that would be refused at once (counted as refused),
   * or null. Under a flood this answers before any middleware runs, so refusals stay cheap.
   */
  refuseAtOnce(method: string | undefined): AppError | null;
}

/**
 * Where a gated request keeps its slot's release: on the request (read back through its Consistency, see
 * consistency.ts), not in an AsyncLocalStorage, whose hooks would cost something on every promise.
 */
const SLOT = Symbol('admission slot');
/** How the request takes a slot again after outsideAdmission (one per gate, shared by its requests). */
const READMIT = Symbol('admission readmit');
type Gated = Request & { [SLOT]?: () => void; [READMIT]?: (req: Request) => Promise<void> };

/**
 * Gives the request's slot back (no-op for a request that holds none). A replicated write calls it once
 * committed: what is left is waiting for other regions, which needs no database connection.
 */
export function leaveAdmission(req: Request): void {
  const release = (req as Gated)[SLOT];
  if (!release) return;
  (req as Gated)[SLOT] = undefined;
  release();
  // Its 'close' listener, there in case the request ends first, has nothing left to do.
  req.res?.off('close', release);
}

/**
 * Runs `work` without the request's slot, then takes one again (queueing like a new request; 503 when the
 * gate refuses). For work that needs no database connection and may take long: an IdP metadata fetch, which
 * its own limiter bounds (per organization and per region), so that one organization's slow IdP cannot hold
 * every write slot and turn other organizations' writes away. A request that holds no slot runs it as is.
 */
export async function outsideAdmission<T>(req: Request, work: () => Promise<T>): Promise<T> {
  const readmit = (req as Gated)[READMIT];
  if (!readmit || !(req as Gated)[SLOT]) return work();
  leaveAdmission(req);
  const value = await work();
  await readmit(req);
  return value;
}

/**
 * Takes the request's slot again after its work outside admission failed (outsideAdmission takes it again
 * only when the work succeeds), for database work on that failure's path; rejects with the gate's 503 as a new
 * request would meet it. A no-op for a request that holds its slot, or passed no gate.
 */
export async function readmitted(req: Request): Promise<void> {
  const readmit = (req as Gated)[READMIT];
  if (readmit && !(req as Gated)[SLOT]) await readmit(req);
}

/** How long a request may take to send its body while it holds a slot (see receivingOutsideAdmission). */
export const BODY_GRACE_MS = 500;

/**
 * `receive` (a body parser) with the request's slot, as long as the body arrives within BODY_GRACE_MS (every
 * ordinary client: the body comes with the headers); a body still arriving then is received without the
 * slot, which is taken again (queueing like a new request) once it is in. A client trickling bodies held a
 * slot until Node's request timeout: six such connections to the ACS, with no credentials, stopped every
 * write of the region for minutes.
 */
export function receivingOutsideAdmission(receive: RequestHandler): RequestHandler {
  return (req, res, next) => {
    let left = false;
    const timer = setTimeout(() => {
      if (req.complete || !(req as Gated)[SLOT]) return;
      left = true;
      leaveAdmission(req);
    }, BODY_GRACE_MS);
    receive(req, res, (err?: unknown) => {
      clearTimeout(timer);
      const readmit = (req as Gated)[READMIT];
      if (err || !left || !readmit) return next(err);
      readmit(req).then(() => next(), next);
    });
  };
}

export function overloaded(gate: string, reason: RefusalReason, retryAfterSeconds: number): AppError {
  const why = reason === 'queue_full' ? 'its queue is full' : 'no slot freed up in time';
  return new AppError(503, 'overloaded', `This region is at capacity for ${gate} (${why}); nothing was done. Retry in ${retryAfterSeconds} s.`, {
    retryAfterSeconds,
  });
}

/** How often at most admission logs a summary of the requests it refused. */
export const REFUSAL_LOG_INTERVAL_MS = 10_000;

/**
 * One warning per interval with the refusals since the last one, instead of a line per refused request
 * (under overload that would be thousands of lines a second, written by the process that is overloaded).
 */
function refusalSummary(gates: Record<string, Gate>, log: Pick<Logger, 'warn'> | undefined): () => void {
  let timer: NodeJS.Timeout | null = null;
  let reported = 0;
  const total = () => Object.values(gates).reduce((n, g) => n + g.refused.queue_full + g.refused.queue_timeout, 0);
  return () => {
    if (!log || timer) return;
    timer = setTimeout(() => {
      timer = null;
      const now = total();
      const refused = Object.fromEntries(Object.values(gates).map((g) => [g.name, { ...g.refused, in_flight: g.inFlight, queued: g.queued }]));
      log.warn({ refused_since_last: now - reported, gates: refused }, 'at capacity: requests were answered 503 (see admission on /admin/replication)');
      reported = now;
    }, REFUSAL_LOG_INTERVAL_MS);
    timer.unref();
  };
}

export function createAdmission(limits: AdmissionLimits = DEFAULT_ADMISSION, log?: Pick<Logger, 'warn'>): Admission {
  const budget = new SlotBudget(limits.databaseSlots);
  const gates = { writes: new Gate('writes', limits.writes, budget), reads: new Gate('reads', limits.reads, budget) };
  const refusedOne = refusalSummary(gates, log);
  const gateOf = (method: string | undefined) => (method === 'GET' || method === 'HEAD' ? gates.reads : gates.writes);
  /**
   * Gives `req` a slot of `gate`: `done()` once it holds one, `done(err)` with the 503. When its client
   * left before, the slot goes back and `gone()` is called instead (nothing is left to answer).
   */
  const admit = (gate: Gate, req: Request, res: Response, done: (err?: unknown) => void, gone: () => void) => {
    const admitted = (release: () => void) => {
      // The client went away before this (between a grant from the queue and now, say): its 'close' has
      // fired, so a listener added now would never give the slot back (a slot lost for good, each time).
      if (res.closed) {
        release();
        return gone();
      }
      res.once('close', release);
      (req as Gated)[SLOT] = release;
      (req as Gated)[READMIT] = readmitTo[gate.name];
      done();
    };
    // A free slot is taken synchronously (most requests): no promise, no extra turn of the event loop.
    const now = gate.tryGrant();
    if (now) return admitted(now);
    let cancelOnClose: (() => void) | undefined;
    gate
      .acquire((cancel) => res.once('close', (cancelOnClose = cancel)))
      .then(
        (release) => {
          // Admitted: the queue entry (and its timer) is done with; the listener would keep it to the end.
          if (cancelOnClose) res.off('close', cancelOnClose);
          admitted(release);
        },
        (err: unknown) => {
          if (!(err instanceof Refused)) return done(err);
          refusedOne();
          done(overloaded(gate.name, err.reason, limits.retryAfterSeconds));
        },
      );
  };
  const readmitTo: Record<string, (req: Request) => Promise<void>> = Object.fromEntries(
    Object.values(gates).map((gate) => [
      gate.name,
      (req: Request) =>
        new Promise<void>((resolve, reject) =>
          // Gone: the work goes no further (its answer could not be sent), and holds no slot.
          admit(gate, req, req.res as Response, (err) => (err ? reject(err) : resolve()), () => reject(overloaded(gate.name, 'queue_timeout', limits.retryAfterSeconds))),
        ),
    ]),
  );
  const middleware: RequestHandler = (req, res, next) => {
    // Mounted once per dialect prefix: a request already holding (or refused) a slot passes.
    if (res.locals.admission) return next();
    res.locals.admission = true;
    admit(gateOf(req.method), req, res, next, () => undefined);
  };
  return {
    gates,
    limits,
    middleware,
    status: () => ({
      writes: gates.writes.status(),
      reads: gates.reads.status(),
      database_slots: { in_use: budget.used, limit: budget.slots },
      retry_after_seconds: limits.retryAfterSeconds,
    }),
    refuseAtOnce: (method) => {
      const gate = gateOf(method);
      if (!gate.full) return null;
      gate.countRefusal();
      refusedOne();
      return overloaded(gate.name, 'queue_full', limits.retryAfterSeconds);
    },
  };
}

/**
 * Adds the `admission` block to an admin status answer (GET /admin/replication) without that route
 * having to know about admission: mounted in front of it, it extends the JSON object the route sends.
 */
export function withAdmissionBlock(admission: Pick<Admission, 'status'>): RequestHandler {
  return (_req, res, next) => {
    const json = res.json.bind(res);
    // On the status only: an error keeps its dialect's envelope as it is.
    res.json = (body: unknown) => json(res.statusCode < 400 && body !== null && typeof body === 'object' && !Array.isArray(body) ? { ...body, admission: admission.status() } : body);
    next();
  };
}
