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
 * (retryDue). A statement the database canceled (its statement_timeout), or whose lock wait it gave up (its
 * lock_timeout), is the database's trouble (or a collision) too, unless the change was applied alone and other
 * changes committed since its previous such failure: then it is the change's (its apply alone outlasts the
 * timeout, or waits on a lock held for good), counted, and parked after MAX_FAILURES (see canceledOwn).
 */
import type { Pool } from 'pg';
import type { Db } from '../db/client';
import { databaseRefusal, isDatabaseTrouble, isTransient, pgCode } from '../db/pg-errors';
import { withTimeout } from '../db/timeout';
import { isUuid } from '../http/validate';
import type { Logger } from '../logger';
import type { Redis, ReplicationKeys } from '../redis';
import type { RedisLinks } from './links';
import { isVersion, type HybridClock } from './hlc';
import type { Membership } from './membership';
import { HeldLog, UPGRADE_REASONS } from './held-log';
import { ackPaid, FailureLog, MAX_FAILURES, owedAckStatement, owedAcks, type ParkReason } from './parked';
import { inPipeline } from './pg-tx';
import { creatingOps, isSchemaChange, type RowStore } from './row-store';
import { DEAD_LETTER_MAX_LENGTH, ensureGroup, type StreamEntry } from './stream';
import { PACK_MAX_EVENTS } from './delivery';
import type { ChangeEvent } from './tables';
import { recordAcks, recordParked, recordUnparked, type AckOutcome, type Tracker } from './tracker';
import type { EventAuth, RefusalReason } from './event-auth';
import { checkRestoredDatabase, raiseAppliedMark } from './restore-check';

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
}

/** An entry refused for its signature, as /admin/replication shows it. */
export interface RefusedEntry {
  streamId: string;
  /** The origin the entry claims (unauthenticated: it may be a lie), null when unreadable. */
  origin: string | null;
  reason: RefusalReason;
  kid: string | null;
  at: string;
}

/** How many refused entries /admin/replication lists (the newest). */
export const RECENT_REFUSED = 20;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Events per batch (a read takes about this many; see eventsPerEntry). Each batch holds an advisory lock per row until it commits (an event writes one to
 * three rows: an organization and its key, a credential and its metadata), and Postgres's lock table is
 * shared by every database of a server (about max_locks_per_transaction × max_connections, 6,400 by
 * default): two batches of 250 in each of three regions on one server (development, tests) stay inside it.
 */
const BATCH_SIZE = 250;

/**
 * Changes parked because their origin's clock was ahead (clock-skew) are tried again this often: once the
 * clocks agree again they apply without an operator, and the tombstone horizon, which a parked change
 * holds back (tombstones.ts), moves on.
 */
export const SKEW_RETRY_MS = 60_000;

/**
 * Changes parked as apply-failed are tried again this often (and at start, and on the admin retry): what
 * failed for a reason that has gone since (a schema fixed by hand, a row in the way removed, or a database
 * trouble no check recognised) applies without an operator, and the region converges.
 */
export const FAILED_RETRY_MS = 600_000;

/** Batches applied at once: one in the database while the next is read, verified and parsed. */
const BATCHES_IN_FLIGHT = 2;

/** How often the acks of retried parked changes that did not reach their origin are sent again (unsentAcks). */
const RESEND_ACKS_MS = 2000;

/**
 * Owed acks recorded longer ago than this are another process's of this region when this one does not hold
 * them (it stopped before their origin's Redis took them): a claim round takes them over (loadOwedAcks).
 */
const OWED_ACK_TAKEOVER_MS = 30_000;

/** Batches whose acks may be on their way at once before the applier waits for the oldest. */
const MAX_ACKS_IN_FLIGHT = 32;

export class Applier {
  private stopped = false;
  private loop: Promise<void> | null = null;
  private lastClaim = 0;
  /** When each periodic retry of parked changes last started (see retryDue). */
  private readonly lastRetry = new Map<ParkReason, number>([['clock-skew', Date.now()], ['apply-failed', Date.now()]]);
  /** The periodic retry of parked changes while it runs (one reason at a time, see retryDue). */
  private periodicRetry: Promise<void> | null = null;
  private readonly failures: FailureLog;
  /** Batches being applied (see run). */
  private readonly applying = new Set<Promise<void>>();
  /**
   * Parked changes applied on a retry whose ack did not reach their origin's Redis, sent again every
   * RESEND_ACKS_MS until it takes them (resendDue): such a change has no inbox entry left to read again, and
   * its origin confirmed it on the parked ack, so nothing delivers it again; its status showed this region as
   * parked for good. Each is also recorded in replication_retried_acks with its apply (parked.ts, OwedAck),
   * so that a restart meanwhile does not lose it: loaded at start, and on claim rounds (loadOwedAcks).
   */
  private readonly unsentAcks = new Map<string, { p: Ackable; outcome: AckOutcome | undefined }>();
  private lastResend = 0;
  private resending: Promise<void> | null = null;
  /** The first failure of a batch applied in the background, for the loop to handle. */
  private batchError: Error | null = null;
  /** Acks on their way to origins' Redis (see toOrigins). */
  private readonly acking = new Set<Promise<void>>();
  /** Applied events not yet counted in replication_progress, per origin (see countApplied). */
  private progress = new Map<string, ProgressRow>();
  private progressTimer: NodeJS.Timeout | null = null;
  /**
   * Events per entry of the recent reads (packs, see event-auth.ts): the largest of the last batch, or half
   * the estimate before it when that is larger, so that it follows larger packs at once and smaller ones
   * over a few batches. It starts at the largest a pack can be: the first reads after a start (our pending
   * entries, those claimed from others) take few entries, which may be full packs. A read takes batchSize / this entries; a batch with more events than batchSize
   * still goes to the database in transactions of at most batchSize events (see applyBatch).
   */
  private eventsPerEntry = PACK_MAX_EVENTS;
  /** Packs whose unreadable events this process dead-lettered (the newest 10,000): not again on a re-read. */
  private readonly deadLettered = new Set<string>();
  /** Apply transactions this process committed (see canceledOwn). */
  private commits = 0;
  /** Per change whose apply alone the database canceled or timed out on a lock: `commits` then (see canceledOwn). */
  private readonly canceledAt = new Map<string, number>();
  /** Applied events whose failure rows could not be cleared (the database went away): cleared with the next batch. */
  private unclearedIds: string[] = [];
  /** Stream ids of the entries of batches being applied or acked: XAUTOCLAIM must not hand them out again. */
  private readonly inFlight = new Set<string>();
  /**
   * Entries that left inFlight while an XAUTOCLAIM was under way: Redis may have handed them out before their
   * XACK, and its answer arrives after. Null when no claim is under way.
   */
  private endedDuringClaim: Set<string> | null = null;
  appliedEvents = 0;
  parkedEvents = 0;
  /** Pending entries found deleted from the stream before this region applied them (see relay trim). */
  lostEntries = 0;
  /** Observer of each applied batch: its events' origins and how long it took (metrics set it). */
  onApplied?: (origins: readonly string[], seconds: number) => void;
  /** Observer of each refused entry: its claimed origin (a known region, else 'unknown') and reason. */
  onRefused?: (origin: string, reason: string) => void;
  /** Entries refused for their signature since start, per reason, and the newest of them. */
  refusedEvents = 0;
  readonly refusedByReason: Partial<Record<RefusalReason, number>> = {};
  readonly recentRefused: RefusedEntry[] = [];

  /** Changes held for this region's upgrade: warned of once per origin and tables, then summed up. */
  private readonly heldLog: HeldLog;

  constructor(private readonly d: ApplierDeps) {
    this.failures = new FailureLog(d.db);
    this.heldLog = new HeldLog(d.log, d.heldSummaryEveryMs);
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    await this.periodicRetry;
    await Promise.all(this.applying);
    await this.flushProgress();
    await Promise.all(this.acking);
  }

  private async run(): Promise<void> {
    const { keys, region, consumer, log } = this.d;
    const events = this.d.batchSize ?? BATCH_SIZE;
    // Entries per read: about `events` events, as many entries as the recent packs leave room for.
    const count = () => Math.max(1, Math.floor(events / this.eventsPerEntry));
    let groupsReady = false;
    let started = false;
    // Cursors: our own pending entries are walked once (null when done); XAUTOCLAIM scans the pending
    // list from claimCursor and wraps to 0-0. An entry that fails stays pending and the cursor moves on.
    let pendingCursor: string | null = '0';
    let claimCursor = '0-0';
    while (!this.stopped) {
      try {
        if (!groupsReady) {
          await this.d.membership?.join();
          await ensureGroup(this.d.links.own, keys.inbox(region), region);
          groupsReady = true;
          pendingCursor = '0';
        }
        if (!started) {
          // A database restored from a backup lacks what was applied since: the region needs a re-seed.
          await checkRestoredDatabase({ db: this.d.db, links: this.d.links, keys, region, regions: this.d.membership?.regions() ?? this.d.regions, log });
          // After an upgrade, events parked by the previous version may apply now.
          await this.failures.load();
          const retried = await this.retryParked();
          if (retried.applied || retried.parked) log.info(retried, 'retried parked change events');
          // Acks of retried parked changes that a process of this region (this one before a restart, say)
          // could not deliver to their origins: sent again.
          await this.loadOwedAcks();
          started = true;
        }
        if (!this.periodicRetry) this.periodicRetry = this.retryDue();
        this.resendDue();
        this.heldLog.summarize();
        let entries: StreamEntry[];
        if (pendingCursor !== null) {
          ({ entries, last: pendingCursor } = await this.read(['COUNT', count(), 'STREAMS', keys.inbox(region), pendingCursor]));
        } else if (claimCursor !== '0-0' || Date.now() - this.lastClaim > (this.d.claimEveryMs ?? 5000)) {
          if (claimCursor === '0-0') {
            this.lastClaim = Date.now();
            // What failed for another process of this region (its entries are what a claim takes), so
            // that their failure rows are cleared when they apply here: otherwise such a row stays, and
            // holds this region's watermark (every region's tombstone collection) for good.
            await this.failures.load();
            await this.loadOwedAcks(OWED_ACK_TAKEOVER_MS);
          }
          ({ entries, next: claimCursor } = await this.claim(count(), claimCursor));
        } else {
          ({ entries } = await this.read(['COUNT', count(), 'BLOCK', 1000, 'STREAMS', keys.inbox(region), '>']));
        }
        if (entries.length) {
          // The next batch is read (and verified and parsed) while this one is in the database: up to
          // BATCHES_IN_FLIGHT batches at once. Their order does not matter (the merge rule is a maximum)
          // and each takes its rows' locks in one fixed order, so two batches never deadlock.
          for (const e of entries) this.inFlight.add(e[0]);
          const applying: Promise<void> = this.applyBatch(entries)
            .catch((err: Error) => {
              this.batchError ??= err;
            })
            .finally(() => this.leaveFlight(entries));
          this.applying.add(applying);
          void applying.finally(() => this.applying.delete(applying));
          // The batch's transaction goes to Postgres first (in this turn's microtasks), the next read after
          // it: a socket write that wakes another process costs the writer ~0.1-0.25 ms on a small VM, and
          // the read first held back every apply, so every all_regions wait, by that much.
          await new Promise<void>((resolve) => setImmediate(resolve));
          while (this.applying.size >= BATCHES_IN_FLIGHT) await Promise.race(this.applying);
        }
        // A batch that failed is handled as the loop's own failure (a lost group, a Redis error).
        const failed = this.batchError;
        this.batchError = null;
        if (failed) throw failed;
      } catch (err) {
        const message = (err as Error).message;
        if (message.includes('NOGROUP')) {
          log.warn('consumer groups missing (Redis restarted empty?); recreating them');
          groupsReady = false;
        } else {
          log.debug({ err: message, consumer }, 'applier: stream read failed; retrying');
          await sleep(500);
        }
      }
    }
  }

  /**
   * A batch's entries stay in flight (out of XAUTOCLAIM's reach) until their XACKs, which its acks to the
   * origins run in the background (toOrigins), are done or failed: a claim in between would hand out an
   * entry already applied, and it would be applied (and counted) again.
   */
  private leaveFlight(entries: StreamEntry[]): void {
    void Promise.allSettled([...this.acking]).then(() => {
      for (const e of entries) {
        this.inFlight.delete(e[0]);
        this.endedDuringClaim?.add(e[0]);
      }
    });
  }

  /** One page of XREADGROUP; `last` is the id of the last entry returned (null when none). */
  private async read(args: (string | number)[]): Promise<{ entries: StreamEntry[]; last: string | null }> {
    const { reader, region, consumer } = this.d;
    const res = (await reader.call('XREADGROUP', 'GROUP', region, consumer, ...args)) as [string, StreamEntry[]][] | null;
    const raw = res?.[0]?.[1] ?? [];
    // Entries deleted from the stream while pending come back with null fields.
    const gone = raw.filter((e) => !Array.isArray(e[1])).map((e) => e[0]);
    if (gone.length) await this.lost(gone, true);
    return { entries: raw.filter((e) => Array.isArray(e[1])), last: raw[raw.length - 1]?.[0] ?? null };
  }

  /** One page of XAUTOCLAIM from `start`; `next` is where the following page starts (0-0 once wrapped). */
  private async claim(count: number, start: string): Promise<{ entries: StreamEntry[]; next: string }> {
    const { reader, keys, region, consumer } = this.d;
    const ended = (this.endedDuringClaim = new Set<string>());
    let res: [string, StreamEntry[], string[]?];
    try {
      res = (await reader.call(
        'XAUTOCLAIM', keys.inbox(region), region, consumer, this.d.claimIdleMs ?? 15_000, start, 'COUNT', count,
      )) as [string, StreamEntry[], string[]?];
    } finally {
      this.endedDuringClaim = null;
    }
    // Redis 7 drops entries deleted from the stream from the pending list itself and names them here.
    if (res[2]?.length) await this.lost(res[2], false);
    // An entry of a batch still being applied here (a slow apply outlasts claimIdleMs), or whose batch ended
    // (applied and acked) while the claim was under way, is not taken twice.
    return { entries: (res[1] ?? []).filter((e) => Array.isArray(e[1]) && !this.inFlight.has(e[0]) && !ended.has(e[0])), next: String(res[0] ?? '0-0') };
  }

  /** Pending entries trimmed from the stream before this region applied them: nothing left to apply. */
  private async lost(ids: string[], ack: boolean): Promise<void> {
    this.lostEntries += ids.length;
    this.d.log.error({ count: ids.length, first: ids[0] }, 'pending change events were trimmed from the stream before this region applied them; re-seed this region (see README, Operations)');
    if (ack) await this.xack(ids);
  }

  private async applyBatch(entries: StreamEntry[]): Promise<void> {
    const { log } = this.d;
    const parsed: Parsed[] = [];
    const poison: StreamEntry[] = [];
    const unfit: Unfit[] = [];
    const refused: { entry: StreamEntry; reason: RefusalReason; kid: string | null; body: string | null }[] = [];
    const badInPacks: { id: string; items: { index: number; raw: string }[] }[] = [];
    // Events this process parked before, read again (their pack was pending, or their ack did not reach the origin).
    const parkedBefore: Parsed[] = [];
    let largest = 0;
    for (const entry of entries) {
      // Nothing of an entry is read before its signature holds: a refused one is never applied, never
      // observed by the clock, never acked to the tracker.
      const v = this.d.auth.verify(entry[1]);
      if (!v.ok) {
        refused.push({ entry, reason: v.reason, kid: v.kid, body: v.body });
        continue;
      }
      // A pack holds events of one origin under one MAC that holds: its readable events are applied, an
      // unreadable one (a bug of its origin's version) is dead-lettered alone and counts as settled. An
      // entry with nothing readable is dead-lettered whole.
      const pack = v.packed ? readPack(v.body) : null;
      const event = v.packed ? null : parseEvent(v.body);
      const events = pack ? pack.events : event ? [event] : [];
      if (events.length === 0) {
        poison.push(entry);
        continue;
      }
      // Read again (a pack whose event was not settled, an ack that did not reach the origin): what this
      // process dead-lettered of it is not copied again; what it parked is acked as parked again, not
      // parked or applied again (parked events apply through the retry of parked events).
      if (pack?.unreadable.length && !this.deadLettered.has(entry[0])) badInPacks.push({ id: entry[0], items: pack.unreadable });
      largest = Math.max(largest, events.length + (pack?.unreadable.length ?? 0));
      const ref: EntryRef = { id: entry[0], open: events.length };
      for (const e of events) {
        const p = { id: entry[0], event: e, entry: ref };
        if (this.failures.parkedHere(e.changeId)) {
          parkedBefore.push(p);
          continue;
        }
        const why = e.origin === this.d.region ? null : this.unfit(e);
        if (why) unfit.push({ p, ...why });
        else parsed.push(p);
      }
    }
    if (largest) this.eventsPerEntry = Math.max(largest, Math.ceil(this.eventsPerEntry / 2));
    // A column this process does not know may be one its own database gained since it loaded the columns
    // (a migration by a newer process of this region): look again before holding the event.
    if (unfit.some((u) => u.reason === 'schema-ahead') && (await this.d.store.reloadIfStale())) {
      for (const u of unfit.splice(0)) {
        const why = this.unfit(u.p.event);
        if (why) unfit.push({ p: u.p, ...why });
        else parsed.push(u.p);
      }
    }
    if (refused.length) await this.refuse(refused);
    if (poison.length) {
      log.error({ ids: poison.map((p) => p[0]) }, 'unreadable change events moved to the dead-letter stream');
      await this.deadLetter(poison);
    }
    if (badInPacks.length) {
      log.error({ packs: badInPacks.map((b) => ({ id: b.id, indexes: b.items.map((i) => i.index) })) }, 'unreadable change events of packs moved to the dead-letter stream; the rest of each pack applies');
      await this.deadLetterFromPacks(badInPacks);
    }
    if (parkedBefore.length) await this.toOrigins(parkedBefore, (redis, ids) => recordParked(redis, this.d.keys, this.d.region, ids, this.d.tracker.ackTtlSeconds), 'parked before');
    if (unfit.length) await this.park(unfit);
    if (parsed.length === 0) return;
    // Our own changes were committed here before they were published: they only need acking.
    const own = parsed.filter((p) => p.event.origin === this.d.region);
    const remote = parsed.filter((p) => p.event.origin !== this.d.region);
    if (remote.length === 0) return this.acknowledge(own, new Map());
    // Superseded outcomes of this batch's changes (applied when absent), for their acks.
    const outcomes = new Map<string, AckOutcome>();
    const applied: Parsed[] = [];
    const failed: { p: Parsed; err: Error }[] = [];
    // Packs can bring more events than a transaction should lock rows for: at most batchSize each. A chunk
    // that fails is retried event by event; the chunks committed before it stay applied.
    const limit = this.d.batchSize ?? BATCH_SIZE;
    for (let i = 0; i < remote.length; i += limit) {
      const chunk = remote.slice(i, i + limit);
      const since = this.commits;
      try {
        await this.apply(chunk, outcomes);
        applied.push(...chunk);
      } catch (err) {
        // A database outage says nothing about the events: leave them pending (XAUTOCLAIM brings them back)
        // and count nothing against them. What committed before it is acked now. A canceled statement (its
        // statement_timeout) or a lock wait given up (its lock_timeout) may be one event's that always outlasts
        // it: its events are tried one by one.
        const canceled = timeoutOf(err) !== null;
        if ((isDatabaseTrouble(err) && !canceled) || !(await this.databaseUp())) {
          await this.settleBeforeOutage(own, applied, outcomes);
          throw err;
        }
        // One bad event must not block the rest: retry one by one.
        log.warn({ err: (err as Error).message, events: chunk.length }, 'batch apply failed; retrying its events one by one');
        // Canceled (or timed out on a lock) in a row with nothing committed in between: the database is
        // overloaded (or a lock is held on more than one event's rows), not the events slow.
        let canceledInRow = 0;
        for (const p of chunk) {
          try {
            // A chunk of one event was that event's apply alone already.
            if (canceled && chunk.length === 1) throw err;
            await this.apply([p], outcomes);
            applied.push(p);
            canceledInRow = 0;
          } catch (e) {
            const timeout = timeoutOf(e);
            if (timeout && canceledInRow === 0) {
              canceledInRow += 1;
              // Counted only when other applies committed since its previous cancellation; else pending, uncounted.
              if (this.canceledOwn(p, since, timeout)) failed.push({ p, err: timedOut(e as Error, timeout) });
              continue;
            }
            // The database's trouble (it refused the connection: too many; it ended the session) is not the
            // event's: the rest stays pending, nothing counted (a review parked good changes on 53300).
            if (isDatabaseTrouble(e)) {
              await this.settleBeforeOutage(own, applied, outcomes);
              throw e;
            }
            canceledInRow = 0;
            // A deadlock or serialization failure is a collision, not the event's fault: it stays pending (so
            // does a lock timeout right after another one, see canceledInRow).
            if (!isTransient(e)) failed.push({ p, err: e as Error });
          }
        }
        if (failed.length && !(await this.databaseUp())) {
          await this.settleBeforeOutage(own, applied, outcomes);
          throw err;
        }
      }
    }
    for (const f of failed) await this.failedAlone(f.p, f.err);
    const uncleared = this.unclearedIds.splice(0);
    await this.failures.cleared([...uncleared, ...applied.map((p) => p.event.changeId)]);
    await this.acknowledge([...own, ...applied], outcomes);
  }

  /**
   * The database went away in the middle of a batch: what committed before is acked now (their failure
   * rows, if any, are cleared with the next batch); the rest stays pending.
   */
  private async settleBeforeOutage(own: Parsed[], applied: Parsed[], outcomes: ReadonlyMap<string, AckOutcome>): Promise<void> {
    if (applied.length === 0) return;
    this.unclearedIds.push(...applied.map((p) => p.event.changeId));
    await this.acknowledge([...own, ...applied], outcomes).catch(() => undefined);
  }

  /** Why this region cannot apply an event as it is (then it is parked at once), or null. */
  private unfit(event: ChangeEvent): { reason: ParkReason; error: string } | null {
    const unknown = [...new Set(event.ops.map((op) => op.table).filter((t) => !this.d.store.has(t)))];
    // A table this version does not know (a rolling upgrade): parked until this region is upgraded.
    if (unknown.length) return { reason: 'unknown-table', error: `table(s) not replicated by this version: ${unknown.join(', ')}` };
    // Columns of a newer schema: held until this region is upgraded, never applied partially.
    const newer = this.schemaAhead(event);
    if (newer) {
      const cols = Object.entries(newer).map(([t, c]) => `${t}(${c.join(', ')})`).join(', ');
      return { reason: 'schema-ahead', error: `event of schema ${event.schema ?? '(unknown)'} carries column(s) this region's schema ${this.d.store.schema || '(none)'} lacks: ${cols}` };
    }
    // A version too far ahead of this region's clock (its origin's clock runs ahead): neither applied nor
    // observed, or it would drag this clock along and win every conflict. Parked until the clocks agree.
    const { clock } = this.d;
    const ahead = event.ops.find((op) => !clock.admits(op.version));
    if (ahead) {
      return { reason: 'clock-skew', error: `version ${ahead.version} is ${clock.aheadBy(ahead.version)} ms ahead of this region's clock (maxClockSkewMs ${clock.maxSkewMs})` };
    }
    return null;
  }

  /**
   * Per table, the columns the event's rows carry that this region's tables lack, when they are a newer
   * schema's; null when there are none. Columns of an origin whose schema is older than ours are columns
   * this region dropped (contract step): ignored, and the rest applies. Without a schema (an event of an
   * older version) or with an equal one, extra columns are held too: never silently discarded.
   */
  private schemaAhead(event: ChangeEvent): Record<string, string[]> | null {
    const { store } = this.d;
    if (event.schema !== undefined && event.schema < store.schema) return null;
    let out: Record<string, string[]> | null = null;
    for (const op of event.ops) {
      const extra = store.extraColumns(op.table, op.row);
      if (extra.length === 0) continue;
      out ??= {};
      out[op.table] = [...new Set([...(out[op.table] ?? []), ...extra])].sort();
    }
    return out;
  }

  /**
   * Whether the database answers on the applier's own pool: the one its batches failed on (the main pool
   * can be up when this one cannot open a connection, e.g. at the connection limit, as a review found).
   */
  private databaseUp(): Promise<boolean> {
    return withTimeout(this.d.pool.query('SELECT 1'), 5000).then(() => true, () => false);
  }

  /**
   * The periodic retry of parked changes whose time has come (clock-skew every SKEW_RETRY_MS, apply-failed
   * every FAILED_RETRY_MS), beside the reads, not in their way: a clock ahead for minutes parks all its region
   * sent meanwhile, and applying those one by one held the inbox back for as long (a review measured 6 s
   * for 3,000). Null when none is due.
   */
  private retryDue(): Promise<void> | null {
    const every: [ParkReason, number][] = [['clock-skew', this.d.skewRetryEveryMs ?? SKEW_RETRY_MS], ['apply-failed', this.d.failedRetryEveryMs ?? FAILED_RETRY_MS]];
    const since = (reason: ParkReason) => Date.now() - (this.lastRetry.get(reason) ?? 0);
    // Of those due, the one waiting longest: neither starves the other when a run outlasts the other's period.
    const due = every.filter(([reason, ms]) => since(reason) > ms).sort(([a], [b]) => since(b) - since(a))[0];
    if (!due) return null;
    const [reason] = due;
    this.lastRetry.set(reason, Date.now());
    const { log } = this.d;
    return this.retryParked({ reason })
      .then(
        (retried) => void (retried.applied && log.info({ ...retried, reason }, 'applied change events parked earlier: what stopped them has gone')),
        (err: Error) => log.warn({ err: err.message, reason }, 'retrying parked changes failed; trying again later'),
      )
      .finally(() => (this.periodicRetry = null));
  }

  /**
   * Re-applies parked events (at start, and on POST /admin/replication/parked/retry; those of one reason
   * periodically, see retryDue): those this version can now apply leave the parked list and are
   * acked as applied; the others stay, with their latest error.
   */
  async retryParked(opts: { reason?: ParkReason } = {}): Promise<{ applied: number; parked: number }> {
    // After an upgrade (a migration by this or another process): events held for a newer schema may fit now.
    if (!opts.reason) await this.d.store.reload();
    let after: { parkedAt: Date; changeId: string } | null = null;
    let applied = 0;
    let parked = 0;
    while (!(opts.reason && this.stopped)) {
      const rows = await this.failures.parked(100, after, opts.reason);
      const last = rows[rows.length - 1];
      if (!last) break;
      after = { parkedAt: last.parked_at, changeId: last.change_id };
      const done: Parsed[] = [];
      const outcomes = new Map<string, AckOutcome>();
      // Those applied leave the parked list and are acked, also when the database failed under a later one.
      const settle = async () => {
        await this.failures.unpark(done.map((p) => p.event.changeId));
        applied += done.length;
        if (done.length) await this.acknowledgeRetried(done, outcomes);
      };
      let canceledInRow = 0;
      for (const r of rows) {
        // The periodic retry (a reason given) gives way to a stop; the rest waits for the next one.
        if (opts.reason && this.stopped) break;
        // Its entry was settled when it was parked: nothing to XACK now.
        const p: Parsed = { id: r.stream_id ?? '0-0', event: r.event, entry: null };
        const why = this.unfit(r.event);
        if (!why) {
          const since = this.commits;
          try {
            await this.apply([p], outcomes, r.change_id);
            done.push(p);
            canceledInRow = 0;
            continue;
          } catch (err) {
            // Discarded by an operator, or retried by another process, since the page was read: not ours now.
            if (err instanceof NoLongerParked) continue;
            // A parked change whose apply alone still outlasts the statement_timeout (or the lock_timeout)
            // stays parked, and the retry goes on with the others; a second in a row is the database's overload.
            // Only a failure that is the change's own (canceledOwn) makes it apply-failed with that message;
            // else it keeps its reason and message (a clock-skew one its every-minute retry).
            const timeout = timeoutOf(err);
            if (timeout && canceledInRow === 0 && (await this.databaseUp())) {
              canceledInRow += 1;
              if (this.canceledOwn(p, since, timeout, true)) await this.failures.stillParked(r.change_id, 'apply-failed', timedOut(err as Error, timeout).message);
              parked += 1;
              continue;
            }
            if (isDatabaseTrouble(err) || !(await this.databaseUp())) {
              await settle().catch(() => undefined);
              throw err;
            }
            // A deadlock or lock timeout with a batch applied meanwhile says nothing about the event: it
            // keeps its reason (and its place in the periodic retry of its reason).
            if (!isTransient(err)) await this.failures.stillParked(r.change_id, 'apply-failed', (err as Error).message);
          }
        } else if (!(opts.reason && why.reason === r.reason)) await this.failures.stillParked(r.change_id, why.reason, why.error);
        parked += 1;
      }
      await settle();
    }
    return { applied, parked };
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

  /**
   * For events held for a newer schema and now applied: the time (as a version prefix) this region's
   * schema moved past the one it had when it held them. A write stored here before then could not set
   * the held columns, so where such a write outranks the event, the event still sets those columns.
   */
  private async upgradedAt(held: NonNullable<ChangeEvent['held']>): Promise<string | null> {
    const rows = await this.d.db.$queryRawUnsafe<{ at: Date | null }[]>(
      `SELECT min(finished_at) AS at FROM "_prisma_migrations" WHERE migration_name > $1 AND finished_at IS NOT NULL AND rolled_back_at IS NULL`,
      held.schema,
    );
    const at = rows[0]?.at;
    return at ? String(new Date(at).getTime()).padStart(15, '0') : null;
  }

  private async applyOnce(batch: Parsed[], outcomes: Map<string, AckOutcome>, parked?: string): Promise<void> {
    const { store, clock } = this.d;
    const started = performance.now();
    const lost = new Map<string, AckOutcome>();
    const fills: { p: Parsed; before: string }[] = [];
    for (const p of batch) {
      const before = p.event.held ? await this.upgradedAt(p.event.held) : null;
      if (before) fills.push({ p, before });
    }
    await inPipeline(this.d.pool, async (tx) => {
      if (parked !== undefined) {
        const [claimed] = await tx.send([{ sql: 'DELETE FROM replication_failures WHERE change_id = $1::uuid AND parked_at IS NOT NULL', values: [parked] }]);
        if (!claimed?.rowCount) throw new NoLongerParked();
      }
      // The same per-key locks as local writes, in a fixed order: a local write of the same key waits
      // for this apply (or this apply for it) instead of racing it into a merge-rule refusal. Taken in the
      // round trip that reads the rows; the writes go with the commit unless held columns follow.
      // A create of several rows is judged a create for each of them (ApplyOptions.creates).
      const creating = batch.flatMap((b) => creatingOps(b.event.ops));
      const { outcomes } = await store.apply(tx, batch.flatMap((b) => b.event.ops), undefined, {
        lock: true,
        last: fills.length === 0 && parked === undefined,
        ...(creating.length ? { creates: new Set(creating) } : {}),
      });
      // A change holds when every row it wrote holds it; the first row that does not names the winner.
      let i = 0;
      for (const b of batch) {
        for (let k = 0; k < b.event.ops.length; k++) {
          const o = outcomes[i++];
          if (o && !o.applied && !lost.has(b.event.changeId)) {
            const w = o.winner;
            lost.set(b.event.changeId, { outcome: 'superseded', winner: { table: w.table, key: w.key, version: w.version, originRegion: w.originRegion } });
          }
        }
      }
      if (fills.length === 0 && parked === undefined) return;
      const sets = fills.flatMap(({ p, before }) => p.event.ops.map((op) => store.fillColumns(op, p.event.held?.columns[op.table] ?? [], before)));
      // A retried parked change owes its origin the ack: recorded with the apply, so a restart does not lose it.
      const owed = parked === undefined ? [] : [owedAckStatement(batch.map((b) => ({ changeId: b.event.changeId, origin: b.event.origin, outcome: lost.get(b.event.changeId) ?? null })))];
      await tx.run([...sets.filter((st) => st !== null), ...owed], true);
    });
    this.commits += 1;
    // Only a committed apply decides what the ack says.
    for (const b of batch) {
      outcomes.delete(b.event.changeId);
      if (this.canceledAt.size) this.canceledAt.delete(b.event.changeId);
    }
    for (const [id, o] of lost) outcomes.set(id, o);
    for (const b of batch) for (const op of b.event.ops) clock.observe(op.version);
    this.countApplied(batch.map((b) => b.event));
    this.appliedEvents += batch.length;
    this.onApplied?.(batch.map((b) => b.event.origin), (performance.now() - started) / 1000);
  }

  /**
   * Counts applied events per origin (replication_progress: the status's `applied` and lag), written every
   * PROGRESS_FLUSH_MS in one statement by one writer: off the path from apply to ack, and one statement
   * for many batches. A crash loses at most that long of counts (the count runs short; nothing else
   * depends on it).
   */
  private countApplied(events: readonly ChangeEvent[]): void {
    // When they were applied (committed just now), not when the count is written: the lag is the newest
    // change's commit at its origin to the last apply here (the same change's, unless an older one came later).
    for (const row of progressRows(events, new Date().toISOString())) {
      const p = this.progress.get(row.origin_region);
      if (!p) this.progress.set(row.origin_region, row);
      else {
        p.applied_count += row.applied_count;
        p.last_applied_at = row.last_applied_at;
        if (row.last_event_at >= p.last_event_at) Object.assign(p, { last_change_id: row.last_change_id, last_event_at: row.last_event_at });
      }
    }
    this.progressTimer ??= setTimeout(() => void this.flushProgress(), PROGRESS_FLUSH_MS);
  }

  private async flushProgress(): Promise<void> {
    if (this.progressTimer) clearTimeout(this.progressTimer);
    this.progressTimer = null;
    const rows = [...this.progress.values()].sort((a, b) => (a.origin_region < b.origin_region ? -1 : 1));
    this.progress = new Map();
    if (rows.length === 0) return;
    let counts: { origin_region: string; applied_count: bigint | string }[];
    try {
      counts = await this.d.db.$queryRawUnsafe(PROGRESS_SQL, JSON.stringify(rows));
    } catch (err) {
      this.d.log.warn({ err: (err as Error).message, origins: rows.length }, 'could not count applied events in replication_progress');
      return;
    }
    // After the count committed (see restore-check.ts); a mark not raised now is raised by a later count.
    const mark = counts.map((c) => ({ origin_region: c.origin_region, applied_count: Number(c.applied_count) }));
    await raiseAppliedMark(this.d.links.own, this.d.keys, this.d.region, mark).catch((err: Error) => {
      this.d.log.debug({ err: err.message }, 'could not record the applied counts in this region\'s Redis; the next count does');
    });
  }

  /**
   * Acks each change into its origin's Redis (where its tracker waits), then XACKs it here. If an
   * origin's Redis fails here, its events stay pending: they are re-read (XAUTOCLAIM), applied again as
   * no-ops, and acked then. Not an apply failure; the other origins' events are acked meanwhile.
   */
  private async acknowledge(batch: Parsed[], outcomes: ReadonlyMap<string, AckOutcome>): Promise<void> {
    const region = this.d.region;
    await this.toOrigins(batch, (redis, ids, origin) => recordAcks(redis, this.d.keys, { origin, region }, ids, { outcomes }, this.d.tracker.ackTtlSeconds), 'applied');
  }

  /**
   * Acks parked changes applied on a retry; those whose origin's Redis does not take the ack are kept to send
   * again (unsentAcks). Those it takes are no longer owed (their replication_retried_acks rows go; one that
   * stays, the database down, is sent again at the next start: a second "applied" ack is harmless).
   */
  private async acknowledgeRetried(batch: Ackable[], outcomes: ReadonlyMap<string, AckOutcome>): Promise<void> {
    const region = this.d.region;
    for (const p of batch) this.unsentAcks.set(p.event.changeId, { p, outcome: outcomes.get(p.event.changeId) });
    const send = async (redis: Redis, ids: string[], origin: string) => {
      await recordAcks(redis, this.d.keys, { origin, region }, ids, { outcomes }, this.d.tracker.ackTtlSeconds);
      // For the origin's relay: its delivery of the change, confirmed on the parked ack, takes this one.
      await recordUnparked(redis, this.d.keys, origin, region, ids, this.d.tracker.ackTtlSeconds);
      for (const id of ids) this.unsentAcks.delete(id);
      await ackPaid(this.d.db, ids).catch((err: Error) =>
        this.d.log.warn({ err: err.message, origin, count: ids.length }, 'could not forget the acks of retried parked changes their origin took; they are sent again at the next start'));
    };
    await this.toOrigins(batch, send, 'applied (parked before)', `the ack is sent again every ${RESEND_ACKS_MS / 1000} s until it answers`);
  }

  /**
   * Takes the owed acks of retried parked changes recorded in replication_retried_acks (older than
   * `olderThanMs`: not those another live process of this region is sending now) into unsentAcks, for
   * resendDue. A failed read is tried again on the next claim round.
   */
  private async loadOwedAcks(olderThanMs = 0): Promise<void> {
    let owed;
    try {
      owed = await owedAcks(this.d.db, 10_000, olderThanMs);
    } catch (err) {
      this.d.log.warn({ err: (err as Error).message }, 'could not read the acks owed for retried parked changes; trying again later');
      return;
    }
    let taken = 0;
    for (const a of owed) {
      if (this.unsentAcks.has(a.changeId)) continue;
      this.unsentAcks.set(a.changeId, { p: { event: { changeId: a.changeId, origin: a.origin }, entry: null }, outcome: a.outcome ?? undefined });
      taken += 1;
    }
    if (taken === 0) return;
    this.lastResend = 0;
    this.d.log.info({ count: taken }, 'acks of parked changes applied on a retry are owed to their origins; sending them');
  }

  /** Sends the acks kept in unsentAcks again, when RESEND_ACKS_MS passed since the last time (beside the reads). */
  private resendDue(): void {
    if (this.unsentAcks.size === 0 || this.resending || Date.now() - this.lastResend < RESEND_ACKS_MS) return;
    this.lastResend = Date.now();
    // An origin removed from the deployment meanwhile (recorded as departed, not registered again) takes no
    // ack any more: its Redis may be gone for good. A removed region still in the config stays among regions().
    const membership = this.d.membership;
    const removed = new Set(membership ? membership.departed.filter((r) => !membership.members().some((m) => m.region === r && m.registered)) : []);
    const dropped: string[] = [];
    for (const [id, { p }] of this.unsentAcks) {
      if (!removed.has(p.event.origin)) continue;
      this.unsentAcks.delete(id);
      dropped.push(id);
      this.d.log.info({ origin: p.event.origin, change_id: id }, 'the ack of a retried parked change is dropped: its origin was removed from the deployment');
    }
    if (dropped.length) void ackPaid(this.d.db, dropped).catch(() => undefined);
    const items = [...this.unsentAcks.values()];
    if (items.length === 0) return;
    const outcomes = new Map(items.flatMap((i): [string, AckOutcome][] => (i.outcome ? [[i.p.event.changeId, i.outcome]] : [])));
    this.resending = this.acknowledgeRetried(items.map((i) => i.p), outcomes)
      .catch((err: Error) => this.d.log.warn({ err: err.message }, 'sending the acks of retried parked changes again failed; trying again later'))
      .finally(() => (this.resending = null));
  }

  /**
   * Runs `send` against each origin's Redis with its changes' ids, then XACKs the entries of the origins it
   * reached. An origin's Redis is a WAN round trip away: the next batch does not wait for the answer (the
   * origin has the ack half way through it), only for acks beyond MAX_ACKS_IN_FLIGHT batches.
   */
  private async toOrigins(
    batch: Ackable[],
    send: (redis: Redis, changeIds: string[], origin: string) => Promise<void>,
    what: string,
    then = 'the events stay pending and are acked on redelivery',
  ): Promise<void> {
    const { links, log } = this.d;
    const byOrigin = new Map<string, Ackable[]>();
    for (const b of batch) {
      const items = byOrigin.get(b.event.origin);
      if (items) items.push(b);
      else byOrigin.set(b.event.origin, [b]);
    }
    const sending = Promise.all([...byOrigin].map(async ([origin, items]) => {
      try {
        await send(links.to(origin), items.map((i) => i.event.changeId), origin);
        const settled = new Set<string>();
        for (const i of items) if (i.entry && --i.entry.open === 0) settled.add(i.entry.id);
        if (settled.size) await this.xack([...settled]);
      } catch (err) {
        log.warn({ err: (err as Error).message, origin, count: items.length }, `${what}, but could not ack to the origin's Redis; ${then}`);
      }
    })).then(() => undefined);
    this.acking.add(sending);
    void sending.finally(() => this.acking.delete(sending));
    while (this.acking.size > MAX_ACKS_IN_FLIGHT) await Promise.race(this.acking);
  }

  /**
   * Whether the database's cancellation of this change's apply alone (its statement_timeout), or its giving
   * up a lock wait of it (its lock_timeout), is the change's own: other apply transactions committed since its
   * previous such failure (since `since`, the start of its batch, for its first). A database that cancels
   * everything (overloaded), or a lock that holds up every apply (a table's), commits nothing meanwhile, so
   * nothing is counted against any change; one change whose apply always outlasts the timeout (or waits on a
   * row some session holds for good, e.g. idle in a transaction), while others apply, is counted at each
   * failure and parked after MAX_FAILURES (apply-failed, with the database's message), instead of staying
   * pending, retried for good and shown nowhere.
   */
  private canceledOwn(p: Parsed, since: number, timeout: Timeout, parked = false): boolean {
    const id = p.event.changeId;
    const before = this.canceledAt.get(id) ?? since;
    this.canceledAt.delete(id);
    this.canceledAt.set(id, this.commits);
    // The oldest goes first (insertion order): bounded, like deadLettered.
    if (this.canceledAt.size > 10_000) this.canceledAt.delete(this.canceledAt.keys().next().value as string);
    const own = this.commits > before;
    const what = timeout === 'lock_timeout' ? "gave up a lock wait of this change's apply (lock_timeout)" : "canceled this change's apply (statement_timeout)";
    this.d.log.warn({ changeId: id, counted: own }, own
      ? `the database ${what} while other changes applied; ${parked ? 'it stays parked as apply-failed' : 'counted as its failure'}`
      : `the database ${what}; ${parked ? 'it stays parked as it was' : 'left pending, not counted'}: nothing else committed meanwhile`);
    return own;
  }

  /**
   * An event that failed on its own while the database answers: the failure is counted durably and the
   * event stays pending (XAUTOCLAIM retries it); after MAX_FAILURES it is parked.
   */
  private async failedAlone(p: Parsed, err: Error): Promise<void> {
    const failures = await this.failures.record(p.event, p.id, err);
    this.d.log.error({ err: err.message, changeId: p.event.changeId, failures }, 'change event failed to apply');
    if (failures >= MAX_FAILURES) await this.park([{ p, reason: 'apply-failed', error: err.message }]);
  }

  /** Parks events: stored with their error, acked to their origin as parked, XACKed. */
  private async park(items: Unfit[]): Promise<void> {
    const { region, log } = this.d;
    const { store } = this.d;
    const held = (e: ChangeEvent): ChangeEvent => {
      const columns = e.held ? null : this.schemaAhead(e);
      return columns ? { ...e, held: { schema: store.schema, columns } } : e;
    };
    await this.failures.park(items.map((i) => ({ event: i.reason === 'schema-ahead' ? held(i.p.event) : i.p.event, streamId: i.p.id, reason: i.reason, error: i.error })));
    this.parkedEvents += items.length;
    // A version too far ahead is refused too (parked until the clocks agree): counted with the refusals.
    for (const i of items) if (i.reason === 'clock-skew') this.onRefused?.(i.p.event.origin, i.reason);
    // Those an upgrade of this region resolves are expected during a rolling upgrade: not errors (HeldLog).
    const upgrade = items.filter((i) => UPGRADE_REASONS.has(i.reason));
    const others = items.filter((i) => !UPGRADE_REASONS.has(i.reason));
    if (upgrade.length) this.heldLog.held(upgrade.map((i) => ({ event: i.p.event, reason: i.reason, error: i.error })));
    if (others.length) log.error({ changes: others.map((i) => ({ changeId: i.p.event.changeId, reason: i.reason, error: i.error })) }, 'change events parked: this region cannot apply them yet');
    await this.toOrigins(items.map((i) => i.p), (redis, ids) => recordParked(redis, this.d.keys, region, ids, this.d.tracker.ackTtlSeconds), 'parked');
  }

  /**
   * Entries whose signature does not hold (missing, unknown key, altered): counted, remembered for
   * /admin/replication, and dead-lettered with the reason (XACKed, so they do not pin the trim floor).
   * Not parked: parked events live in Postgres and are retried by POST /admin/replication/parked/retry,
   * which does not verify again; and whoever can write to Redis could fill this region's database.
   * The dead-letter stream is capped. Nothing is acked to the tracker: the claimed origin may be a lie.
   */
  private async refuse(items: { entry: StreamEntry; reason: RefusalReason; kid: string | null; body: string | null }[]): Promise<void> {
    const known = new Set<string>(this.d.membership?.regions() ?? this.d.regions);
    const at = new Date().toISOString();
    for (const { entry, reason, kid, body } of items) {
      const origin = claimedOrigin(body);
      this.refusedEvents += 1;
      this.refusedByReason[reason] = (this.refusedByReason[reason] ?? 0) + 1;
      this.recentRefused.push({ streamId: entry[0], origin, reason, kid: kid === null ? null : kid.slice(0, 64), at });
      if (this.recentRefused.length > RECENT_REFUSED) this.recentRefused.shift();
      this.onRefused?.(origin !== null && known.has(origin) ? origin : 'unknown', reason);
    }
    this.d.log.error(
      { refused: items.map((i) => ({ id: i.entry[0], reason: i.reason, kid: i.kid?.slice(0, 64) ?? null, origin: claimedOrigin(i.body) })) },
      'change events refused: their signature does not hold (see REPLICATION_KEYS); moved to the dead-letter stream',
    );
    for (const { entry, reason } of items) {
      await this.toDeadLetter(entry[0], ['refused', reason, ...entry[1]]);
      await this.xack([entry[0]]);
    }
  }

  /**
   * Unreadable events of packs whose other events apply: each copied alone (its pack's id and index), once
   * per pack in this process; the pack is not XACKed here. One that names its change and a member as its
   * origin (the pack's MAC holds: it is what that origin sent) is acked to it as parked, so that its
   * relay confirms it instead of taking it, once the pack is trimmed, for lost to the inbox cap.
   */
  private async deadLetterFromPacks(packs: { id: string; items: { index: number; raw: string }[] }[]): Promise<void> {
    const { links, keys, region, log } = this.d;
    const members = new Set<string>(this.d.membership?.regions() ?? this.d.regions);
    const byOrigin = new Map<string, string[]>();
    for (const { id, items } of packs) {
      for (const i of items) {
        await this.toDeadLetter(id, ['index', String(i.index), 'e', i.raw]);
        const named = namedChange(i.raw);
        if (named && members.has(named.origin)) byOrigin.set(named.origin, [...(byOrigin.get(named.origin) ?? []), named.changeId]);
      }
      this.deadLettered.add(id);
      if (this.deadLettered.size > 10_000) this.deadLettered.delete(this.deadLettered.values().next().value as string);
    }
    for (const [origin, ids] of byOrigin) {
      await recordParked(links.to(origin), keys, region, ids, this.d.tracker.ackTtlSeconds).catch((err: Error) =>
        log.warn({ err: err.message, origin, count: ids.length }, 'could not ack unreadable events to their origin as parked'));
    }
  }

  private async deadLetter(entries: StreamEntry[]): Promise<void> {
    for (const [id, fields] of entries) {
      await this.toDeadLetter(id, fields);
      await this.xack([id]);
    }
  }

  /** Copies an inbox entry (or a part of it) to the dead-letter stream, with this region and its entry id. */
  private async toDeadLetter(id: string, fields: string[]): Promise<void> {
    const { links, keys, region } = this.d;
    await links.own.xadd(keys.deadLetter, 'MAXLEN', '~', DEAD_LETTER_MAX_LENGTH, '*', 'region', region, 'id', id, ...fields);
  }

  /** XACKs entries of this region's inbox. */
  private async xack(ids: string[]): Promise<void> {
    await this.d.links.own.xack(this.d.keys.inbox(this.d.region), this.d.region, ...ids);
  }
}

/**
 * An event read from the inbox: its entry's id and the entry it came in (null for a parked event retried
 * from the database). An entry is XACKed once each of its events is settled (applied or parked, and acked
 * to its origin): a pack whose event failed stays pending, and is read again whole.
 */
type Parsed = { id: string; event: ChangeEvent; entry: EntryRef | null };
/** What toOrigins needs of an event: its change and origin, and its inbox entry (null: none to XACK). */
type Ackable = { event: Pick<ChangeEvent, 'changeId' | 'origin'>; entry: EntryRef | null };
/** An inbox entry being applied, with how many of its events are not settled yet. */
type EntryRef = { id: string; open: number };
type Unfit = { p: Parsed; reason: ParkReason; error: string };

const PROGRESS_SQL = `
INSERT INTO replication_progress (origin_region, applied_count, last_change_id, last_event_at, last_applied_at)
SELECT origin_region, applied_count, last_change_id, last_event_at, last_applied_at
  FROM jsonb_to_recordset($1::jsonb) AS x(origin_region text, applied_count bigint, last_change_id uuid, last_event_at timestamptz, last_applied_at timestamptz)
 ORDER BY origin_region
ON CONFLICT (origin_region) DO UPDATE SET
  applied_count = replication_progress.applied_count + EXCLUDED.applied_count,
  last_change_id = CASE WHEN EXCLUDED.last_event_at >= replication_progress.last_event_at
    THEN EXCLUDED.last_change_id ELSE replication_progress.last_change_id END,
  last_event_at = GREATEST(replication_progress.last_event_at, EXCLUDED.last_event_at),
  last_applied_at = GREATEST(replication_progress.last_applied_at, EXCLUDED.last_applied_at)
RETURNING origin_region, applied_count`;

interface ProgressRow {
  origin_region: string;
  applied_count: number;
  last_change_id: string;
  last_event_at: string;
  /** When this region last applied a change from there (the batch that brought last_event_at, as a rule). */
  last_applied_at: string;
}

/** How often applied events are counted in replication_progress. */
const PROGRESS_FLUSH_MS = 1000;

function progressRows(events: readonly ChangeEvent[], appliedAt: string): ProgressRow[] {
  const byOrigin = new Map<string, ProgressRow>();
  for (const e of events) {
    const p = byOrigin.get(e.origin);
    if (!p) byOrigin.set(e.origin, { origin_region: e.origin, applied_count: 1, last_change_id: e.changeId, last_event_at: e.createdAt, last_applied_at: appliedAt });
    else {
      p.applied_count += 1;
      if (e.createdAt >= p.last_event_at) Object.assign(p, { last_change_id: e.changeId, last_event_at: e.createdAt });
    }
  }
  return [...byOrigin.values()];
}

/** The origin an unauthenticated entry claims, for operators (at most 64 characters), or null. */
function claimedOrigin(body: string | null): string | null {
  if (body === null || body.length > 4_000_000) return null;
  try {
    const parsed = JSON.parse(body) as { origin?: unknown } | { origin?: unknown }[] | null;
    // A pack claims the origin of its first event (a pack holds one origin's events).
    const o = (Array.isArray(parsed) ? (parsed[0] as { origin?: unknown } | undefined) : parsed)?.origin;
    return typeof o === 'string' ? o.slice(0, 64) : null;
  } catch {
    return null;
  }
}

/** The change id and origin an unreadable event still names, if it does. */
function namedChange(raw: string): { changeId: string; origin: string } | null {
  try {
    const e = JSON.parse(raw) as { changeId?: unknown; origin?: unknown } | null;
    return e && typeof e.changeId === 'string' && isUuid(e.changeId) && typeof e.origin === 'string' ? { changeId: e.changeId, origin: e.origin } : null;
  } catch {
    return null;
  }
}

export function parseEvent(raw: string | null): ChangeEvent | null {
  if (!raw) return null;
  try {
    const e: unknown = JSON.parse(raw);
    return validEvent(e) ? e : null;
  } catch {
    return null;
  }
}

/** A pack's readable events, and its unreadable ones (their index and JSON); none when it is not a JSON array. */
export function readPack(raw: string): { events: ChangeEvent[]; unreadable: { index: number; raw: string }[] } {
  let list: unknown;
  try {
    list = JSON.parse(raw);
  } catch {
    return { events: [], unreadable: [] };
  }
  const events: ChangeEvent[] = [];
  const unreadable: { index: number; raw: string }[] = [];
  if (!Array.isArray(list)) return { events, unreadable };
  list.forEach((e: unknown, index) => {
    if (validEvent(e)) events.push(e);
    else unreadable.push({ index, raw: JSON.stringify(e) ?? 'null' });
  });
  return { events, unreadable };
}

function validEvent(v: unknown): v is ChangeEvent {
  const e = v as ChangeEvent | null;
  return (
    typeof e === 'object' && e !== null &&
    typeof e.changeId === 'string' && typeof e.origin === 'string' && typeof e.createdAt === 'string' && !Number.isNaN(Date.parse(e.createdAt)) && Array.isArray(e.ops) &&
    e.ops.every((op) => typeof op.table === 'string' && isVersion(op.version) && typeof op.row === 'object' && op.row !== null)
  );
}

/** A parked change's retry found its parked row gone (see Applier.apply). */
class NoLongerParked extends Error {}

/**
 * Which of the database's own bounds ended the statement: its statement_timeout (57014, also an
 * administrator's pg_cancel_backend) or its lock_timeout (55P03: a lock wait given up); null for any other error.
 */
type Timeout = 'statement_timeout' | 'lock_timeout';
function timeoutOf(err: unknown): Timeout | null {
  if (databaseRefusal(err) === 'canceled') return 'statement_timeout';
  return pgCode(err) === '55P03' ? 'lock_timeout' : null;
}

/** The database's message, with what it means for the change (recorded as its failure, shown when parked). */
function timedOut(err: Error, timeout: Timeout): Error {
  const what = timeout === 'lock_timeout' ? "waited for a lock past the database's lock_timeout" : "ran past the database's statement_timeout";
  return new Error(`${err.message} (this change's apply alone ${what} while other changes applied)`);
}
