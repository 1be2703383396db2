/**
 * Regions that left the deployment (removed for good by `npm run members -- remove`, which records them in
 * keys.departed; the regions' processes copy that record into every member's Redis: docs/operations.md,
 * "Removing a region"), as this region sees them: whether it may take over their background work now. Only
 * a recorded removal counts: a home region this process does not know (one added at runtime whose entry
 * has not reached this Redis yet) is not taken for gone. The provider-credentials feature uses it to adopt
 * the credentials whose home region left (their IdP metadata is refreshed by the home region only). A
 * region takes such work over only once it has applied whatever the departed regions delivered to it: a
 * refresh judged on a stale copy of a credential could replace the departed region's newer rows (last
 * writer wins), or trust on first use a document the departed region had held.
 *
 * Ready when, as this process sees it:
 * - it read the membership record from its Redis in the last MEMBERS_FRESH_MS (a process that cannot read
 *   it does not know of the members, removals and adopters since);
 * - the members, their states, the departed regions and the adopters have not changed for `graceMs`: the
 *   removal has settled, and every process has heard of it. The adopters are the active members that
 *   recorded (keys.departedKnown) that they know of every removal this process knows: a member that has not
 *   heard of one, or runs a version that does not adopt, is left out rather than given a share it would
 *   never refresh;
 * - this region's consumer group has read and acknowledged every entry of its inbox up to the mark, the
 *   inbox's last id once the grace had passed (a departed region delivered everything it ever delivered
 *   before it was removed, so before the mark);
 * - no change from a departed region is failing or parked here (acknowledged, not applied). Entries the
 *   applier refused (dead letters: a bad signature, unreadable) do not hold it: they would never apply.
 * Nothing here writes: a region that is not ready simply does not adopt yet, and says why. A Redis restarted
 * empty loses the inbox with what the departed region had delivered into it and was not applied yet; that
 * is lost with the region (it cannot deliver again), and the check then finds nothing to wait for.
 */
import type { Db } from '../db/client';
import type { Logger } from '../logger';
import type { Redis } from '../redis';
import type { Member } from './member-record';
import { compareStreamIds, groupFloor, groupInfo, streamBounds } from './stream';

/** The membership record must have been read this recently for the members to count as known. */
export const MEMBERS_FRESH_MS = 15_000;
/** How long the members must stay unchanged before a region adopts the work of one that left (default). */
export const DEFAULT_ADOPT_AFTER_SECONDS = 600;

export interface DepartureState {
  /** The regions recorded as removed that are not members (again), sorted: their work is adopted. */
  departed: string[];
  /** The active members that know of every removal, sorted, when ready (one of them takes each departed region's item); else none. */
  adopters: string[];
  ready: boolean;
  /** Why this region does not adopt yet (null when ready). */
  waiting: string | null;
}

/** What a process that does not follow the membership sees: no region removed. */
export const NO_DEPARTURES: DepartureState = Object.freeze({ departed: [], adopters: [], ready: true, waiting: null });

export interface DeparturesDeps {
  db: Db;
  /** This region's own Redis, where its inbox is. */
  redis: Redis;
  inbox: string;
  region: string;
  membership: { members(): Member[]; departed: readonly string[]; departedKnown: ReadonlyMap<string, readonly string[]>; readAt: number };
  graceMs: number;
  log?: Logger;
  now?: () => number;
}

export class Departures {
  /** The members, removals and adopters as last seen, when they were first seen so, and the inbox's mark. */
  private seen = '';
  private since: number;
  private mark: string | null = null;
  private caughtUp = false;
  /** The check in progress: callers at the same time (the refresher, /metrics, the admin route) share it. */
  private running: Promise<DepartureState> | null = null;

  constructor(private readonly d: DeparturesDeps) {
    this.since = this.now();
  }

  private now(): number {
    return this.d.now?.() ?? Date.now();
  }

  /**
   * Whether this region may adopt now, and why not. One check at a time: a check that waited on Redis
   * must not mark the inbox caught up for members another call has meanwhile seen change.
   */
  state(): Promise<DepartureState> {
    this.running ??= this.check().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async check(): Promise<DepartureState> {
    const now = this.now();
    const all = [...this.d.membership.members()].sort((a, b) => (a.region < b.region ? -1 : a.region > b.region ? 1 : 0));
    const members = new Set(all.map((m) => m.region));
    const departed = [...new Set(this.d.membership.departed)].filter((r) => !members.has(r)).sort();
    // The members that may adopt: active, and knowing of every removal this process knows (a member whose
    // processes have not heard of one yet, or run a version that does not adopt, would leave its share to no one).
    const known = this.d.membership.departedKnown;
    const adopters = all.filter((m) => m.state === 'active' && !m.unverified && departed.every((r) => known.get(m.region)?.includes(r))).map((m) => m.region);
    const seen = `${all.map((m) => `${m.region}:${m.state}`).join(',')} departed ${departed.join(',')} adopters ${adopters.join(',')}`;
    if (seen !== this.seen) {
      this.seen = seen;
      this.since = now;
      this.mark = null;
      this.caughtUp = false;
    }
    // No region removed: nothing to adopt, nothing to check.
    if (departed.length === 0) return { departed, adopters: [], ready: true, waiting: null };
    const not = (waiting: string): DepartureState => ({ departed, adopters: [], ready: false, waiting });
    if (now - this.d.membership.readAt > MEMBERS_FRESH_MS) return not('the membership record could not be read from Redis lately');
    const settled = now - this.since;
    if (settled < this.d.graceMs) {
      return not(`the members changed ${Math.floor(settled / 1000)} s ago; nothing is adopted until they have been unchanged for ${Math.ceil(this.d.graceMs / 1000)} s`);
    }
    try {
      if (!this.caughtUp) {
        // (Only this check runs now: nothing resets the mark or the flag under it.)
        this.mark ??= (await streamBounds(this.d.redis, this.d.inbox))?.lastGeneratedId ?? '0-0';
        const behind = await this.unapplied(this.mark);
        if (behind) return not(behind);
        this.caughtUp = true;
      }
      const rows = await this.d.db.$queryRawUnsafe<{ n: bigint }[]>('SELECT count(*) AS n FROM replication_failures WHERE origin_region = ANY($1::text[])', departed);
      const failing = Number(rows[0]?.n ?? 0);
      if (failing > 0) {
        return not(`${failing} change${failing === 1 ? '' : 's'} from removed regions ${failing === 1 ? 'is' : 'are'} failing or parked here (GET /admin/replication; upgrade and retry, or POST /admin/replication/parked/discard)`);
      }
    } catch (err) {
      // The answer goes to the admin API: the error's own words (a database's may quote SQL) go to the log.
      this.d.log?.warn({ err: (err as Error).message }, 'could not check whether removed regions can be adopted');
      return not('could not check that this region applied what removed regions sent it: its Redis or its database did not answer (see the region log)');
    }
    if (!adopters.includes(this.d.region)) return not('this region has not yet recorded that it knows of every removal');
    return { departed, adopters, ready: true, waiting: null };
  }

  /** Why the inbox is not caught up with `mark` (null when every entry up to it was read and acknowledged). */
  private async unapplied(mark: string): Promise<string | null> {
    let groups;
    try {
      groups = await groupInfo(this.d.redis, this.d.inbox);
    } catch (err) {
      // No inbox (this Redis never held one, or lost it): nothing in it waits to be applied.
      if (/no such key/i.test((err as Error).message)) return null;
      throw err;
    }
    const group = groups.find((g) => g.name === this.d.region);
    if (!group) return mark === '0-0' ? null : "this region's inbox has no consumer group yet";
    const floor = await groupFloor(this.d.redis, this.d.inbox, group);
    if (compareStreamIds(floor.lastDelivered, mark) < 0 || (floor.oldestPending !== null && compareStreamIds(floor.oldestPending, mark) <= 0)) {
      return 'this region has not yet applied every change delivered to it before the members last changed';
    }
    return null;
  }
}
