/**
 * Consistency levels (SlashID-Required-Consistency / -Timeout) and the wait that implements them.
 * The deadline starts when the request arrives. A timeout never cancels the write: a local commit that
 * is still running goes on, and a committed change keeps replicating.
 */
import type { Request, Response } from 'express';
import { leaveAdmission } from '../http/admission';
import { AppError, badRequest, shownHeader } from '../http/errors';
import { sentOnce } from '../http/header-count';
import { ConnectionLost, TransactionPastBound } from './pg-tx';
import type { Replicator } from './replicator';
import { versionTime } from './hlc';
import type { ChangeEvent } from './tables';
import type { WaitResult } from './tracker';

export type ConsistencyLevel = 'local_region' | 'all_regions';

export interface Consistency {
  level: ConsistencyLevel;
  timeoutSeconds: number;
  deadline: number;
  /** Gives the request's admission slot back (it only waits for other regions from then on). */
  leave: () => void;
  /** The request: an all_regions wait ends when its client goes away (see untilGone). */
  req?: Request;
}

/**
 * Ends a wait (`stop`) when the request's client has gone away: nobody is left to answer, and a waiter kept
 * to its deadline (up to 120 s) holds the request's objects and counts as waiting in the metrics.
 */
function untilGone(req: Request | undefined): ((stop: () => void) => void) | undefined {
  const res = req?.res;
  if (!res) return undefined;
  return (stop) => {
    if (res.destroyed || req.socket?.destroyed) stop();
    else res.once('close', stop);
  };
}

export const DEFAULT_TIMEOUT_SECONDS = 30;

export function parseConsistency(req: Request, startedAt = Date.now()): Consistency {
  // Node joins a repeated header with ", ": two values are not one malformed value (which would the client mean?).
  for (const name of ['SlashID-Required-Consistency', 'SlashID-Required-Consistency-Timeout']) sentOnce(req, name, badRequest);
  const rawLevel = req.get('SlashID-Required-Consistency');
  // Absent means the default; present and empty is a value, and not one of the two.
  const level = rawLevel === undefined ? 'local_region' : rawLevel;
  if (level !== 'local_region' && level !== 'all_regions') {
    throw badRequest(`SlashID-Required-Consistency must be 'local_region' or 'all_regions' (got ${shownHeader(level)}).`);
  }
  const rawTimeout = req.get('SlashID-Required-Consistency-Timeout');
  let timeoutSeconds = DEFAULT_TIMEOUT_SECONDS;
  if (rawTimeout !== undefined) {
    // Digits only, leading zeros allowed ("005" and "0005" alike), at most 10 of them.
    if (!/^\d{1,10}$/.test(rawTimeout.trim()) || Number(rawTimeout) < 1 || Number(rawTimeout) > 120) {
      throw badRequest(`SlashID-Required-Consistency-Timeout must be a whole number of seconds from 1 to 120 (got ${shownHeader(rawTimeout)}).`);
    }
    timeoutSeconds = Number(rawTimeout);
  }
  return { level, timeoutSeconds, deadline: startedAt + timeoutSeconds * 1000, leave: () => leaveAdmission(req), req };
}

export interface WriteOutcome<T> {
  value: T;
  changeId: string | null;
}

/** Where a client follows a change with its own credentials (the dialect's route); the default is SlashID's. */
export type FollowUp = (changeId: string) => string;

export const slashidFollowUp: FollowUp = (id) =>
  `GET /organizations/replication/changes/${id} (with your SlashID-OrgID and SlashID-API-Key)`;

/** Sets a write's X-Change-Id on its answer (writeWithConsistency's onChangeId). */
export const setChangeId = (res: Response) => (changeId: string) => void res.setHeader('X-Change-Id', changeId);

/** The admin API's writes: the operator follows the change with the admin token. */
export const adminFollowUp: FollowUp = (id) => `GET /admin/replication/changes/${id} (with the admin token)`;

/**
 * The resource a stored answer holds, for the 408 of a replay that timed out as the first request's 408
 * carried it (`result` / `details`). The default reads SlashID's envelope; a dialect whose bodies are the
 * resource itself passes `(body) => body`.
 */
export type StoredResult = (body: unknown) => unknown;

export const slashidStoredResult: StoredResult = (body) =>
  body !== null && typeof body === 'object' ? (body as { result?: unknown }).result : undefined;

/**
 * The 409 of an all_regions write that lost: some region already held a state of the row that outranks
 * it (an earlier create of the same key, a deletion, a newer update), so the write is not, and will not
 * become, the row's state anywhere.
 */
export class SupersededError extends AppError {
  /** The tables of the rows that lost, as the regions that judged it named them (one row per region). */
  readonly lostTables: readonly string[];
  constructor(message: string, lostTables: readonly string[], result?: unknown) {
    super(409, 'write_superseded', message, result === undefined ? {} : { result });
    this.lostTables = lostTables;
  }
}

export function supersededError(changeId: string, waited: WaitResult, result?: unknown): SupersededError {
  const lost = waited.superseded[0];
  // Said in the resource's terms: the winner's region and time, not its table and version (schema detail a
  // client has no use for; a helper's review).
  const when = lost ? versionTime(lost.winner.version) : null;
  const what = lost
    ? `a write made in ${lost.winner.originRegion}${when ? ` at ${when}` : ''} won` +
      ` (seen in ${waited.superseded.map((s) => s.region).join(', ')})`
    : 'another write won';
  return new SupersededError(
    `This write (change ${changeId}) lost to a concurrent write and is not kept: ${what}. ` +
      'Read the resource for its current state and retry the change if it still applies.',
    waited.superseded.map((s) => s.winner.table),
    result,
  );
}

function pendingError(c: Consistency, changeId: string, waited: WaitResult, followUp: FollowUp, result?: unknown): AppError {
  return new AppError(
    408,
    'consistency_timeout',
    `all_regions consistency was not reached within ${c.timeoutSeconds} s: applied in ${waited.applied.join(', ') || 'no region yet'}; ` +
      `still pending in ${waited.pending.join(', ')}. The write is committed and keeps replicating; ` +
      `follow up with ${followUp(changeId)}.`,
    result === undefined ? {} : { result },
  );
}

/**
 * How long a change can be followed: its origin keeps the outbox row and the ack record this long after
 * every region acked it (the relay's retention), then both expire.
 */
export const FOLLOW_UP_WINDOW_MS = 3_600_000;

/**
 * For the replay of an idempotent request: under all_regions, waits on the change that stored it (as the
 * first request did): returns once every region holds it, 409 if it lost, 408 if still pending (carrying
 * the stored answer's resource, as the first request's 408 did).
 * local_region, or a key stored before change ids were recorded, answers at once; so does a key stored
 * longer ago than the follow-up window whose change is no longer known (its records expired after every
 * region acked it: the stored answer is all that is left; read the resource for its state).
 */
export async function awaitChange(
  repl: Replicator,
  c: Consistency,
  change: string | null | { changeId: string | null; storedAt?: Date; origin?: string | null; response?: { body: unknown } },
  followUp: FollowUp = slashidFollowUp,
  storedResult: StoredResult = slashidStoredResult,
): Promise<void> {
  const { changeId, storedAt, origin, response } = typeof change === 'object' && change !== null ? change : { changeId: change, storedAt: undefined, origin: null, response: undefined };
  if (c.level === 'local_region' || !changeId) return;
  c.leave(); // what follows holds no database connection for long, and may wait: give the slot back
  // What is known of the change, read once and not past the deadline (with this region's Redis cut off,
  // its ack record cannot be read in time): for a key older than the follow-up window, whether the change
  // is still known at all; for a change made here, its outcome, which this region's outbox keeps even when
  // the acks in its Redis were lost.
  const old = storedAt !== undefined && Date.now() - storedAt.getTime() > FOLLOW_UP_WINDOW_MS;
  const mine = !origin || origin === repl.region;
  const read = old || mine ? await byDeadline(c.deadline, repl.changeStatus(changeId, null).catch(() => null)) : null;
  const known = read && !read.late ? read.value : null;
  if (old && !known) return;
  // A change that lost only its key record reads applied in its status, but its key now answers the other
  // write: its replay answers the 409 it did before the status told the two apart (the route may word it).
  const lost = known ? [...known.superseded, ...(known.idempotency_key?.superseded ?? [])] : [];
  if (mine && known?.state === 'complete' && lost.length === 0) return;
  if (mine && lost.length) {
    throw supersededError(changeId, { complete: false, applied: [], pending: [], superseded: lost.map(({ region, winner }) => ({ region, winner })) });
  }
  // The stored request may have been served first in another region: its acks are recorded in that
  // origin's Redis (named by the key row), and announced on its channel. This region's own ack is waited
  // for too: the key row came with the change, but a row of it may have lost here (superseded).
  const waited = await repl.waitForAllRegions(changeId, c.deadline, [], { origin: origin ?? undefined, anyOrigin: origin !== repl.region, abandoned: untilGone(c.req) });
  if (waited.superseded.length) throw supersededError(changeId, waited);
  if (!waited.complete) throw pendingError(c, changeId, waited, followUp, response ? storedResult(response.body) : undefined);
}

/**
 * `work`'s outcome, or `{ late: true }` once `deadline` (epoch ms) passes first; `work` is not cancelled (a
 * rejection it meets later is dropped: the caller has answered by then).
 */
async function byDeadline<T>(deadline: number, work: Promise<T>): Promise<{ late: false; value: T } | { late: true }> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<{ late: true }>((resolve) => (timer = setTimeout(() => resolve({ late: true }), Math.max(0, deadline - Date.now()))));
  try {
    return await Promise.race([work.then((value) => ({ late: false as const, value })), late]);
  } finally {
    clearTimeout(timer);
    work.catch(() => undefined);
  }
}

/** The 408 of a request whose timeout ran out before its write started: nothing was written. */
function unstartedError(c: Consistency): AppError {
  return new AppError(
    408,
    'consistency_timeout',
    `The request used up its ${c.timeoutSeconds} s timeout before the write could start (receiving its body, waiting for a write slot, or fetching IdP metadata took that long); nothing was written. Retry with a longer SlashID-Required-Consistency-Timeout.`,
  );
}

/**
 * `work` (done before a write: the IdP metadata fetch), or that 408 at the request's deadline, when the
 * timeout runs out first: the caller gets its answer when the timeout says, not when the IdP answers
 * (up to its fetch timeout and a wait for a fetch slot later). `answered` aborts right after that 408, so
 * the work can stop (the fetch gives its slot back); nothing of it is written.
 */
export async function beforeWrite<T>(c: Consistency, work: (answered: AbortSignal) => Promise<T>): Promise<T> {
  const answered = new AbortController();
  const done = await byDeadline(c.deadline, work(answered.signal));
  if (!done.late) return done.value;
  answered.abort();
  throw unstartedError(c);
}

/**
 * The 408 of a write whose COMMIT went out and was not confirmed (`why`): it may have been kept, so its change
 * id is given, to follow.
 */
function unconfirmedCommitError(region: string, changeId: string, why: string, onChangeId: (changeId: string) => void): AppError {
  onChangeId(changeId);
  return new AppError(
    408,
    'consistency_timeout',
    `The write's commit in ${region} was not confirmed${why}; it may have been kept. ` +
      'Follow its change (X-Change-Id), read the resource, or retry (a create with the same Idempotency-Key).',
  );
}

/**
 * The 408 of a write transaction that outran the bound every write has (writeTransactionTimeoutMs), within the
 * request's own timeout: rolled back (a lock held that long, a stalled database), or, when its COMMIT had
 * gone out, not known.
 */
function pastBoundError(region: string, err: TransactionPastBound, onChangeId: (changeId: string) => void): AppError {
  const bound = `the ${Math.round(err.boundMs / 1000)} s a write transaction may run`;
  if (err.commitSent && err.changeId) {
    return unconfirmedCommitError(region, err.changeId, ` within ${bound} (this region or its database stalled)`, onChangeId);
  }
  return new AppError(
    408,
    'consistency_timeout',
    `The write did not commit in ${region} within ${bound} (the database was slow, or another transaction held the row); nothing was written. Retry.`,
  );
}

/**
 * Runs a replicated write and waits for the requested level. Resolves with the value when reached;
 * throws a 408 AppError (carrying `toResult(value)` when the write committed) when not.
 */
export async function writeWithConsistency<T>(
  repl: Replicator,
  c: Consistency,
  write: () => Promise<{ value: T; event: ChangeEvent | null }>,
  toResult: (value: T) => unknown,
  onChangeId: (changeId: string) => void = () => undefined,
  followUp: FollowUp = slashidFollowUp,
): Promise<WriteOutcome<T>> {
  // Work before the write (the IdP metadata fetch) used up the whole timeout: write nothing, so the
  // caller knows exactly where it stands.
  if (Date.now() >= c.deadline) throw unstartedError(c);
  const { value, changeId } = await committedWithin(repl, c, write, onChangeId);
  if (changeId) onChangeId(changeId);
  if (c.level === 'local_region' || !changeId) return { value, changeId };
  // Committed: the transaction's connection is back in the pool and waiting for other regions needs none
  // (the tracker waits on Redis acks), so the request gives its admission slot back too.
  c.leave();
  // Returned, not awaited: this function's frame is not kept for as long as the other regions take.
  return repl.waitForAllRegions(changeId, c.deadline, undefined, { abandoned: untilGone(c.req) }).then((waited) => {
    if (waited.complete) return { value, changeId };
    // A lost write answers 409 without `result`: nothing of it is kept.
    if (waited.superseded.length) throw supersededError(changeId, waited);
    throw pendingError(c, changeId, waited, followUp, toResult(value));
  });
}

/**
 * The write's value and change id once it committed (408 when it did not within the deadline). Its own
 * function so that the committed event (every row it wrote, signed) is not held by the caller while it
 * waits on the other regions: 10,000 waiters held ~7,000 of them (heap snapshot).
 */
async function committedWithin<T>(
  repl: Replicator,
  c: Consistency,
  write: () => Promise<{ value: T; event: ChangeEvent | null }>,
  onChangeId: (changeId: string) => void,
): Promise<{ value: T; changeId: string | null }> {
  // A write still under way at the deadline finishes (or fails) on its own; the caller is told 408.
  const committed = await byDeadline(c.deadline, write().catch((err: unknown) => {
    if (err instanceof TransactionPastBound) throw pastBoundError(repl.region, err, onChangeId);
    if (err instanceof ConnectionLost && err.changeId) {
      throw unconfirmedCommitError(repl.region, err.changeId, ': the connection to the database was lost as it committed, and the database did not answer the look that followed', onChangeId);
    }
    throw err;
  }));
  if (committed.late) {
    throw new AppError(
      408,
      'consistency_timeout',
      `The write did not commit in ${repl.region} within ${c.timeoutSeconds} s. It was not cancelled and may still complete: ` +
        'read the resource to see whether it did, or retry a create with the same Idempotency-Key (it answers what this one became).',
    );
  }
  return { value: committed.value.value, changeId: committed.value.event?.changeId ?? null };
}
