/**
 * The retries of parked changes (parked.ts): what stopped them may have gone (an upgrade, clocks that agree
 * again, a row in the way removed), and then they apply without an operator. At start, on the admin retry,
 * and periodically per reason (retryDue), beside the applier's reads.
 */
import { isDatabaseTrouble, isTransient } from '../db/pg-errors';
import type { Logger } from '../logger';
import { timedOut, timeoutOf, type ApplyTimeouts } from './apply-timeouts';
import { NoLongerParked } from './apply-transaction';
import { whyUnfit } from './event-fit';
import type { HybridClock } from './hlc';
import type { Parsed } from './inbox-events';
import type { OriginAcks } from './origin-acks';
import type { FailureLog, ParkReason } from './parked';
import type { RowStore } from './row-store';
import type { AckOutcome } from './ack-records';

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

export interface ParkedRetryDeps {
  store: RowStore;
  clock: HybridClock;
  log: Logger;
  /** How often changes parked for clock skew are tried again (default SKEW_RETRY_MS). */
  skewRetryEveryMs?: number;
  /** How often changes parked as apply-failed are tried again (default FAILED_RETRY_MS). */
  failedRetryEveryMs?: number;
}

/** What the retries use of their applier. */
export interface ParkedRetryHost {
  failures: FailureLog;
  timeouts: ApplyTimeouts;
  acks: OriginAcks;
  /** Applies a parked change's retry in one transaction (Applier.apply). */
  apply(batch: Parsed[], outcomes: Map<string, AckOutcome>, parked: string): Promise<void>;
  /** Whether the database answers on the applier's own pool. */
  databaseUp(): Promise<boolean>;
  /** Whether the applier is stopping. */
  stopped(): boolean;
}

export class ParkedRetry {
  /** When each periodic retry of parked changes last started (see retryDue). */
  private readonly lastRetry = new Map<ParkReason, number>([['clock-skew', Date.now()], ['apply-failed', Date.now()]]);
  /** The periodic retry of parked changes while it runs (one reason at a time, see retryDue). */
  private periodicRetry: Promise<void> | null = null;

  constructor(
    private readonly d: ParkedRetryDeps,
    private readonly host: ParkedRetryHost,
  ) {}

  /** Starts the periodic retry whose time has come, unless one runs (see retryDue). */
  startDue(): void {
    if (!this.periodicRetry) this.periodicRetry = this.retryDue();
  }

  /** Waits for the periodic retry under way, if any. */
  async drain(): Promise<void> {
    await this.periodicRetry;
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
    const tally: Tally = { applied: 0, parked: 0 };
    while (!(opts.reason && this.host.stopped())) {
      const rows = await this.host.failures.parked(100, after, opts.reason);
      const last = rows[rows.length - 1];
      if (!last) break;
      after = { parkedAt: last.parked_at, changeId: last.change_id };
      await this.retryPage(rows, opts.reason, tally);
    }
    return { applied: tally.applied, parked: tally.parked };
  }

  /** One page of parked rows, in order; `reason`: the periodic retry's (see retryParked). */
  private async retryPage(rows: ParkedRow[], reason: ParkReason | undefined, tally: Tally): Promise<void> {
    const page: Page = { done: [], outcomes: new Map<string, AckOutcome>(), canceledInRow: 0 };
    for (const r of rows) {
      // The periodic retry (a reason given) gives way to a stop; the rest waits for the next one.
      if (reason && this.host.stopped()) break;
      // Its entry was settled when it was parked: nothing to XACK now.
      const p: Parsed = { id: r.stream_id ?? '0-0', event: r.event, entry: null };
      const why = whyUnfit(this.d, r.event);
      if (!why) {
        if (!(await this.retryOne(p, r, page, tally))) continue;
      } else if (!(reason && why.reason === r.reason)) await this.host.failures.stillParked(r.change_id, why.reason, why.error);
      tally.parked += 1;
    }
    await this.settle(page, tally);
  }

  /**
   * Applies a parked change that fits now: whether it stays parked. A database's trouble settles the page
   * so far (settle) and is rethrown.
   */
  private async retryOne(p: Parsed, r: ParkedRow, page: Page, tally: Tally): Promise<boolean> {
    const since = this.host.timeouts.commits;
    try {
      await this.host.apply([p], page.outcomes, r.change_id);
      page.done.push(p);
      page.canceledInRow = 0;
      return false;
    } catch (err) {
      // Discarded by an operator, or retried by another process, since the page was read: not ours now.
      if (err instanceof NoLongerParked) return false;
      // A parked change whose apply alone still outlasts the statement_timeout (or the lock_timeout)
      // stays parked, and the retry goes on with the others; a second in a row is the database's overload.
      // Only a failure that is the change's own (canceledOwn) makes it apply-failed with that message;
      // else it keeps its reason and message (a clock-skew one its every-minute retry).
      const timeout = timeoutOf(err);
      if (timeout && page.canceledInRow === 0 && (await this.host.databaseUp())) {
        page.canceledInRow += 1;
        if (this.host.timeouts.canceledOwn(p, since, timeout, true)) await this.host.failures.stillParked(r.change_id, 'apply-failed', timedOut(err as Error, timeout).message);
        return true;
      }
      if (isDatabaseTrouble(err) || !(await this.host.databaseUp())) {
        await this.settle(page, tally).catch(() => undefined);
        throw err;
      }
      // A deadlock or lock timeout with a batch applied meanwhile says nothing about the event: it
      // keeps its reason (and its place in the periodic retry of its reason).
      if (!isTransient(err)) await this.host.failures.stillParked(r.change_id, 'apply-failed', (err as Error).message);
      return true;
    }
  }

  /** Those applied leave the parked list and are acked, also when the database failed under a later one. */
  private async settle(page: Page, tally: Tally): Promise<void> {
    await this.host.failures.unpark(page.done.map((p) => p.event.changeId));
    tally.applied += page.done.length;
    if (page.done.length) await this.host.acks.acknowledgeRetried(page.done, page.outcomes);
  }
}

/** What a retry applied and left parked so far. */
type Tally = { applied: number; parked: number };
/** A parked row as FailureLog.parked reads it. */
type ParkedRow = Awaited<ReturnType<FailureLog['parked']>>[number];
/** One page of parked rows under way: the changes applied, their superseded outcomes, cancellations in a row. */
type Page = { done: Parsed[]; outcomes: Map<string, AckOutcome>; canceledInRow: number };
