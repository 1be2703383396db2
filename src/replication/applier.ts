/**
 * The apply side of replication, run by every region: it reads only its own inbox, in its own Redis (the
 * other regions deliver their changes into it), with its region's consumer group, and acks each change
 * into the Redis of the change's origin, where the origin's tracker waits.
 * A batch is applied in one transaction (last writer wins per row, so duplicates and reordering are
 * harmless), then acked in the tracker, then XACKed. Our own pending entries are walked once at start with
 * a cursor, and entries left pending (by a dead consumer, or by a failed apply) are reclaimed with
 * XAUTOCLAIM, also with a cursor: an entry that cannot be applied is passed over, never re-read in a loop.
 * An event that keeps failing while the database answers is parked (see parked.ts); while the database
 * does not answer or refuses (isDatabaseTrouble, or SELECT 1 fails on the applier's pool), nothing is
 * counted against any event. Parked events are tried again at start, on the admin retry, and periodically
 * (parked-retry.ts). A statement the database canceled (its statement_timeout), or whose lock wait it gave up (its
 * lock_timeout), is the database's trouble (or a collision) too, unless the change was applied alone and other
 * changes committed since its previous such failure: then it is the change's (its apply alone outlasts the
 * timeout, or waits on a lock held for good), counted, and parked after MAX_FAILURES (see apply-timeouts.ts).
 */
import type { Pool } from 'pg';
import type { Db } from '../db/client';
import { withTimeout } from '../db/timeout';
import type { Logger } from '../logger';
import type { Redis, ReplicationKeys } from '../redis';
import type { RedisLinks } from './links';
import type { HybridClock } from './hlc';
import type { Membership } from './membership';
import { FailureLog, type ParkReason } from './parked';
import { isSchemaChange, type RowStore } from './row-store';
import { ensureGroup, type StreamEntry } from './stream';
import { PACK_MAX_EVENTS } from './delivery';
import type { Tracker } from './tracker';
import type { AckOutcome } from './ack-records';
import type { EventAuth, RefusalReason } from './event-auth';
import { checkRestoredDatabase } from './restore-check';
import type { ReseedCommandConfig } from './reseed-command';
import { AppliedProgress } from './applied-progress';
import { InboxReads } from './inbox-reads';
import { OriginAcks, OWED_ACK_TAKEOVER_MS } from './origin-acks';
import { applyInTransaction } from './apply-transaction';
import { ParkedRetry } from './parked-retry';
import { ApplyTimeouts } from './apply-timeouts';
import { RemoteApply } from './apply-remote';
import { DeadLetters, type RefusedEntry } from './dead-letters';
import type { Parsed } from './inbox-events';
import { sortEntries } from './inbox-sort';
import { SetAside } from './set-aside';

export { parseEvent, readPack } from './inbox-events';
export { RECENT_REFUSED, type RefusedEntry } from './dead-letters';
export { FAILED_RETRY_MS, SKEW_RETRY_MS } from './parked-retry';

export interface ApplierDeps {
  db: Db;
  /** Plain pg connections for the apply transactions (pg-tx.ts: they are on the all_regions critical path). */
  pool: Pool;
  /** A connection of its own to this region's Redis: XREADGROUP BLOCK holds it. */
  reader: Redis;
  /** This region's Redis (links.own) and, for acks, every origin's. */
  links: RedisLinks;
  keys: ReplicationKeys;
  store: RowStore;
  clock: HybridClock;
  tracker: Tracker;
  region: string;
  regions: readonly string[];
  /** The deployment's members: this region joins before it reads. */
  membership?: Membership;
  consumer: string;
  log: Logger;
  batchSize?: number;
  /** How long an entry may sit unacked with a consumer before another consumer takes it over. */
  claimIdleMs?: number;
  /** How often to look for such entries (default 5 s). */
  claimEveryMs?: number;
  /** How often changes parked for clock skew are tried again (default SKEW_RETRY_MS). */
  skewRetryEveryMs?: number;
  /** How often changes parked as apply-failed are tried again (default FAILED_RETRY_MS). */
  failedRetryEveryMs?: number;
  /** How often changes still held for this region's upgrade are summed up in the log (default HELD_SUMMARY_MS). */
  heldSummaryEveryMs?: number;
  /** Verifies each entry's signature before anything else reads it (see event-auth.ts). */
  auth: EventAuth;
  /** What the re-seed command its start check quotes needs of the configuration (reseed-command.ts). */
  reseedCommand?: ReseedCommandConfig;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Events per batch (a read takes about this many; see eventsPerEntry). Each batch holds an advisory lock per row until it commits (an event writes one to
 * three rows: an organization and its key, a credential and its metadata), and Postgres's lock table is
 * shared by every database of a server (about max_locks_per_transaction × max_connections, 6,400 by
 * default): two batches of 250 in each of three regions on one server (development, tests) stay inside it.
 */
const BATCH_SIZE = 250;

/** Batches applied at once: one in the database while the next is read, verified and parsed. */
const BATCHES_IN_FLIGHT = 2;

export class Applier {
  private stopped = false;
  private loop: Promise<void> | null = null;
  private lastClaim = 0;
  private readonly failures: FailureLog;
  /** The retries of parked changes: at start, on the admin retry, and periodically per reason. */
  private readonly retry: ParkedRetry;
  /** Batches being applied (see launch). */
  private readonly applying = new Set<Promise<void>>();
  /** The first failure of a batch applied in the background, for the loop to handle. */
  private batchError: Error | null = null;
  /** This region's inbox: its reads and claims, and the entries in flight. */
  private readonly inbox: InboxReads;
  /** Acks to the changes' origins, and those owed for parked changes applied on a retry. */
  private readonly acks: OriginAcks;
  /** Applied events, counted per origin in replication_progress. */
  private readonly progress: AppliedProgress;
  /**
   * Events per entry of the recent reads (packs, see event-auth.ts): the largest of the last batch, or half
   * the estimate before it when that is larger, so that it follows larger packs at once and smaller ones
   * over a few batches. It starts at the largest a pack can be: the first reads after a start (our pending
   * entries, those claimed from others) take few entries, which may be full packs. A read takes batchSize / this entries; a batch with more events than batchSize
   * still goes to the database in transactions of at most batchSize events (see applyBatch).
   */
  private eventsPerEntry = PACK_MAX_EVENTS;
  /** The database's cancellations of applies (statement_timeout, lock_timeout): whose they are (see canceledOwn). */
  private readonly timeouts: ApplyTimeouts;
  /** The apply of other regions' events of a batch (see applyBatch). */
  private readonly remote: RemoteApply;
  appliedEvents = 0;
  get parkedEvents(): number {
    return this.setAside.parkedEvents;
  }
  /** Pending entries found deleted from the stream before this region applied them (see relay trim). */
  get lostEntries(): number {
    return this.inbox.lostEntries;
  }
  /** Whether the check of this region's database at start (restore-check.ts) has run (see checkedAtStart). */
  get startCheck(): 'pending' | 'done' {
    return this.databaseChecked ? 'done' : 'pending';
  }
  private databaseChecked = false;
  /** Resolves onChecked, once the start check has run (declared first: onChecked's initializer sets it). */
  private markChecked: () => void = () => undefined;
  private readonly onChecked = new Promise<void>((resolve) => (this.markChecked = resolve));
  /** Observer of each applied batch: its events' origins and how long it took (metrics set it). */
  onApplied?: (origins: readonly string[], seconds: number) => void;
  /** Observer of each refused entry: its claimed origin (a known region, else 'unknown') and reason. */
  onRefused?: (origin: string, reason: string) => void;

  /** Entries this region does not apply (refused, unreadable), moved to the dead-letter stream. */
  private readonly deadLetters: DeadLetters;
  /** Entries refused for their signature since start, per reason, and the newest of them. */
  get refusedEvents(): number {
    return this.deadLetters.refusedEvents;
  }
  get refusedByReason(): Partial<Record<RefusalReason, number>> {
    return this.deadLetters.refusedByReason;
  }
  get recentRefused(): RefusedEntry[] {
    return this.deadLetters.recentRefused;
  }

  /** What of a read does not apply now: dead-lettered, acked as parked again, or parked (see set-aside.ts). */
  private readonly setAside: SetAside;

  constructor(private readonly d: ApplierDeps) {
    this.failures = new FailureLog(d.db);
    this.progress = new AppliedProgress(d);
    this.timeouts = new ApplyTimeouts(d.log);
    this.inbox = new InboxReads(d, (ids) => this.xack(ids));
    this.acks = new OriginAcks(d, (ids) => this.xack(ids));
    this.deadLetters = new DeadLetters(d, (origin, reason) => this.onRefused?.(origin, reason));
    this.setAside = new SetAside(d, {
      failures: this.failures,
      deadLetters: this.deadLetters,
      acks: this.acks,
      onRefused: (origin, reason) => this.onRefused?.(origin, reason),
    });
    this.retry = new ParkedRetry(d, {
      failures: this.failures,
      timeouts: this.timeouts,
      acks: this.acks,
      apply: (batch, outcomes, parked) => this.apply(batch, outcomes, parked),
      databaseUp: () => this.databaseUp(),
      stopped: () => this.stopped,
    });
    this.remote = new RemoteApply({ log: d.log, batchSize: d.batchSize ?? BATCH_SIZE }, {
      failures: this.failures,
      timeouts: this.timeouts,
      acks: this.acks,
      apply: (batch, outcomes) => this.apply(batch, outcomes),
      databaseUp: () => this.databaseUp(),
      park: (items) => this.setAside.park(items),
    });
  }

  start(): void {
    this.loop ??= this.run();
  }

  /**
   * Whether the start check has run within `waitMs` (the loop runs it first: its own Redis must answer). The
   * region opens its port after it (region.ts), so that it is never served as `active` on a database that
   * was replaced or restored from a backup; false: it has not (that Redis does not answer), the loop goes on trying.
   */
  checkedAtStart(waitMs: number): Promise<boolean> {
    return withTimeout(this.onChecked, waitMs).then(() => true, () => false);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.inbox.interrupt(this.d.links.own);
    await this.loop;
    await this.retry.drain();
    await Promise.all(this.applying);
    await this.progress.flush();
    await this.acks.drain();
  }

  private async run(): Promise<void> {
    const { consumer, log } = this.d;
    const events = this.d.batchSize ?? BATCH_SIZE;
    // Entries per read: about `events` events, as many entries as the recent packs leave room for.
    const count = () => Math.max(1, Math.floor(events / this.eventsPerEntry));
    // Cursors: our own pending entries are walked once (null when done); XAUTOCLAIM scans the pending
    // list from claimCursor and wraps to 0-0. An entry that fails stays pending and the cursor moves on.
    const s: ReadState = { groupsReady: false, started: false, pendingCursor: '0', claimCursor: '0-0' };
    while (!this.stopped) {
      try {
        await this.prepare(s);
        this.retry.startDue();
        this.acks.resendDue();
        this.setAside.heldLog.summarize();
        const entries = await this.readNext(s, count);
        if (entries.length) await this.launch(entries);
        // A batch that failed is handled as the loop's own failure (a lost group, a Redis error).
        const failed = this.batchError;
        this.batchError = null;
        if (failed) throw failed;
      } catch (err) {
        const message = (err as Error).message;
        if (message.includes('NOGROUP')) {
          log.warn('consumer groups missing (Redis restarted empty?); recreating them');
          s.groupsReady = false;
        } else {
          log.debug({ err: message, consumer }, 'applier: stream read failed; retrying');
          await sleep(500);
        }
      }
    }
  }

  /** Joins the deployment and creates the inbox's consumer group (again after NOGROUP); starts up once. */
  private async prepare(s: ReadState): Promise<void> {
    const { keys, region } = this.d;
    if (!s.groupsReady) {
      await this.d.membership?.join();
      await ensureGroup(this.d.links.own, keys.inbox(region), region);
      s.groupsReady = true;
      s.pendingCursor = '0';
    }
    if (!this.databaseChecked) await this.checkDatabase();
    if (!s.started) {
      await this.startUp();
      s.started = true;
    }
  }

  /**
   * A database restored from a backup, or replaced, lacks what was applied since: the region needs a re-seed.
   * Once marked joining, this process's members say so before it serves (its next refresh is up to a second away).
   */
  private async checkDatabase(): Promise<void> {
    const { keys, region, log, membership } = this.d;
    const found = await checkRestoredDatabase({ db: this.d.db, links: this.d.links, keys, region, regions: membership?.regions() ?? this.d.regions, log, signing: this.d.tracker.signing, command: this.d.reseedCommand });
    if (found.replaced || found.behind.length > 0 || found.setBack) await membership?.refresh();
    this.databaseChecked = true;
    this.markChecked();
  }

  /** Before the first read: what a restart or an upgrade left to retry and to send again. */
  private async startUp(): Promise<void> {
    const { log } = this.d;
    // After an upgrade, events parked by the previous version may apply now.
    await this.failures.load();
    const retried = await this.retry.retryParked();
    if (retried.applied || retried.parked) log.info(retried, 'retried parked change events');
    // Acks of retried parked changes that a process of this region (this one before a restart, say)
    // could not deliver to their origins: sent again.
    await this.acks.loadOwedAcks();
  }

  /**
   * The next read's entries (`count()` of them at most): our own pending ones until walked, then those left
   * pending by others (XAUTOCLAIM, every claimEveryMs, a round at a time), else new ones (blocking 1 s).
   */
  private async readNext(s: ReadState, count: () => number): Promise<StreamEntry[]> {
    const { keys, region } = this.d;
    let entries: StreamEntry[];
    if (s.pendingCursor !== null) {
      ({ entries, last: s.pendingCursor } = await this.inbox.read(['COUNT', count(), 'STREAMS', keys.inbox(region), s.pendingCursor]));
    } else if (s.claimCursor !== '0-0' || Date.now() - this.lastClaim > (this.d.claimEveryMs ?? 5000)) {
      if (s.claimCursor === '0-0') {
        this.lastClaim = Date.now();
        // What failed for another process of this region (its entries are what a claim takes), so
        // that their failure rows are cleared when they apply here: otherwise such a row stays, and
        // holds this region's watermark (every region's tombstone collection) for good.
        await this.failures.load();
        await this.acks.loadOwedAcks(OWED_ACK_TAKEOVER_MS);
      }
      ({ entries, next: s.claimCursor } = await this.inbox.claim(count(), s.claimCursor));
    } else {
      ({ entries } = await this.inbox.read(['COUNT', count(), 'BLOCK', 1000, 'STREAMS', keys.inbox(region), '>']));
    }
    return entries;
  }

  /**
   * Applies a read's entries in the background (a failure is kept in batchError for the loop), and waits
   * while BATCHES_IN_FLIGHT batches are being applied.
   */
  private async launch(entries: StreamEntry[]): Promise<void> {
    // The next batch is read (and verified and parsed) while this one is in the database: up to
    // BATCHES_IN_FLIGHT batches at once. Their order does not matter (the merge rule is a maximum)
    // and each takes its rows' locks in one fixed order, so two batches never deadlock.
    this.inbox.enter(entries);
    const applying: Promise<void> = this.applyBatch(entries)
      .catch((err: Error) => {
        this.batchError ??= err;
      })
      .finally(() => this.inbox.leave(entries, this.acks.settled()));
    this.applying.add(applying);
    void applying.finally(() => this.applying.delete(applying));
    // The batch's transaction goes to Postgres first (in this turn's microtasks), the next read after
    // it: a socket write that wakes another process costs the writer ~0.1-0.25 ms on a small VM, and
    // the read first held back every apply, so every all_regions wait, by that much.
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.applying.size >= BATCHES_IN_FLIGHT) await Promise.race(this.applying);
  }

  private async applyBatch(entries: StreamEntry[]): Promise<void> {
    const sorted = sortEntries(this.d, { failures: this.failures, deadLetters: this.deadLetters }, entries);
    const { parsed, largest } = sorted;
    if (largest) this.eventsPerEntry = Math.max(largest, Math.ceil(this.eventsPerEntry / 2));
    await this.setAside.takeOut(sorted);
    if (parsed.length === 0) return;
    // Our own changes were committed here before they were published: they only need acking.
    const own = parsed.filter((p) => p.event.origin === this.d.region);
    const remote = parsed.filter((p) => p.event.origin !== this.d.region);
    if (remote.length === 0) return this.acks.acknowledge(own, new Map());
    await this.remote.applyRemote(own, remote);
  }

  /**
   * Whether the database answers on the applier's own pool: the one its batches failed on (the main pool
   * can be up when this one cannot open a connection, e.g. at the connection limit, as a review found).
   */
  private databaseUp(): Promise<boolean> {
    return withTimeout(this.d.pool.query('SELECT 1'), 5000).then(() => true, () => false);
  }

  /** Re-applies parked events (see ParkedRetry.retryParked): also on POST /admin/replication/parked/retry. */
  retryParked(opts: { reason?: ParkReason } = {}): Promise<{ applied: number; parked: number }> {
    return this.retry.retryParked(opts);
  }

  /**
   * Applies the batch in one transaction; its changes' superseded outcomes go into `outcomes`.
   * `parked`: the batch is that parked change's retry. Its parked row is deleted in the same transaction,
   * first, and the apply is given up (NoLongerParked) when there is none: an operator's discard of it, or
   * another process's retry, came between the read of the parked page and this apply. The row's lock
   * orders the two: a discard that comes after it finds the change applied and not parked.
   */
  private async apply(batch: Parsed[], outcomes: Map<string, AckOutcome>, parked?: string): Promise<void> {
    try {
      await this.applyOnce(batch, outcomes, parked);
    } catch (err) {
      // A migration changed a table under the cached statements: reload the column lists, try once more.
      if (!isSchemaChange(err)) throw err;
      this.d.log.warn({ err: (err as Error).message }, 'a migration changed a replicated table; reloading its columns');
      await this.d.store.reload();
      await this.applyOnce(batch, outcomes, parked);
    }
    // Before the acks: a change waited on with all_regions is in effect here when its writer is answered.
    this.d.store.committed(batch.flatMap((p) => p.event.ops));
  }

  private async applyOnce(batch: Parsed[], outcomes: Map<string, AckOutcome>, parked?: string): Promise<void> {
    const { clock } = this.d;
    const started = performance.now();
    const { lost, belowHorizon } = await applyInTransaction(this.d, batch, parked);
    this.timeouts.committed(batch);
    // Counted once committed: a transaction rolled back (and its batch tried again, event by event) counts nothing.
    this.d.store.countBelowHorizon(belowHorizon);
    // Only a committed apply decides what the ack says.
    for (const b of batch) outcomes.delete(b.event.changeId);
    for (const [id, o] of lost) outcomes.set(id, o);
    for (const b of batch) for (const op of b.event.ops) clock.observe(op.version);
    this.progress.count(batch.map((b) => b.event));
    this.appliedEvents += batch.length;
    this.onApplied?.(batch.map((b) => b.event.origin), (performance.now() - started) / 1000);
  }

  /** XACKs entries of this region's inbox; answers how many were still pending (another consumer may have acked them). */
  private async xack(ids: string[]): Promise<number> {
    return Number(await this.d.links.own.xack(this.d.keys.inbox(this.d.region), this.d.region, ...ids));
  }
}

/** Where the loop's reads stand (see run): its consumer group, its start-up, and its cursors. */
type ReadState = { groupsReady: boolean; started: boolean; pendingCursor: string | null; claimCursor: string };
