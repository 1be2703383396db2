/**
 * Replication tracker: which regions have applied which change, and whether it held there.
 * Acks live in Redis as a hash per change (region -> "applied@<ISO time>" or
 * "superseded:<table>:<key>:<winning version>@<ISO time>"; a bare ISO time, from older versions, means
 * applied) with a TTL, plus the field "~org" naming the change's organization when the origin knows it.
 * Superseded: when the region applied the change, the row already held a state that outranks it (see
 * row-store.ts), so the change is not, and will never be, the row's state there. Every ack batch is announced
 * on its origin's pub/sub channel (where regions share a Redis, an ack wakes only the origin's processes,
 * not every region's). A process holds ONE subscriber connection and an in-memory map of waiters; a waiter
 * checks the stored acks right after it registers, so an ack that landed first is not missed, and its timer
 * is cleared as soon as it is answered. Pub/sub is at-most-once (a reconnect or a full output buffer drops
 * messages), so while anyone waits, one sweep timer per process also re-reads the stored acks.
 * Each region's tracker lives in its own Redis: the regions that apply a change write their acks into
 * the Redis of the change's origin (recordAcks, ack-records.ts), where its waiters are.
 */
import { ACK_TTL_SECONDS, acksOf, parseAck, recordAcks, recordParked, type Ack, type AckOptions, type AckWinner, type AckWriter } from './ack-records';
import type { Redis, ReplicationKeys } from '../redis';
import type { Logger } from '../logger';
import { Deadlines, type Timed } from './deadlines';
import { readAck, readAnnouncement, type AckSigning } from './ack-auth';

/** How often waitReading reads the acks in another region's Redis. */
const READ_EVERY_MS = 100;

export interface WaitResult {
  /** Every region applied the change and holds it. */
  complete: boolean;
  /** Regions known to have applied the change and to hold it (the local region included). */
  applied: string[];
  /** Regions still missing. */
  pending: string[];
  /** Regions where the change lost to a state that outranks it: the write is not, and will not be, there. */
  superseded: { region: string; winner: AckWinner }[];
}

/**
 * What a wait has learnt of a change: the regions it needs, those that hold it, those where it lost. Plain
 * arrays (a handful of regions): with two Sets and a Map per waiter, 10,000 waiters held ~7 MB of hash
 * tables for sets of three names.
 */
class Tally {
  applied: string[];
  superseded: [string, AckWinner][] | null = null;

  constructor(
    public need: readonly string[],
    alreadyApplied: readonly string[],
  ) {
    this.applied = alreadyApplied.filter((r, i) => need.includes(r) && alreadyApplied.indexOf(r) === i);
  }

  /**
   * Stops needing the regions that are not among `members` (removed from the deployment while it waited: "all
   * regions" are the members); returns whether it now holds everywhere it is needed.
   */
  narrow(members: readonly string[]): boolean {
    if (this.need.every((r) => members.includes(r))) return false;
    this.need = this.need.filter((r) => members.includes(r));
    this.applied = this.applied.filter((r) => members.includes(r));
    return this.held;
  }

  get held(): boolean {
    return this.applied.length === this.need.length;
  }

  /** Counts `acks` of the regions it needs; returns whether the wait is over (lost somewhere, or held everywhere). */
  take(acks: ReadonlyMap<string, Ack>): boolean {
    for (const [r, ack] of acks) {
      if (!this.need.includes(r)) continue;
      if (ack.outcome === 'superseded' && ack.winner) {
        // A region's first judgement stands: a change it applied and later applied again (a redelivery,
        // after a newer state of its row arrived) was held there, and is not lost.
        if (this.applied.includes(r)) continue;
        if (!this.superseded?.some(([s]) => s === r)) (this.superseded ??= []).push([r, ack.winner]);
      } else if (!this.applied.includes(r)) this.applied.push(r);
    }
    return this.superseded !== null || this.held;
  }

  result(complete = this.superseded === null && this.held): WaitResult {
    const lost = this.superseded ?? [];
    return {
      complete,
      applied: [...this.applied],
      pending: this.need.filter((r) => !this.applied.includes(r) && !lost.some(([s]) => s === r)),
      superseded: lost.map(([region, winner]) => ({ region, winner })),
    };
  }
}

const unanswered = (): void => undefined;

interface Announcement {
  region: string;
  ids: unknown[];
  lost?: Record<string, unknown>;
  /** Signed form only: the ids whose earlier applied ack the ack script kept (ack-auth.ts), with that value. */
  kept?: Record<string, unknown>;
}

/**
 * An ack announcement in either form: the JSON `{ region, ids, lost? }`, or the signed form (ack-auth.ts:
 * a signature line, that JSON, and maybe a kept line), as `signing` takes it (in `require` mode only signed;
 * null: unchecked). Null for anything else.
 */
function announcementOf(message: string, signing: AckSigning | null): Announcement | null {
  const read = signing ? signing.announcement(message) : readAnnouncement(message);
  const parsed = read ? (jsonOf(read.body) as Partial<Announcement> | null) : null;
  if (!read || typeof parsed?.region !== 'string' || !Array.isArray(parsed.ids)) return null;
  // A kept line that does not parse loses only what it would add.
  const kept = read.kept === null ? null : jsonOf(read.kept);
  // Built field by field, not spread: spreading JSON.parse's object cost ~1.5 µs an announcement (measured),
  // four times the parse of a one-id announcement, on a path every ack of the origin takes. A `kept` in the
  // JSON itself is not read: only the signed form's kept line says it.
  return {
    region: parsed.region,
    ids: parsed.ids,
    lost: parsed.lost,
    kept: kept !== null && typeof kept === 'object' ? (kept as Record<string, unknown>) : undefined,
  };
}

/** `text` parsed as JSON; null when it is not JSON. */
function jsonOf(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}

/**
 * What an announcement of `region` says of `id`: the region's earlier applied ack when the script kept it (so
 * the change is not lost there, whatever `lost` says; the kept line is outside the announcement's MAC, so each
 * value there is read as a stored one, readAck), else its lost (superseded) value, else applied. Null for a
 * lost value in `require` mode: the stored field is read instead, since a Redis writer could publish a genuine
 * announcement again without its kept line and have a waiter answer 409 for a change the region holds.
 */
function announcedAck(signing: AckSigning | null, id: string, region: string, lost: unknown, kept: unknown): Ack | null {
  const held = typeof kept === 'string' && readAck(signing, id, region, kept) !== 'refused' ? parseAck(kept) : null;
  if (held?.outcome === 'applied') return held;
  if (typeof lost === 'string' && signing?.requires) return null;
  return (typeof lost === 'string' ? parseAck(lost) : null) ?? { outcome: 'applied', at: '' };
}

/** A waiting wait(): its tally, its deadline (in the tracker's heap) and how to answer it. */
class Waiter extends Tally implements Timed {
  slot = -1;
  due = 0;
  resolve: (result: WaitResult) => void = unanswered;

  constructor(
    readonly changeId: string,
    need: readonly string[],
    alreadyApplied: readonly string[],
    /** Whether it holds a share of the every-origin subscription (see Tracker.wait). */
    public hearsEveryOrigin: boolean,
  ) {
    super(need, alreadyApplied);
  }
}

export interface WaitOptions {
  /**
   * The change may have been made in another region (the replay of an idempotent request first served
   * there); see Tracker.wait.
   */
  anyOrigin?: boolean;
  /**
   * Called once with a function that ends the wait at once (answered with what is known then), for when
   * nobody waits for the answer any more: the request's client went away. Without it a waiter stayed until
   * its deadline (up to 120 s), holding its request's objects.
   */
  abandoned?: (stop: () => void) => void;
}

export class Tracker implements AckWriter {
  /** Per change, its waiter (almost always one) or waiters. */
  private readonly waiters = new Map<string, Waiter | Waiter[]>();
  private readonly deadlines = new Deadlines<Waiter>((w) => this.finish(w, false));
  private sweeper: NodeJS.Timeout | null = null;
  /** Waiters whose change may have another origin, and the pattern subscription they share. */
  private anyOriginWaiters = 0;
  private everyOriginOn: Promise<void> | null = null;
  /** Ack values this process found kept in an origin's Redis without a valid signature, and replaced (since start). */
  acksRepaired = 0;
  /** The deployment's members as membership last told (narrow); null: not told, every region waited for counts. */
  private members: readonly string[] | null = null;

  constructor(
    private readonly redis: Redis,
    private readonly subscriber: Redis,
    private readonly keys: ReplicationKeys,
    /** This process's region: the origin of the changes its waiters wait on, whose channel it hears. */
    private readonly region: string,
    private readonly log: Logger,
    private readonly sweepIntervalMs = 1000,
    readonly ackTtlSeconds = ACK_TTL_SECONDS,
    /** How the acks this process writes are signed and the ones it reads judged (config `ackSignatures`); null: off. */
    readonly signing: AckSigning | null = null,
  ) {}

  /**
   * Subscribes once the subscriber connection is ready, and again after every reconnect. (Sending SUBSCRIBE
   * while ioredis is still running its ready check makes it drop the connection and lose the subscription.)
   */
  async start(): Promise<void> {
    const channels = new Set([this.keys.ackChannel(this.region), this.keys.sharedAckChannel]);
    // The connection carries other subscriptions too (membership's).
    this.subscriber.on('message', (channel: string, message: string) => {
      if (channels.has(channel)) this.onMessage(message);
    });
    // Every origin's channel, while a waiter may wait on another region's change (see wait); this
    // region's own announcements already came as 'message'.
    this.subscriber.on('pmessage', (pattern: string, channel: string, message: string) => {
      if (pattern === this.everyOrigin && !channels.has(channel)) this.onMessage(message);
    });
    this.subscriber.on('ready', () => void this.subscribe());
    if (this.subscriber.status === 'ready') await this.subscribe();
  }

  private async subscribe(): Promise<void> {
    try {
      // The shared channel: where a region still running a version before per-origin channels announces.
      await this.subscriber.subscribe(this.keys.ackChannel(this.region), this.keys.sharedAckChannel);
      // Acks announced while we were not subscribed are only in the stored hashes.
      await this.recheckAll();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'tracker could not subscribe; will retry on reconnect');
    }
  }

  /**
   * Records that `region` has applied these changes of this tracker's region (held, unless `opts.outcomes`
   * says superseded) and announces it.
   */
  ack(region: string, changeIds: readonly string[], opts: AckOptions = {}): Promise<void> {
    return recordAcks(this.redis, this.keys, this, { origin: this.region, region }, changeIds, opts);
  }

  /** Records that `region` parked these changes (see recordParked). */
  parked(region: string, changeIds: readonly string[]): Promise<void> {
    return recordParked(this.redis, this.keys, this, region, changeIds);
  }

  /** Counts and tells the ack values the writers replaced (ack-records.ts, repairKept); any process's writes. */
  repaired(region: string, changeIds: readonly string[]): void {
    this.acksRepaired += changeIds.length;
    this.log.warn({ region, change_ids: changeIds }, "ack values kept in an origin's Redis did not verify (planted?); replaced with the region's signed judgement");
  }

  /** The change's ack record in this region's Redis, or in `redis` (another origin's). */
  async status(changeId: string, redis: Redis = this.redis): Promise<Record<string, string>> {
    return redis.hgetall(this.keys.ack(changeId));
  }

  /** The acks of `changeId`'s record `hash` that count here (in `require` mode: those whose signature holds). */
  acksOf(changeId: string, hash: Record<string, string>): Map<string, Ack> {
    return acksOf(hash, { changeId, signing: this.signing });
  }

  /** The pattern of every origin's ack channel (the prefix's glob characters escaped). */
  private get everyOrigin(): string {
    return this.keys.ackChannel('').replace(/[*?[\]\\]/g, '\\$&') + '*';
  }

  /**
   * Resolves when every region in `regions` has acked `changeId`, or at `deadline` (epoch ms) with what is
   * known then. Never rejects: with Redis down it simply times out. `anyOrigin`: the change may have been
   * made in another region (the replay of an idempotent request first served there), whose acks are
   * announced on that region's channel; while such a waiter waits, this process hears every origin's.
   */
  wait(changeId: string, regions: readonly string[], alreadyApplied: readonly string[], deadline: number, opts: WaitOptions = {}): Promise<WaitResult> {
    const waiter = new Waiter(changeId, regions, alreadyApplied, opts.anyOrigin === true);
    if (waiter.held) return Promise.resolve(waiter.result(true));
    const answered = new Promise<WaitResult>((resolve) => (waiter.resolve = resolve));
    const others = this.waiters.get(changeId);
    if (others === undefined) this.waiters.set(changeId, waiter);
    else if (Array.isArray(others)) others.push(waiter);
    else this.waiters.set(changeId, [others, waiter]);
    this.deadlines.add(waiter, deadline);
    this.scheduleSweep();
    // Every origin's channel heard first: an ack announced before then is in the stored acks.
    if (waiter.hearsEveryOrigin) void this.joinEveryOrigin().then(() => this.recheck(changeId));
    else void this.recheck(changeId);
    // Answered with what is known now once nobody waits for the answer (finish() is a no-op when answered).
    opts.abandoned?.(() => this.finish(waiter, false));
    return answered;
  }

  /** Answers a waiter (at most once) and forgets it. */
  private finish(waiter: Waiter, complete: boolean): void {
    const others = this.waiters.get(waiter.changeId);
    if (others === waiter) this.waiters.delete(waiter.changeId);
    else if (Array.isArray(others)) {
      const i = others.indexOf(waiter);
      if (i < 0) return;
      others.splice(i, 1);
      if (others.length === 1) this.waiters.set(waiter.changeId, others[0] as Waiter);
    } else return;
    this.deadlines.remove(waiter);
    if (waiter.hearsEveryOrigin) this.leaveEveryOrigin();
    waiter.hearsEveryOrigin = false;
    waiter.resolve(waiter.result(complete));
  }

  /**
   * Like wait(), for a change whose acks are recorded in another region's Redis (`redis`, its origin's),
   * which this process does not subscribe to: reads them there every READ_EVERY_MS until every region in
   * `regions` holds the change, one superseded it, or `deadline`. Never rejects: with that Redis down it
   * times out.
   */
  async waitReading(redis: Redis, changeId: string, regions: readonly string[], alreadyApplied: readonly string[], deadline: number, opts: Pick<WaitOptions, 'abandoned'> = {}): Promise<WaitResult> {
    const p = new Tally(regions, alreadyApplied);
    let gone = false;
    opts.abandoned?.(() => (gone = true));
    for (;;) {
      if (this.members !== null) p.narrow(this.members);
      let over = p.held;
      try {
        over = p.take(this.acksOf(changeId, await redis.hgetall(this.keys.ack(changeId))));
      } catch (err) {
        this.log.debug({ err: (err as Error).message, changeId }, 'could not read the acks in the origin\'s Redis; will retry');
      }
      const left = deadline - Date.now();
      if (over || left <= 0 || gone) return p.result();
      await new Promise((r) => setTimeout(r, Math.min(READ_EVERY_MS, left)));
    }
  }

  /**
   * The deployment's members changed (membership.ts): the waits under way stop waiting for a region that is no
   * longer one (removed by `npm run members -- remove`), and those every remaining member holds are answered
   * complete now. Without it such a wait kept waiting for the removed region to its deadline and answered 408
   * naming it. (A region that joined is not added here: Replicator.waitForAllRegions waits for it after.)
   */
  narrow(members: readonly string[]): void {
    this.members = members;
    for (const waiting of [...this.waiters.values()]) {
      for (const w of Array.isArray(waiting) ? [...waiting] : [waiting]) if (w.narrow(members)) this.finish(w, true);
    }
  }

  private joinEveryOrigin(): Promise<void> {
    if (this.anyOriginWaiters++ === 0) {
      this.everyOriginOn = this.subscriber.psubscribe(this.everyOrigin).then(
        () => undefined,
        (err: Error) => this.log.debug({ err: err.message }, 'tracker could not hear every origin; the sweep finds their acks'),
      );
    }
    return this.everyOriginOn ?? Promise.resolve();
  }

  private leaveEveryOrigin(): void {
    if (--this.anyOriginWaiters > 0) return;
    this.everyOriginOn = null;
    void this.subscriber.punsubscribe(this.everyOrigin).catch(() => undefined);
  }

  get waiting(): number {
    return this.deadlines.size;
  }

  private onMessage(message: string): void {
    const parsed = announcementOf(message, this.signing);
    if (!parsed) return;
    const { region, ids, lost, kept } = parsed;
    for (const id of ids) {
      // Every ack of this region's changes is announced here (and, while any-origin waiters wait, every
      // region's); most have no waiter in this process.
      if (typeof id !== 'string' || !this.waiters.has(id)) continue;
      const ack = announcedAck(this.signing, id, region, lost?.[id], kept?.[id]);
      if (ack) this.markAcked(id, new Map([[region, ack]]));
      else void this.recheck(id);
    }
  }

  /** A waiter finishes on the first superseded ack (the write has lost) or once every region holds it. */
  private markAcked(changeId: string, acks: ReadonlyMap<string, Ack>): void {
    const waiting = this.waiters.get(changeId);
    if (waiting === undefined) return;
    for (const w of Array.isArray(waiting) ? [...waiting] : [waiting]) if (w.take(acks)) this.finish(w, w.superseded === null);
  }

  private async recheck(changeId: string): Promise<void> {
    try {
      this.markAcked(changeId, this.acksOf(changeId, await this.redis.hgetall(this.keys.ack(changeId))));
    } catch (err) {
      this.log.debug({ err: (err as Error).message, changeId }, 'tracker recheck failed; waiting for announcements');
    }
  }

  private scheduleSweep(): void {
    if (this.sweeper) return;
    this.sweeper = setTimeout(() => {
      void this.recheckAll().finally(() => {
        this.sweeper = null;
        if (this.waiters.size > 0) this.scheduleSweep();
      });
    }, this.sweepIntervalMs);
    this.sweeper.unref();
  }

  private async recheckAll(): Promise<void> {
    const ids = [...this.waiters.keys()];
    for (let i = 0; i < ids.length; i += 500) {
      const batch = ids.slice(i, i + 500);
      const pipe = this.redis.pipeline();
      for (const id of batch) pipe.hgetall(this.keys.ack(id));
      try {
        const res = (await pipe.exec()) ?? [];
        batch.forEach((id, j) => {
          const [err, acks] = res[j] ?? [null, {}];
          if (!err && acks && typeof acks === 'object') this.markAcked(id, this.acksOf(id, acks as Record<string, string>));
        });
      } catch (err) {
        this.log.debug({ err: (err as Error).message }, 'tracker sweep failed; will retry');
      }
    }
  }
}
