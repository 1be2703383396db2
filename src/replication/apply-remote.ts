/**
 * The apply of other regions' events of one batch (Applier.applyBatch): in transactions of at most batchSize
 * events, event by event where one fails, then acked with the batch's own events. What failed alone while the
 * database answers is counted, and parked after MAX_FAILURES; a database outage counts nothing against any
 * event: what committed before it is acked, the rest stays pending (XAUTOCLAIM brings it back).
 */
import { isDatabaseTrouble, isTransient } from '../db/pg-errors';
import type { Logger } from '../logger';
import { timedOut, timeoutOf, type ApplyTimeouts } from './apply-timeouts';
import type { Unfit } from './event-fit';
import type { Parsed } from './inbox-events';
import type { OriginAcks } from './origin-acks';
import { MAX_FAILURES, type FailureLog } from './parked';
import type { AckOutcome } from './ack-records';

export interface RemoteApplyDeps {
  log: Logger;
  /** Events per apply transaction at most. */
  batchSize: number;
}

/** What the apply of other regions' events uses of its applier. */
export interface RemoteApplyHost {
  failures: FailureLog;
  timeouts: ApplyTimeouts;
  acks: OriginAcks;
  /** Applies a batch in one transaction (Applier.apply). */
  apply(batch: Parsed[], outcomes: Map<string, AckOutcome>): Promise<void>;
  /** Whether the database answers on the applier's own pool. */
  databaseUp(): Promise<boolean>;
  /** Parks events (SetAside.park). */
  park(items: Unfit[]): Promise<void>;
}

/** One batch under way: its own events (acked only), and what became of the others so far. */
type Batch = {
  own: Parsed[];
  /** Superseded outcomes of this batch's changes (applied when absent), for their acks. */
  outcomes: Map<string, AckOutcome>;
  applied: Parsed[];
  failed: { p: Parsed; err: Error }[];
};

export class RemoteApply {
  /** Applied events whose failure rows could not be cleared (the database went away): cleared with the next batch. */
  private unclearedIds: string[] = [];

  constructor(
    private readonly d: RemoteApplyDeps,
    private readonly host: RemoteApplyHost,
  ) {}

  /**
   * Applies other regions' events in transactions of at most batchSize events, event by event where one
   * fails, then acks them with our own (`own`); what failed alone is counted (failedAlone).
   */
  async applyRemote(own: Parsed[], remote: Parsed[]): Promise<void> {
    const b: Batch = { own, outcomes: new Map<string, AckOutcome>(), applied: [], failed: [] };
    // Packs can bring more events than a transaction should lock rows for: at most batchSize each. A chunk
    // that fails is retried event by event; the chunks committed before it stay applied.
    const limit = this.d.batchSize;
    for (let i = 0; i < remote.length; i += limit) await this.applyChunk(b, remote.slice(i, i + limit));
    for (const f of b.failed) await this.failedAlone(f.p, f.err);
    const uncleared = this.unclearedIds.splice(0);
    await this.host.failures.cleared([...uncleared, ...b.applied.map((p) => p.event.changeId)]);
    await this.host.acks.acknowledge([...own, ...b.applied], b.outcomes);
  }

  /** One transaction of at most batchSize events; when it fails, its events one by one (oneByOne). */
  private async applyChunk(b: Batch, chunk: Parsed[]): Promise<void> {
    const since = this.host.timeouts.commits;
    try {
      await this.host.apply(chunk, b.outcomes);
      b.applied.push(...chunk);
    } catch (err) {
      // A database outage says nothing about the events: leave them pending (XAUTOCLAIM brings them back)
      // and count nothing against them. What committed before it is acked now. A canceled statement (its
      // statement_timeout) or a lock wait given up (its lock_timeout) may be one event's that always outlasts
      // it: its events are tried one by one.
      const canceled = timeoutOf(err) !== null;
      if ((isDatabaseTrouble(err) && !canceled) || !(await this.host.databaseUp())) {
        await this.settleBeforeOutage(b);
        throw err;
      }
      // One bad event must not block the rest: retry one by one.
      this.d.log.warn({ err: (err as Error).message, events: chunk.length }, 'batch apply failed; retrying its events one by one');
      await this.oneByOne(b, chunk, { err, canceled, since });
      if (b.failed.length && !(await this.host.databaseUp())) {
        await this.settleBeforeOutage(b);
        throw err;
      }
    }
  }

  /**
   * The events of a chunk whose transaction failed (`err`; `canceled`: by a timeout of the database), each in
   * a transaction of its own: those that fail for their own sake go into `b.failed`; a database's trouble
   * leaves the rest pending and is rethrown. `since`: the apply commits before the chunk's transaction (see
   * ApplyTimeouts.canceledOwn).
   */
  private async oneByOne(b: Batch, chunk: Parsed[], chunkFailure: { err: unknown; canceled: boolean; since: number }): Promise<void> {
    const { err, canceled, since } = chunkFailure;
    // Canceled (or timed out on a lock) in a row with nothing committed in between: the database is
    // overloaded (or a lock is held on more than one event's rows), not the events slow.
    let canceledInRow = 0;
    for (const p of chunk) {
      try {
        // A chunk of one event was that event's apply alone already.
        if (canceled && chunk.length === 1) throw err;
        await this.host.apply([p], b.outcomes);
        b.applied.push(p);
        canceledInRow = 0;
      } catch (e) {
        const timeout = timeoutOf(e);
        if (timeout && canceledInRow === 0) {
          canceledInRow += 1;
          // Counted only when other applies committed since its previous cancellation; else pending, uncounted.
          if (this.host.timeouts.canceledOwn(p, since, timeout)) b.failed.push({ p, err: timedOut(e as Error, timeout) });
          continue;
        }
        // The database's trouble (it refused the connection: too many; it ended the session) is not the
        // event's: the rest stays pending, nothing counted (a review parked good changes on 53300).
        if (isDatabaseTrouble(e)) {
          await this.settleBeforeOutage(b);
          throw e;
        }
        canceledInRow = 0;
        // A deadlock or serialization failure is a collision, not the event's fault: it stays pending (so
        // does a lock timeout right after another one, see canceledInRow).
        if (!isTransient(e)) b.failed.push({ p, err: e as Error });
      }
    }
  }

  /**
   * The database went away in the middle of a batch: what committed before is acked now (their failure
   * rows, if any, are cleared with the next batch); the rest stays pending.
   */
  private async settleBeforeOutage(b: Batch): Promise<void> {
    if (b.applied.length === 0) return;
    this.unclearedIds.push(...b.applied.map((p) => p.event.changeId));
    await this.host.acks.acknowledge([...b.own, ...b.applied], b.outcomes).catch(() => undefined);
  }

  /**
   * An event that failed on its own while the database answers: the failure is counted durably and the
   * event stays pending (XAUTOCLAIM retries it); after MAX_FAILURES it is parked.
   */
  private async failedAlone(p: Parsed, err: Error): Promise<void> {
    const failures = await this.host.failures.record(p.event, p.id, err);
    this.d.log.error({ err: err.message, changeId: p.event.changeId, failures }, 'change event failed to apply');
    if (failures >= MAX_FAILURES) await this.host.park([{ p, reason: 'apply-failed', error: err.message }]);
  }
}
