/**
 * The write side of replication. A feature's write runs in one local transaction through `write()`:
 * it locks and puts full rows, and the same transaction stores the change event in the outbox.
 * After commit the event is delivered right away (fast path) into every other member's inbox, each in
 * that member's own Redis; what fails there, the relay delivers later. `waitFor()` turns a consistency
 * level into a wait on the tracker (in this region's Redis, where the other regions' acks arrive).
 */
import { v7 as uuidv7 } from 'uuid';
import { poolOf, type Db } from '../db/client';
import type { Logger } from '../logger';
import type { HybridClock } from './hlc';
import { NO_DEPARTURES, type Departures, type DepartureState } from './departures';
import type { Membership } from './membership';
import { AppError } from '../http/errors';
import { isSchemaChange, type RowStore } from './row-store';
import { ConnectionLost, endBackend, inPipeline, TransactionPastBound } from './pg-tx';
import type { ChangeEvent } from './tables';
import { changeStatus, type ChangeStatus } from './change-status';
import type { Tracker, WaitOptions, WaitResult } from './tracker';
import { recordDeliveries, type Deliverer, type Delivery } from './delivery';
import type { RedisLinks } from './links';
import type { EventAuth, SignedEvent } from './event-auth';
import { isTransient, pgCode } from '../db/pg-errors';
import { afterLostConnection } from '../db/retrying-reads';
import { STALE_GUESS } from './row-guesses';
import { WRITE_TX_TIMEOUT_MS } from './horizon';
import { WriteAttempt, type WriteContext, type Written, type WriteRun } from './write-attempt';

// The write side's API (features import it from here), defined beside the attempt that implements it.
export { refusedWrite, type PutOptions, type WriteContext } from './write-attempt';

const COLLISION_ATTEMPTS = 5;
/** Times a write runs again after its connection was lost before it committed (see write). */
const LOST_ATTEMPTS = 3;

/** How often fast-path deliveries are recorded (see markDelivered). */
const MARK_DELIVERED_MS = 200;

/** A write's attempts' shared state (WriteRun), and what its recovery counts across them. */
interface WriteRecovery<T> extends WriteRun<T> {
  reloaded: boolean;
  /** Runs again after a connection lost under the transaction, once known not to have committed. */
  lostAgain: number;
}

/**
 * A local write that collided with concurrent changes on every one of its COLLISION_ATTEMPTS: each attempt
 * was rolled back, so nothing was written (answered 503 with Retry-After, http/errors.ts).
 */
export class CollisionsExhausted extends Error {
  override readonly name = 'CollisionsExhausted';
  constructor(last: unknown) {
    super(`a local write collided with concurrent changes ${COLLISION_ATTEMPTS} times: ${(last as Error)?.message ?? String(last)}`, { cause: last });
  }
}

/** Runs a local write's transaction again (up to COLLISION_ATTEMPTS in all) when it collided with an apply. */
async function retryCollisions<T>(run: () => Promise<T>, log: Logger): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (err) {
      const collided = isTransient(err) || (err instanceof AppError && err.code === 'write_superseded') || /refused by the merge rule/.test(String((err as Error).message));
      if (!collided) throw err;
      if (attempt >= COLLISION_ATTEMPTS) {
        // A decided loss is answered as such (409); a collision every time is said to the operators.
        if (err instanceof AppError) throw err;
        log.warn({ err: (err as Error).message, attempts: attempt }, 'a local write collided with concurrent changes on every attempt; answered 503');
        throw new CollisionsExhausted(err);
      }
      log.debug({ err: (err as Error).message, attempt }, 'local write collided with an apply; running it again');
      await new Promise((r) => setTimeout(r, 5 * attempt + Math.random() * 10 * attempt));
    }
  }
}

export interface ReplicatorDeps {
  db: Db;
  links: RedisLinks;
  /** Delivers events into other regions' inboxes (shared with the relay). */
  deliverer: Deliverer;
  store: RowStore;
  clock: HybridClock;
  tracker: Tracker;
  region: string;
  regions: readonly string[];
  /** The deployment's members; without it, `regions`. */
  membership?: Pick<Membership, 'regions'>;
  /** Regions removed from the deployment, and whether this region may take over their work (departures.ts). */
  departures?: Pick<Departures, 'state'>;
  log: Logger;
  /** Signs each event where it is created: the outbox stores it signed (see event-auth.ts). */
  auth: EventAuth;
  /**
   * A write transaction's bound (the config's writeTransactionTimeoutMs; default and at most WRITE_TX_TIMEOUT_MS).
   * The horizon counts on it: the region's tombstone collector keeps its watermark inFlightMs of it behind.
   */
  writeTxTimeoutMs?: number;
}

export class Replicator {
  constructor(private readonly d: ReplicatorDeps) {}

  get region(): string {
    return this.d.region;
  }

  /** The deployment's regions (its members: a region being added counts as soon as it joined). */
  get regions(): readonly string[] {
    return this.d.membership?.regions() ?? this.d.regions;
  }

  /** Whether this region may take over the work of regions that left the deployment (without it: never). */
  async departures(): Promise<DepartureState> {
    return this.d.departures ? this.d.departures.state() : NO_DEPARTURES;
  }

  async write<T>(fn: (ctx: WriteContext) => Promise<T>): Promise<{ value: T; event: ChangeEvent | null }> {
    // A write that collides with an apply of the same key (a deadlock, or the merge rule refusing it because
    // an outranking state landed first) runs again, whole: the feature then sees what is stored now.
    // One that fails because a migration changed a table under this process's cached statements runs once
    // more after the row store reloaded its column lists.
    // The transaction runs on the pool under the database client (poolOf), pipelined: BEGIN goes with the
    // first statement and COMMIT with the outbox row. Through the ORM's interactive transaction a PATCH took
    // five round trips and ~1 ms of CPU (its own bookkeeping around each statement); see docs/performance.md.
    // A row the write locks is guessed (store.guess: as this process last saw it committed) and the guess
    // checked with the commit, which makes a PATCH one round trip; a stale guess fails the transaction before
    // COMMIT and the write runs again reading what it locks.
    const w: WriteRecovery<T> = { changeId: uuidv7(), guessing: true, guessed: [], sent: null, reloaded: false, lostAgain: 0 };
    const run = () => retryCollisions(() => inPipeline(
      poolOf(this.d.db),
      (pipe) => new WriteAttempt(pipe, w, this.d).run(fn),
      // The tombstone horizon counts on this bound (horizon.ts). A free connection is waited for up to the
      // pool's POOL_WAIT_MS (then 503).
      { timeoutMs: Math.min(this.d.writeTxTimeoutMs ?? WRITE_TX_TIMEOUT_MS, WRITE_TX_TIMEOUT_MS) },
    ), this.d.log);
    let result: Written<T> | undefined;
    while (!result) {
      try {
        result = await run();
      } catch (err) {
        result = await this.recover(err, w);
      }
    }
    if (result.event) {
      this.d.store.committed(result.event.ops);
      this.publish(result.event);
    }
    return result;
  }

  /** After an attempt of write() failed: undefined to run it again, or what it committed; or it throws. */
  private async recover<T>(err: unknown, w: WriteRecovery<T>): Promise<Written<T> | undefined> {
    const { store } = this.d;
    if (w.guessing && w.guessed.length && (pgCode(err) === STALE_GUESS || err instanceof AppError)) {
      // Nothing was written. A stale guess, or an answer (a 404, say) the feature may have drawn from a
      // guess whose check never ran: run it again reading every row it locks.
      for (const [table, key] of w.guessed) store.forgetGuess(table, key);
      w.guessing = false;
    } else if (!w.reloaded && isSchemaChange(err)) {
      this.d.log.warn({ err: (err as Error).message }, 'a migration changed a replicated table; reloading its columns and running the write again');
      await store.reload();
      w.reloaded = true;
    } else if (err instanceof ConnectionLost) {
      return this.recoverLost(err, w);
    } else if (err instanceof TransactionPastBound && err.commitSent && w.sent) {
      return this.recoverPastBound(err, w);
    } else throw err;
    return undefined;
  }

  /**
   * The database restarted, or ended the session (the pool's idle connections are all dead after
   * either, and one may be checked out before the pool hears of it). COMMIT sent: what the database
   * did decides, as past the bound; kept, it is the answer. Not committed: run it again on another
   * connection (the same change id: nothing went out under it), once the pool has heard of the other
   * connections the database ended with this one (afterLostConnection).
   */
  private async recoverLost<T>(err: ConnectionLost, w: WriteRecovery<T>): Promise<Written<T> | undefined> {
    const { changeId } = w;
    const kept = err.commitSent && w.sent ? await this.outcomeOf(err, changeId) : false;
    if (kept === null) {
      // It may have committed: what a commit here invalidates goes (harmless if it did not).
      this.mayHaveCommitted(w);
      this.d.log.warn({ changeId, err: err.message }, 'a write\'s connection was lost as it committed, and whether it was kept could not be found out');
      err.changeId = changeId;
      throw err;
    }
    if (kept) return w.sent ?? undefined;
    if (w.lostAgain >= LOST_ATTEMPTS) throw new ConnectionLost(false, err.backendPid, err.checkedOutAt, err.cause);
    w.lostAgain++;
    this.d.log.info({ changeId, err: err.message, commitSent: err.commitSent }, 'a write\'s database connection was lost before it committed; running it again');
    await afterLostConnection(w.lostAgain);
    return undefined;
  }

  /**
   * Its COMMIT went out and this process stopped listening (it stalled past the bound, say): what
   * the database did decides the answer, as for any write.
   */
  private async recoverPastBound<T>(err: TransactionPastBound, w: WriteRecovery<T>): Promise<Written<T> | undefined> {
    const kept = await this.outcomeOf(err, w.changeId);
    if (kept === true) return w.sent ?? undefined;
    if (kept === false) throw new TransactionPastBound(err.boundMs, false);
    // Not known: the caller is given the change to follow (and what a commit invalidates goes, as above).
    this.mayHaveCommitted(w);
    err.changeId = w.changeId;
    throw err;
  }

  /** A commit whose outcome is not known: what a commit of its rows invalidates here goes all the same. */
  private mayHaveCommitted(w: WriteRecovery<unknown>): void {
    if (w.sent) this.d.store.committed(w.sent.event.ops);
  }

  /**
   * Whether the transaction of a write whose COMMIT went out unconfirmed (it outran its bound, or its
   * connection was lost) committed: its backend is ended first (endBackend), so that the answer is final;
   * null when that cannot be made sure.
   */
  private async outcomeOf(err: TransactionPastBound | ConnectionLost, changeId: string): Promise<boolean | null> {
    if (err.backendPid === null) return null;
    const pool = poolOf(this.d.db);
    if (!(await endBackend(pool, err.backendPid, err.checkedOutAt))) return null;
    try {
      const kept = (await pool.query('SELECT 1 FROM replication_outbox WHERE change_id = $1::uuid', [changeId])).rowCount === 1;
      const why = err instanceof ConnectionLost ? 'its connection was lost as it committed' : 'it ran past the transaction bound';
      this.d.log.warn({ changeId, kept }, `a write's commit was not confirmed (${why}): ${kept ? 'it was kept' : 'rolled back'}`);
      return kept;
    } catch {
      return null;
    }
  }

  /** Events committed since the last delivery round (see publish). */
  private outgoing: SignedEvent[] = [];

  /**
   * Fast path after commit. Failures are fine: the relay delivers whatever is left undelivered.
   * Events committed in the same turn of the event loop go out together (on setImmediate, right after the
   * I/O that completed their commits): one pipeline per destination and one for the acks, instead of three
   * per event. Under load a turn completes several commits; alone, an event waits for no other.
   */
  publish(event: SignedEvent): void {
    this.outgoing.push(event);
    if (this.outgoing.length === 1) {
      setImmediate(() => {
        const round = this.deliverOutgoing().catch((err: Error) => this.d.log.debug({ err: err.message }, 'delivery round failed; the relay delivers its events'));
        this.rounds.add(round);
        void round.finally(() => this.rounds.delete(round));
      });
    }
  }

  /** Delivery rounds under way (see flushPublished). */
  private readonly rounds = new Set<Promise<void>>();

  private async deliverOutgoing(): Promise<void> {
    const events = this.outgoing;
    this.outgoing = [];
    const { links, deliverer, region } = this.d;
    const ids = events.map((e) => e.changeId);
    const destinations = this.regions.filter((r) => r !== region);
    // The deliveries go out first (they are what an all_regions write waits on); the origin's own acks
    // ("applied": its transactions put every row) go alongside them.
    const delivering = deliverer.deliverAll(links, new Map(destinations.map((dest) => [dest, events])));
    const orgs = new Map(events.flatMap((e) => (e.orgId ? [[e.changeId, e.orgId] as const] : [])));
    const ownAck = this.d.tracker.ack(region, ids, { orgs }).catch((err: Error) => {
      this.d.log.debug({ err: err.message, count: ids.length }, 'own acks deferred to the relay');
    });
    const res = await delivering;
    const made = new Map<string, Delivery[]>(ids.map((id) => [id, []]));
    for (const [dest, r] of res) {
      if (r.ok) r.value.forEach((streamId, i) => made.get(ids[i] as string)?.push({ changeId: ids[i] as string, region: dest, streamId }));
      else this.d.log.debug({ err: r.error.message, count: ids.length, destination: dest }, 'delivery deferred to the relay');
    }
    for (const id of ids) {
      const mine = made.get(id) ?? [];
      this.markDelivered(id, mine, mine.length === destinations.length);
    }
    await ownAck;
  }

  private pendingMarks: { changeId: string; made: Delivery[]; complete: boolean }[] = [];
  private markTimer: NodeJS.Timeout | null = null;

  /**
   * Deliveries are recorded in batches, one statement per MARK_DELIVERED_MS instead of one per write, and
   * not while the write's all_regions wait is at its busiest (the destinations apply ~20 ms after commit on
   * a 30 ms WAN; on one shared machine this statement competed with them). Under the relay's 1 s before it
   * delivers an unrecorded event again; a record that is lost (crash, database error) only means it does.
   */
  private markDelivered(changeId: string, made: Delivery[], complete: boolean): void {
    this.pendingMarks.push({ changeId, made, complete });
    this.markTimer ??= setTimeout(() => void this.recordMarks(), MARK_DELIVERED_MS);
  }

  /** The last batch of records under way; each batch starts after the one before it has ended. */
  private recording: Promise<void> = Promise.resolve();

  /**
   * Records every delivery made so far: it waits for the delivery rounds under way (their records are
   * then pending) and for a batch the timer already started, so that when it returns, every event whose
   * delivery round had begun is recorded (or its record failed, which only means the relay delivers it
   * again). Used at shutdown.
   */
  async flushPublished(): Promise<void> {
    await Promise.all([...this.rounds]);
    await this.recordMarks();
  }

  private recordMarks(): Promise<void> {
    if (this.markTimer) clearTimeout(this.markTimer);
    this.markTimer = null;
    const marks = this.pendingMarks;
    this.pendingMarks = [];
    const before = this.recording;
    this.recording = (async () => {
      await before;
      if (marks.length === 0) return;
      try {
        await recordDeliveries(this.d.db, marks.flatMap((m) => m.made), marks.filter((m) => m.complete).map((m) => m.changeId));
      } catch (err) {
        this.d.log.debug({ err: (err as Error).message, count: marks.length }, 'could not record deliveries; the relay will deliver them again');
      }
    })();
    return this.recording;
  }

  /**
   * Waits until every configured region holds the change, one reports it superseded, or the deadline
   * passes. `alreadyApplied`: the regions known to hold it (by default this one, which just committed it);
   * `anyOrigin`: the change may have been made in another region (see Tracker.wait).
   * `origin`: the region that made the change, when it may be another (an idempotent replay): its acks are
   * in that region's Redis, which this process's tracker does not hear when it is not its own, so they are
   * read there until complete (a current member's only: a removed region's address may no longer be known).
   * Not an async function: a suspended frame per waiter (its generator, registers and promise) was ~300
   * bytes of each of 10,000 all_regions waiters; a promise chain holds only what the next step needs.
   */
  waitForAllRegions(
    changeId: string,
    deadline: number,
    alreadyApplied: readonly string[] = [this.d.region],
    opts: WaitOptions & { origin?: string } = {},
  ): Promise<WaitResult> {
    const { tracker, links, region } = this.d;
    // A current member's Redis only (a removed region's address may no longer be known).
    const remote = opts.origin !== undefined && opts.origin !== region && this.regions.includes(opts.origin) && !links.sharesOwn(opts.origin);
    const elsewhere = remote ? links.to(opts.origin as string) : null;
    const wait = (regions: readonly string[], applied: readonly string[]) =>
      elsewhere ? tracker.waitReading(elsewhere, changeId, regions, applied, deadline, opts) : tracker.wait(changeId, regions, applied, deadline, opts);
    // A region that joined while we waited counts too: never answer complete without a current member.
    const withJoined = (waited: WaitResult): WaitResult | Promise<WaitResult> => {
      const joined = this.regions.filter((r) => !waited.applied.includes(r) && !waited.pending.includes(r));
      if (!waited.complete || joined.length === 0) return waited;
      return wait([...waited.applied, ...joined], waited.applied).then((more) =>
        withJoined({ ...more, applied: [...new Set([...waited.applied, ...more.applied])] }),
      );
    };
    return wait(this.regions, alreadyApplied).then(withJoined);
  }

  /** A change's progress, for its organization only (null: unknown here, or another organization's). */
  changeStatus(changeId: string, orgId: Parameters<typeof changeStatus>[2]): Promise<ChangeStatus | null> {
    const { db, tracker, region, links, store } = this.d;
    return changeStatus({ db, tracker, region, regions: this.regions, links, tables: store.tables }, changeId, orgId);
  }
}
