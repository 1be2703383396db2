/**
 * What of a read's entries this region does not apply now (sorted by inbox-sort.ts), set aside before the
 * rest goes to the database: refused and unreadable entries to the dead-letter stream, changes parked
 * before acked to their origins as parked again, and events it cannot apply yet (a newer schema, an unknown
 * table, a version too far ahead) parked. Apart from the applier, whose part is the loop and the apply
 * transactions: nothing set aside here reaches either.
 */
import type { Logger } from '../logger';
import type { ReplicationKeys } from '../redis';
import { recordParked } from './ack-records';
import type { DeadLetters } from './dead-letters';
import { schemaAhead, whyUnfit, type Unfit } from './event-fit';
import { HeldLog, UPGRADE_REASONS } from './held-log';
import type { HybridClock } from './hlc';
import type { Sorted } from './inbox-sort';
import type { OriginAcks } from './origin-acks';
import type { FailureLog } from './parked';
import type { RowStore } from './row-store';
import type { ChangeEvent } from './tables';
import type { Tracker } from './tracker';

export interface SetAsideDeps {
  keys: ReplicationKeys;
  store: RowStore;
  clock: HybridClock;
  tracker: Tracker;
  region: string;
  log: Logger;
  /** How often changes still held for this region's upgrade are summed up in the log (default HELD_SUMMARY_MS). */
  heldSummaryEveryMs?: number;
}

/** What setting entries aside uses of its applier. */
export interface SetAsideHost {
  failures: FailureLog;
  deadLetters: DeadLetters;
  acks: OriginAcks;
  /** Observer of each refused entry (Applier.onRefused). */
  onRefused(origin: string, reason: string): void;
}

export class SetAside {
  parkedEvents = 0;
  /** Changes held for this region's upgrade: warned of once per origin and tables, then summed up. */
  readonly heldLog: HeldLog;

  constructor(
    private readonly d: SetAsideDeps,
    private readonly host: SetAsideHost,
  ) {
    this.heldLog = new HeldLog(d.log, d.heldSummaryEveryMs);
  }

  /** Sets aside what of a sorted read does not apply now: `sorted.parsed` is left with what does. */
  async takeOut(sorted: Sorted): Promise<void> {
    const { log } = this.d;
    const { deadLetters, acks } = this.host;
    const { parsed, poison, unfit, refused, badInPacks, parkedBefore } = sorted;
    // A column this process does not know may be one its own database gained since it loaded the columns
    // (a migration by a newer process of this region): look again before holding the event.
    if (unfit.some((u) => u.reason === 'schema-ahead') && (await this.d.store.reloadIfStale())) {
      for (const u of unfit.splice(0)) {
        const why = whyUnfit(this.d, u.p.event);
        if (why) unfit.push({ p: u.p, ...why });
        else parsed.push(u.p);
      }
    }
    if (refused.length) await deadLetters.refuse(refused);
    if (poison.length) await deadLetters.entries(poison);
    if (badInPacks.length) {
      log.error({ packs: badInPacks.map((b) => ({ id: b.id, indexes: b.items.map((i) => i.index) })) }, 'unreadable change events of packs moved to the dead-letter stream; the rest of each pack applies');
      await deadLetters.fromPacks(badInPacks);
    }
    if (parkedBefore.length) await acks.toOrigins(parkedBefore, (redis, ids) => recordParked(redis, this.d.keys, this.d.tracker, this.d.region, ids), 'parked before');
    if (unfit.length) await this.park(unfit);
  }

  /**
   * Parks events: stored with their error, acked to their origin as parked, XACKed. Counted, observed and
   * logged are those parked now, once per change: not one an operator discarded here (delivered again, acked
   * as parked but not kept), nor a second copy of one read in the same batch, nor one another process of the
   * region (or this one before a restart) parked already, delivered again: that one counted it.
   */
  async park(items: Unfit[]): Promise<void> {
    const { region, log } = this.d;
    const { store } = this.d;
    const held = (e: ChangeEvent): ChangeEvent => {
      const columns = e.held ? null : schemaAhead(this.d.store, e);
      return columns ? { ...e, held: { schema: store.schema, columns } } : e;
    };
    const kept = await this.host.failures.park(items.map((i) => ({
      item: i, event: i.reason === 'schema-ahead' ? held(i.p.event) : i.p.event, streamId: i.p.id, reason: i.reason, error: i.error,
    })));
    const parked = kept.map((k) => k.item);
    this.parkedEvents += parked.length;
    // A version too far ahead is refused too (parked until the clocks agree): counted with the refusals.
    for (const i of parked) if (i.reason === 'clock-skew') this.host.onRefused(i.p.event.origin, i.reason);
    // Those an upgrade of this region resolves are expected during a rolling upgrade: not errors (HeldLog).
    const upgrade = parked.filter((i) => UPGRADE_REASONS.has(i.reason));
    const others = parked.filter((i) => !UPGRADE_REASONS.has(i.reason));
    if (upgrade.length) this.heldLog.held(upgrade.map((i) => ({ event: i.p.event, reason: i.reason, error: i.error })));
    if (others.length) log.error({ changes: others.map((i) => ({ changeId: i.p.event.changeId, reason: i.reason, error: i.error })) }, 'change events parked: this region cannot apply them yet');
    await this.host.acks.toOrigins(items.map((i) => i.p), (redis, ids) => recordParked(redis, this.d.keys, this.d.tracker, region, ids), 'parked');
  }
}
