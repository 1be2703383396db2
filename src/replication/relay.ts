/**
 * Background duties of a region's outbox, so that nothing acknowledged is ever lost. Each change goes
 * from its origin straight into every other member's inbox, in that member's own Redis (delivery.ts):
 * - publish: rows the fast path did not deliver everywhere (a destination's Redis down, a crash between
 *   commit and XADD) are delivered, in order, to the destinations that lack them;
 * - confirm: per destination, a delivery is confirmed once that region acked the change (its ack is in
 *   this region's Redis); a row is confirmed once every member did. A member with no delivery yet (it
 *   joined since) gets one; a delivery long unconfirmed and no longer in its destination's inbox (that
 *   Redis restarted without its data) is delivered again;
 * - trim: each destination's inbox is trimmed below what its region's group has delivered and acked.
 * One destination that is down or cut off never holds back the others.
 */
import { Deliverer } from './delivery';
import type { Membership } from './membership';
import { DeliveryConfirmer, type DeliveryConfirmerDeps } from './relay-confirm';
import { OutboxPublisher, type OutboxPublisherDeps } from './relay-publish';
import { InboxTrims, type InboxTrimsDeps } from './relay-trim';
import { DEFAULT_STREAM_MAX_LENGTH } from './stream';
import type { EventAuth } from './event-auth';
import { Loop } from './loop';
import { recordOutboxMark } from './restore-check';

/** Its parts' deps (each narrowed to what that part uses), and its own. */
export interface RelayDeps extends OutboxPublisherDeps, DeliveryConfirmerDeps, InboxTrimsDeps {
  /** The deployment's members (read fresh before confirming); without it, `regions`. */
  membership?: Pick<Membership, 'refresh' | 'regions' | 'hasJoined'> & Partial<Pick<Membership, 'knownGenuine'>>;
  intervalMs?: number;
  /** Cap of the change stream (XADD MAXLEN ~). */
  streamMaxLength?: number;
  /** Events go out with the signature stored with them (see event-auth.ts). */
  auth: EventAuth;
  /** Shared with the fast path (Replicator.publish), so a destination's group is made sure of once. */
  deliverer?: Deliverer;
}

export class OutboxRelay {
  private readonly loop: Loop;
  private lastConfirm = 0;
  private readonly publisher: OutboxPublisher;
  private readonly confirmer: DeliveryConfirmer;
  private readonly trims: InboxTrims;
  published = 0;
  republished = 0;
  /** Changes trimmed by an inbox's cap before its region acked them (that region needs a re-seed). */
  trimmedUnconfirmed = 0;
  /** The outbox mark this process last saw in its Redis (restore-check.ts): Redis is written only when it rises. */
  private outboxMarked = 0;

  constructor(private readonly d: RelayDeps) {
    this.loop = new Loop(() => this.cycle(), d.intervalMs ?? 500);
    const deliverer = d.deliverer ?? new Deliverer(d.keys, d.auth, d.streamMaxLength ?? DEFAULT_STREAM_MAX_LENGTH);
    this.trims = new InboxTrims(d, () => this.destinations());
    this.confirmer = new DeliveryConfirmer(d, {
      deliverer,
      trims: this.trims,
      counts: this,
      destinations: () => this.destinations(),
      publish: (changeIds, destinations) => this.publisher.publishPage({ changeIds }, destinations, new Set()),
    });
    this.publisher = new OutboxPublisher(d, {
      deliverer,
      counts: this,
      destinations: (cached) => this.destinations(cached),
      checkStale: (all, destinations, down) => this.confirmer.checkStale(all, destinations, down),
    });
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  async cycle(): Promise<void> {
    const confirmDue = Date.now() - this.lastConfirm >= 2000;
    if (confirmDue) this.lastConfirm = Date.now();
    const steps = [
      () => this.publishPending(1000), () => (confirmDue ? this.confirm() : undefined), () => (confirmDue ? this.unparked() : undefined), () => this.trim(),
      () => (confirmDue ? this.markOutbox() : undefined),
    ];
    for (const step of steps) {
      try {
        await step();
      } catch (err) {
        this.d.log.debug({ err: (err as Error).message }, 'outbox relay step failed; will retry');
      }
    }
  }

  /**
   * The other members: a fresh read (the last known ones while this region's Redis is down), or with
   * `cached`, the process's cached members (re-read every second).
   */
  private async destinations(cached = false): Promise<string[]> {
    const m = this.d.membership;
    const regions = !m ? this.d.regions : cached ? m.regions() : (await m.refresh()).map((x) => x.region);
    return regions.filter((r) => r !== this.d.region);
  }

  /**
   * Records how far this region's own changes got (the highest outbox id committed), in its database and then its
   * Redis, so that a database later set back to an older state is found out at start (restore-check.ts).
   */
  async markOutbox(): Promise<void> {
    this.outboxMarked = await recordOutboxMark(this.d.db, this.d.links.own, this.d.keys, this.d.region, this.outboxMarked);
  }

  /** See OutboxPublisher.publishPending. */
  publishPending(minAgeMs: number): Promise<number> {
    return this.publisher.publishPending(minAgeMs);
  }

  /** See DeliveryConfirmer.confirm. */
  confirm(): Promise<void> {
    return this.confirmer.confirm();
  }

  /** See DeliveryConfirmer.unparked. */
  unparked(): Promise<void> {
    return this.confirmer.unparked();
  }

  /** See InboxTrims.trim. */
  trim(force = false): Promise<number> {
    return this.trims.trim(force);
  }
}
