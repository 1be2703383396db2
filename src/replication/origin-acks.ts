/**
 * The acks of applied and parked changes into their origins' Redis, where each origin's tracker waits, and
 * the XACK of their inbox entries once settled. An origin's Redis is a WAN round trip away and may be down:
 * the acks of parked changes applied on a retry, which no redelivery brings back, are kept and sent again.
 */
import type { Db } from '../db/client';
import type { Logger } from '../logger';
import { redisProblem, type Redis, type ReplicationKeys } from '../redis';
import type { EntryRef, Parsed } from './inbox-events';
import type { RedisLinks } from './links';
import type { Membership } from './membership';
import { ackPaid, owedAcks } from './parked';
import type { ChangeEvent } from './tables';
import type { Tracker } from './tracker';
import { recordAcks, recordUnparked, type AckOutcome } from './ack-records';

/** How often the acks of retried parked changes that did not reach their origin are sent again (unsentAcks). */
const RESEND_ACKS_MS = 2000;

/**
 * Owed acks recorded longer ago than this are another process's of this region when this one does not hold
 * them (it stopped before their origin's Redis took them): a claim round takes them over (loadOwedAcks).
 */
export const OWED_ACK_TAKEOVER_MS = 30_000;

/** Batches whose acks may be on their way at once before the applier waits for the oldest. */
const MAX_ACKS_IN_FLIGHT = 32;

/** What toOrigins needs of an event: its change and origin, and its inbox entry (null: none to XACK). */
export type Ackable = { event: Pick<ChangeEvent, 'changeId' | 'origin'>; entry: EntryRef | null };

export interface OriginAcksDeps {
  db: Db;
  links: RedisLinks;
  keys: ReplicationKeys;
  tracker: Tracker;
  region: string;
  membership?: Membership;
  log: Logger;
}

export class OriginAcks {
  /**
   * Parked changes applied on a retry whose ack did not reach their origin's Redis, sent again every
   * RESEND_ACKS_MS until it takes them (resendDue): such a change has no inbox entry left to read again, and
   * its origin confirmed it on the parked ack, so nothing delivers it again; its status showed this region as
   * parked for good. Each is also recorded in replication_retried_acks with its apply (parked.ts, OwedAck),
   * so that a restart meanwhile does not lose it: loaded at start, and on claim rounds (loadOwedAcks).
   */
  private readonly unsentAcks = new Map<string, { p: Ackable; outcome: AckOutcome | undefined; at: string }>();
  private lastResend = 0;
  private resending: Promise<void> | null = null;
  /** Acks on their way to origins' Redis (see toOrigins). */
  private readonly acking = new Set<Promise<void>>();

  /** `xack`: XACKs entries of this region's inbox. */
  constructor(
    private readonly d: OriginAcksDeps,
    private readonly xack: (ids: string[]) => Promise<unknown>,
  ) {}

  /** Settles once the acks on their way now are done or failed. */
  settled(): Promise<PromiseSettledResult<void>[]> {
    return Promise.allSettled([...this.acking]);
  }

  /** Waits for the acks on their way. */
  async drain(): Promise<void> {
    await Promise.all(this.acking);
  }

  /**
   * Acks each change into its origin's Redis (where its tracker waits), then XACKs it here. If an
   * origin's Redis fails here, its events stay pending: they are re-read (XAUTOCLAIM), applied again as
   * no-ops, and acked then. Not an apply failure; the other origins' events are acked meanwhile.
   */
  async acknowledge(batch: Parsed[], outcomes: ReadonlyMap<string, AckOutcome>): Promise<void> {
    const region = this.d.region;
    await this.toOrigins(batch, (redis, ids, origin) => recordAcks(redis, this.d.keys, this.d.tracker, { origin, region }, ids, { outcomes }), 'applied');
  }

  /**
   * Acks parked changes applied on a retry; those whose origin's Redis does not take the ack are kept to send
   * again (unsentAcks). Those it takes are no longer owed (their replication_retried_acks rows go; one that
   * stays, the database down, is sent again at the next start: a second "applied" ack is harmless).
   */
  async acknowledgeRetried(batch: Ackable[], outcomes: ReadonlyMap<string, AckOutcome>, appliedAt: ReadonlyMap<string, string> = new Map()): Promise<void> {
    const region = this.d.region;
    const now = new Date().toISOString();
    // Each ack carries when its change was applied (the origin's status shows it), not when it was last sent.
    const at = new Map<string, string>();
    for (const p of batch) {
      const id = p.event.changeId;
      const when = appliedAt.get(id) ?? now;
      this.unsentAcks.set(id, { p, outcome: outcomes.get(id), at: when });
      at.set(id, when);
    }
    const send = async (redis: Redis, ids: string[], origin: string) => {
      await recordAcks(redis, this.d.keys, this.d.tracker, { origin, region }, ids, { outcomes, at });
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
  async loadOwedAcks(olderThanMs = 0): Promise<void> {
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
      this.unsentAcks.set(a.changeId, {
        p: { event: { changeId: a.changeId, origin: a.origin }, entry: null },
        outcome: a.outcome ?? undefined,
        at: a.appliedAt.toISOString(),
      });
      taken += 1;
    }
    if (taken === 0) return;
    this.lastResend = 0;
    this.d.log.info({ count: taken }, 'acks of parked changes applied on a retry are owed to their origins; sending them');
  }

  /** Sends the acks kept in unsentAcks again, when RESEND_ACKS_MS passed since the last time (beside the reads). */
  resendDue(): void {
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
    const appliedAt = new Map(items.map((i) => [i.p.event.changeId, i.at]));
    this.resending = this.acknowledgeRetried(items.map((i) => i.p), outcomes, appliedAt)
      .catch((err: Error) => this.d.log.warn({ err: err.message }, 'sending the acks of retried parked changes again failed; trying again later'))
      .finally(() => (this.resending = null));
  }

  /**
   * Runs `send` against each origin's Redis with its changes' ids, then XACKs the entries of the origins it
   * reached. An origin's Redis is a WAN round trip away: the next batch does not wait for the answer (the
   * origin has the ack half way through it), only for acks beyond MAX_ACKS_IN_FLIGHT batches.
   */
  async toOrigins(
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
        log.warn({ err: redisProblem(err as Error), origin, count: items.length }, `${what}, but could not ack to the origin's Redis; ${then}`);
      }
    })).then(() => undefined);
    this.acking.add(sending);
    void sending.finally(() => this.acking.delete(sending));
    while (this.acking.size > MAX_ACKS_IN_FLIGHT) await Promise.race(this.acking);
  }
}
