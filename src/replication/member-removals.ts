/**
 * The removal records a process of the membership knows (membership.ts): region -> when it was removed, as
 * `keys.departed` holds it (signed in `sign` and `require` modes, removal-auth.ts). Removals are never deleted:
 * one this process knew and its Redis no longer holds (it lost its data) stays known, and the membership's
 * propagation copies it back. Of two removals of a region the later one is kept.
 */
import type { Logger } from '../logger';
import type { Redis, ReplicationKeys } from '../redis';
import type { AckSigning } from './ack-auth';
import type { RedisLinks } from './links';
import { copyMember, copyRemovals, type Member, type MemberWriter } from './member-record';
import { departureTime, judgeDeparture, removedAfter, signDeparture, supersedes } from './removal-auth';

/** How far ahead of this clock a removal record `sign` signs may be dated. */
const FUTURE_REMOVAL_SLACK_MS = 60_000;
/** How many unsigned removal values `sign` remembers having logged (planted values are anyone's to vary). */
const LOGGED_BOUND = 1000;

export interface MemberRemovalsDeps {
  /** `own`: this region's own Redis, the copy of the record this process reads and writes first. */
  links: Pick<RedisLinks, 'own'>;
  keys: ReplicationKeys;
  region: string;
  log: Logger;
  signing?: AckSigning | null;
}

/** What keepUnremoved needs of the membership that owns these removals. */
export interface MembersSeen {
  /** Per member, the newest signed entry this process took. */
  newest: ReadonlyMap<string, Member>;
  /** The members this process counted at its last read (`registered`: read from the record, not only configured). */
  known: ReadonlyMap<string, Member>;
  /** Whether this process has joined (only then does it write to its Redis). */
  joined: boolean;
  writer: MemberWriter;
}

export class MemberRemovals {
  /** region -> when, as stored: read from keys.departed, never forgotten. */
  private at: Record<string, string> = {};
  /** The unsigned removal records `sign` left unsigned and logged (region and value). */
  private readonly logged = new Set<string>();

  constructor(private readonly d: MemberRemovalsDeps) {}

  /** The regions recorded as removed, sorted; members among them too (a region added again under its name). */
  get regions(): string[] {
    return Object.keys(this.at).sort();
  }

  /** The removals known, as stored: what the membership copies into a Redis (copyRemovals). */
  get records(): Readonly<Record<string, string>> {
    return this.at;
  }

  /** Whether a removal this process knows names `region` later than `joinedAt` (an entry's registration). */
  removedSince(region: string, joinedAt: string | null): boolean {
    const removal = this.at[region];
    return removal !== undefined && removedAfter(removal, joinedAt);
  }

  /**
   * Takes the records just read from this region's Redis: each that counts (under require one that does not
   * verify counts as absent: nothing adopted, no ack dropped, no member forgotten; in sign it counts; in both it
   * is counted) and is later than the one known of its region.
   */
  take(stored: Record<string, string>): void {
    const removals = { ...this.at };
    for (const [r, at] of Object.entries(stored)) {
      if (judgeDeparture(this.d.signing, r, at, true).counts && supersedes(this.d.signing, r, at, removals[r] ?? null)) removals[r] = at;
    }
    this.at = removals;
  }

  /**
   * In `sign`, a process that has joined writes each removal record of its own Redis that does not verify again,
   * signed, with the time it says (trust on upgrade, as `sign` takes it; it was counted when read): what turns
   * the removals recorded before signing into signed ones, which `require` then still takes (and a region
   * removed before then stays removed, its credentials adopted). Only where the field still holds what was read.
   * Not one dated ahead of this clock, nor one later than the registration of a member this process reads or
   * took signed (`live`; `members remove` deletes the entry it records as removed, and this version's tool
   * signs): signed, either would count under require against a live region, for good (the later removal wins),
   * once its entry was deleted. Such a value is logged once, and stays unsigned: absent under require.
   */
  async sign(stored: Record<string, string>, joined: boolean, live: (region: string) => Member | undefined): Promise<void> {
    const signing = this.d.signing;
    if (!joined || !signing?.signs || signing.requires) return;
    const again: Record<string, string> = {};
    const latest = Date.now() + FUTURE_REMOVAL_SLACK_MS;
    for (const [r, at] of Object.entries(stored)) {
      const time = departureTime(at);
      const t = Date.parse(time);
      if (judgeDeparture(signing, r, at).verdict === 'signed' || Number.isNaN(t)) continue;
      const member = live(r);
      if (t > latest || (member && removedAfter(at, member.joinedAt))) {
        this.logOnce(r, at, time, member);
        continue;
      }
      again[r] = signDeparture(signing.auth, r, time);
    }
    await copyRemovals(this.d.links.own, this.d.keys, again, signing);
  }

  private logOnce(region: string, at: string, time: string, member: Member | undefined): void {
    const key = `${region} ${at}`;
    if (this.logged.has(key)) return;
    // Bounded: past the bound one may be logged again.
    if (this.logged.size >= LOGGED_BOUND) this.logged.clear();
    this.logged.add(key);
    this.d.log.warn({ member: region, removal: time, joined_at: member?.joinedAt ?? null }, "a removal record that does not verify names a member registered before it, or a time ahead of this clock: not signed (under require it counts as absent; remove a region with this version's npm run members -- remove)");
  }

  /**
   * Puts into `taken` (the members read now) each member this process counted as registered that its Redis no
   * longer holds while no removal it knows names it later than that entry's registration. Removal is explicit
   * (`npm run members -- remove` records it before it deletes the entry) and removals are never forgotten, so
   * such an entry was lost (a failover to a replica that lacked it, a restart from an older snapshot) or deleted
   * alone: dropped, the member would miss deliveries, waits and confirmation until its own processes copy it back
   * (seconds; never, while it is down), and a change confirmed without it meanwhile would never reach it. Under
   * require only a member whose entry this process took signed, on a verified removal (anything that writes to
   * this Redis can HDEL an entry; a removal's signature cannot be had without the key); in `off` and `sign` the
   * entry as last read. A process that has joined writes it back as stored.
   */
  async keepUnremoved(taken: Map<string, Member>, seen: MembersSeen): Promise<void> {
    const { links, keys, region, log } = this.d;
    const requires = !!this.d.signing?.requires;
    for (const [r, last] of requires ? seen.newest : seen.known) {
      if (r === region || taken.has(r) || !seen.known.get(r)?.registered) continue;
      if (this.removedSince(r, last.joinedAt)) continue;
      // As judged here: a refresh meanwhile may take a later one.
      const removal = this.at[r] ?? null;
      taken.set(r, last);
      const written = seen.joined && (await copyMember(links.own, keys, last, seen.writer).catch((err: Error) => (log.debug({ member: r, err: err.message }, "could not write a member's entry back; will retry"), false)));
      if (written) {
        log.warn({ member: r, joined_at: last.joinedAt, removal }, `a member's entry was gone from this region's Redis with no ${requires ? 'verified ' : ''}removal after its registration: written back (remove a region with npm run members -- remove)`);
      }
    }
  }

  /** Writes `records` (the removals known now unless given) into `redis` where it lacks them or holds earlier ones (copyRemovals). */
  copyTo(redis: Redis, records: Readonly<Record<string, string>> = this.at): Promise<void> {
    return copyRemovals(redis, this.d.keys, { ...records }, this.d.signing);
  }
}
