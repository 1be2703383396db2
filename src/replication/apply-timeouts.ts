/**
 * Whose trouble a statement the database canceled (its statement_timeout) or a lock wait it gave up (its
 * lock_timeout) is: the database's (overloaded, or a lock held on every apply), or the change's own, when
 * its apply alone failed so while other applies committed (see canceledOwn).
 */
import { databaseRefusal, pgCode } from '../db/pg-errors';
import type { Logger } from '../logger';
import type { Parsed } from './inbox-events';

/**
 * Which of the database's own bounds ended the statement: its statement_timeout (57014, also an
 * administrator's pg_cancel_backend) or its lock_timeout (55P03: a lock wait given up); null for any other error.
 */
export type Timeout = 'statement_timeout' | 'lock_timeout';
export function timeoutOf(err: unknown): Timeout | null {
  if (databaseRefusal(err) === 'canceled') return 'statement_timeout';
  return pgCode(err) === '55P03' ? 'lock_timeout' : null;
}

/** The database's message, with what it means for the change (recorded as its failure, shown when parked). */
export function timedOut(err: Error, timeout: Timeout): Error {
  const what = timeout === 'lock_timeout' ? "waited for a lock past the database's lock_timeout" : "ran past the database's statement_timeout";
  return new Error(`${err.message} (this change's apply alone ${what} while other changes applied)`);
}

export class ApplyTimeouts {
  /** Apply transactions this process committed (see canceledOwn). */
  private commitCount = 0;
  /** Per change whose apply alone the database canceled or timed out on a lock: `commits` then (see canceledOwn). */
  private readonly canceledAt = new Map<string, number>();

  constructor(private readonly log: Logger) {}

  /** Apply transactions this process committed so far. */
  get commits(): number {
    return this.commitCount;
  }

  /** An apply transaction of these changes committed: a cancellation of theirs before it is forgotten. */
  committed(batch: readonly Pick<Parsed, 'event'>[]): void {
    this.commitCount += 1;
    if (this.canceledAt.size) for (const b of batch) this.canceledAt.delete(b.event.changeId);
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
  canceledOwn(p: Parsed, since: number, timeout: Timeout, parked = false): boolean {
    const id = p.event.changeId;
    const before = this.canceledAt.get(id) ?? since;
    this.canceledAt.delete(id);
    this.canceledAt.set(id, this.commitCount);
    // The oldest goes first (insertion order): bounded, like the dead-lettered packs (dead-letters.ts).
    if (this.canceledAt.size > 10_000) this.canceledAt.delete(this.canceledAt.keys().next().value as string);
    const own = this.commitCount > before;
    const what = timeout === 'lock_timeout' ? "gave up a lock wait of this change's apply (lock_timeout)" : "canceled this change's apply (statement_timeout)";
    this.log.warn({ changeId: id, counted: own }, own
      ? `the database ${what} while other changes applied; ${parked ? 'it stays parked as apply-failed' : 'counted as its failure'}`
      : `the database ${what}; ${parked ? 'it stays parked as it was' : 'left pending, not counted'}: nothing else committed meanwhile`);
    return own;
  }
}
