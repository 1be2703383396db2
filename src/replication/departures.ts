/**
 * Regions that left the deployment (removed for good: README, Operations, "Removing a region"), as this
 * region sees them: whether it may take over their background work now. The provider-credentials feature
 * uses it to adopt the credentials whose home region left (their IdP metadata is refreshed by the home
 * region only). A region takes such work over only once it has applied whatever the departed regions
 * delivered to it: a refresh judged on a stale copy of a credential could replace the departed region's
 * newer rows (last writer wins), or trust on first use a document the departed region had held.
 *
 * Ready when, as this process sees it:
 * - it read the membership record from its Redis in the last MEMBERS_FRESH_MS (a process that cannot read
 *   the record knows only its config, which leaves out regions added at runtime: their credentials would
 *   look orphaned);
 * - the members (and their states) have not changed for `graceMs`: the removal has settled, and every
 *   process has heard of it;
 * - this region's consumer group has read and acknowledged every entry of its inbox up to the mark, the
 *   inbox's last id once the grace had passed (a departed region delivered everything it ever delivered
 *   before it was removed, so before the mark);
 * - no change from a region that is not a member is failing or parked here (acknowledged, not applied).
 * Nothing here writes: a region that is not ready simply does not adopt yet, and says why.
 */
import type { Db } from '../db/client';
import type { Redis } from '../redis';
import type { Member } from './membership';
import { compareStreamIds, groupFloor, groupInfo, streamBounds } from './stream';

/** The membership record must have been read this recently for the members to count as known. */
export const MEMBERS_FRESH_MS = 15_000;
/** How long the members must stay unchanged before a region adopts the work of one that left (default). */
export const DEFAULT_ADOPT_AFTER_SECONDS = 600;

export interface DepartureState {
  /** The members, in every state, sorted: work whose region is one of them is that region's. */
  members: string[];
  /** The active members, sorted, when ready (one of them takes each departed region's item); else none. */
  adopters: string[];
  ready: boolean;
  /** Why this region does not adopt yet (null when ready). */
  waiting: string | null;
}

export interface DeparturesDeps {
  db: Db;
  /** This region's own Redis, where its inbox is. */
  redis: Redis;
  inbox: string;
  region: string;
  membership: { members(): Member[]; readAt: number };
  graceMs: number;
  now?: () => number;
}

export class Departures {
  /** The members as last seen (regions and states), when they were first seen so, and the inbox's mark. */
  private seen = '';
  private since: number;
  private mark: string | null = null;
  private caughtUp = false;

  constructor(private readonly d: DeparturesDeps) {
    this.since = this.now();
  }

  private now(): number {
    return this.d.now?.() ?? Date.now();
  }

  async state(): Promise<DepartureState> {
    const now = this.now();
    const all = [...this.d.membership.members()].sort((a, b) => (a.region < b.region ? -1 : a.region > b.region ? 1 : 0));
    const members = all.map((m) => m.region);
    const seen = all.map((m) => `${m.region}:${m.state}`).join(',');
    if (seen !== this.seen) {
      this.seen = seen;
      this.since = now;
      this.mark = null;
      this.caughtUp = false;
    }
    const not = (waiting: string): DepartureState => ({ members, adopters: [], ready: false, waiting });
    if (now - this.d.membership.readAt > MEMBERS_FRESH_MS) return not('the membership record could not be read from Redis lately');
    const settled = now - this.since;
    if (settled < this.d.graceMs) {
      return not(`the members changed ${Math.floor(settled / 1000)} s ago; nothing is adopted until they have been unchanged for ${Math.ceil(this.d.graceMs / 1000)} s`);
    }
    try {
      if (!this.caughtUp) {
        this.mark ??= (await streamBounds(this.d.redis, this.d.inbox))?.lastGeneratedId ?? '0-0';
        const behind = await this.unapplied(this.mark);
        if (behind) return not(behind);
        this.caughtUp = true;
      }
      const rows = await this.d.db.$queryRawUnsafe<{ n: bigint }[]>(
        'SELECT count(*) AS n FROM replication_failures WHERE origin_region <> ALL($1::text[])',
        members,
      );
      const failing = Number(rows[0]?.n ?? 0);
      if (failing > 0) {
        return not(`${failing} change${failing === 1 ? '' : 's'} from regions that are no longer members ${failing === 1 ? 'is' : 'are'} failing or parked here (GET /admin/replication)`);
      }
    } catch (err) {
      return not(`could not check that this region applied what departed regions sent it: ${(err as Error).message}`);
    }
    return { members, adopters: all.filter((m) => m.state === 'active').map((m) => m.region), ready: true, waiting: null };
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
