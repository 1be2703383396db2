/**
 * The membership record as one Redis holds it (membership.ts describes the record and who writes it):
 * reading, writing, re-marking and removing entries, each announced. The admin commands (npm run members,
 * re-seed) and a region's processes (Membership, membership.ts) write through these.
 */
import type { Logger } from '../logger';
import type { Redis, ReplicationKeys } from '../redis';
import { checkMember, type AckSigning, type MemberVerdict } from './ack-auth';
import type { EventAuth } from './event-auth';
import { eachRegion, type RedisLinks } from './links';
import { judgeDeparture, supersedes, writtenDeparture } from './removal-auth';

export type MemberState = 'joining' | 'active';

export interface Member {
  region: string;
  state: MemberState;
  joinedAt: string | null;
  /** The Redis the region recorded for itself (null: not recorded; its config entry or the default). */
  redisUrl: string | null;
  /** False for a region known only from this process's config (not yet in the record). */
  registered: boolean;
  /** The re-seed that marked it joining (its token), while nothing else has rewritten the entry since. */
  reseed: string | null;
  /** The entry's revision (signed entries carry one; every signed rewrite raises it), null when it has none. */
  rev: number | null;
  /** The entry as stored (null when not registered): what a copier writes elsewhere, signature and all. */
  raw: string | null;
  /**
   * Whether its signature holds (ack-auth.ts, checkMember); null when not checked (read without a key, or not
   * registered). `replayed`: set by Membership (require) for a signed entry below one it took before.
   */
  verified: MemberVerdict | null;
  /** Set by Membership: the entry counts by its name only (see countsByNameOnly). */
  unverified?: boolean;
}

/**
 * Whether `m` counts by its name only: `ackSignatures` `require` and a stored entry whose signature does not
 * hold. It is still a member (delivered to, waited for, nothing confirmed without it), but never active (it
 * holds tombstone collection, adopts nothing, is no re-seed peer) and its `redis_url` is never used
 * (docs/membership-signing.md §3).
 */
export function countsByNameOnly(m: Pick<Member, 'verified'>, signing?: Pick<AckSigning, 'requires'> | null): boolean {
  return !!signing?.requires && m.verified !== null && m.verified !== 'signed';
}

/** Whether `a` is an older entry of its region than `b`: an earlier `joined_at` (an earlier registration), else a lower `rev`. */
export function older(a: Pick<Member, 'joinedAt' | 'rev'>, b: Pick<Member, 'joinedAt' | 'rev'>): boolean {
  const [ja, jb] = [a.joinedAt ?? '', b.joinedAt ?? ''];
  return ja < jb || (ja === jb && (a.rev ?? 0) < (b.rev ?? 0));
}

const GENERATION = '~generation';

interface Stored {
  state?: string;
  joined_at?: string;
  redis_url?: string;
  reseed?: string;
  rev?: number;
}

/** `raw`, the entry stored in the field `region`, as a member (its verdict checked when `auth` is given). */
export function parseMember(region: string, raw: string, auth?: EventAuth | null): Member {
  let v: Stored = {};
  try {
    v = JSON.parse(raw) as Stored;
  } catch {
    // An unreadable entry still names a member; count it as needing everything.
  }
  return {
    region,
    state: v.state === 'joining' ? 'joining' : 'active',
    joinedAt: typeof v.joined_at === 'string' ? v.joined_at : null,
    redisUrl: typeof v.redis_url === 'string' && /^rediss?:\/\//.test(v.redis_url) ? v.redis_url : null,
    registered: true,
    reseed: typeof v.reseed === 'string' ? v.reseed : null,
    rev: isRev(v.rev) ? v.rev : null,
    raw,
    verified: auth ? checkMember(auth, region, raw).verdict : null,
  };
}

/** The record as stored: members by region (each entry checked when `auth` is given), and its generation. */
export async function readMembers(redis: Redis, keys: ReplicationKeys, auth?: EventAuth | null): Promise<{ members: Map<string, Member>; generation: number }> {
  const hash = await redis.hgetall(keys.members);
  const members = new Map<string, Member>();
  for (const [field, value] of Object.entries(hash)) if (field !== GENERATION) members.set(field, parseMember(field, value, auth));
  return { members, generation: Number(hash[GENERATION] ?? 0) };
}

export interface MemberEntry {
  state: MemberState;
  joined_at?: string;
  redis_url?: string | null;
  reseed?: string;
  /** Written only by a signing writer (an entry without one is as every version before signing wrote it). */
  rev?: number;
}

function encode(entry: MemberEntry): string {
  return JSON.stringify({
    state: entry.state,
    joined_at: entry.joined_at ?? new Date().toISOString(),
    ...(entry.redis_url ? { redis_url: entry.redis_url } : {}),
    ...(entry.reseed ? { reseed: entry.reseed } : {}),
    ...(entry.rev !== undefined ? { rev: entry.rev } : {}),
  });
}

/**
 * A writer of the record: where it says it replaced a generation that was not an integer (see BUMP), and how
 * it signs (config `ackSignatures`: `sign` and `require` sign every entry they write, with a `rev`; none, or
 * `off`, writes the entry unsigned and without `rev`, byte for byte as before).
 */
export interface MemberWriter {
  log?: Pick<Logger, 'warn'>;
  signing?: AckSigning | null;
  /**
   * Under require, whether updateMember may write a fresh signed `joining` entry over one that does not verify
   * (default true). False for a region the writer has no reason to think genuine (neither configured nor ever
   * read signed): a fresh entry would turn a planted name into a signed member (what an operator's activate
   * then takes); left alone, it is held as unverified, which holds as much as joining.
   */
  renewUnverified?: boolean;
}

/** `entry` as `w` writes it into the field `region`; `rev` is kept only when it signs. */
function written(region: string, { rev, ...entry }: MemberEntry, w: MemberWriter): string {
  // Never a revision a reader would not take (parseMember): it would read as none, below every one before it.
  if (rev !== undefined && !isRev(rev)) throw new RangeError(`${region}'s membership entry: rev ${rev} is not a safe non-negative integer; nothing was written`);
  return w.signing?.signs ? w.signing.writtenMember(region, encode({ ...entry, rev: rev ?? 1 })) : encode(entry);
}

function isRev(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}

/**
 * The revision a rewrite of `m` (as read by a signing writer) takes: one above its `rev` only when it verifies.
 * Anyone who can write to a Redis can store an entry with any `rev`; carried up, a planted one (say 2^53 - 1)
 * would be signed into the record and every later genuine entry would go above it, up to no integer at all.
 */
function revAbove(m: Member): number {
  return (m.verified === 'signed' ? (m.rev ?? 0) : 0) + 1;
}

/** Writes (or, with `onlyIfAbsent`, adds) a member's entry in one Redis, bumps its generation and announces it. */
export async function writeMember(redis: Redis, keys: ReplicationKeys, region: string, entry: MemberEntry, onlyIfAbsent = false, w: MemberWriter = {}): Promise<boolean> {
  return writeRaw(redis, keys, region, written(region, entry, w), onlyIfAbsent, w);
}

export async function writeRaw(redis: Redis, keys: ReplicationKeys, region: string, value: string, onlyIfAbsent: boolean, w: MemberWriter = {}): Promise<boolean> {
  const done = onlyIfAbsent ? (await redis.hsetnx(keys.members, region, value)) === 1 : (await redis.hset(keys.members, region, value), true);
  if (done) await announce(redis, keys, w.log);
  return done;
}

/**
 * Puts a member read from another copy (or remembered) into one Redis where it is absent: a signing writer
 * copies the entry as stored, so its signature and `rev` survive (and one that does not verify stays so); an
 * unsigned one writes it again as every version before signing did.
 */
export async function copyMember(redis: Redis, keys: ReplicationKeys, m: Member, w: MemberWriter = {}): Promise<boolean> {
  if (w.signing?.signs && m.raw !== null) return writeRaw(redis, keys, m.region, m.raw, true, w);
  return writeMember(redis, keys, m.region, { state: m.state, joined_at: m.joinedAt ?? undefined, redis_url: m.redisUrl }, true, w);
}

/**
 * Changes a registered member's state in one Redis (keeping the rest); false when it is not a member there.
 * `reseed` names the re-seed that sets it (see activateAfterReseed); any other update clears that name.
 */
export async function updateMember(redis: Redis, keys: ReplicationKeys, region: string, patch: { state: MemberState; reseed?: string }, w: MemberWriter = {}): Promise<boolean> {
  const raw = await redis.hget(keys.members, region);
  if (raw === null) return false;
  const m = parseMember(region, raw, checkedBy(w));
  // Under require nothing of an entry that does not verify is built on (signing it would launder its address
  // and state): `joining`, the safe direction, is written afresh; `active` is refused.
  if (countsByNameOnly(m, w.signing)) {
    if (patch.state !== 'joining') throw new UnverifiedMemberError(`${region}'s membership entry there does not verify (${m.verified}): not marked ${patch.state}`);
    if (w.renewUnverified === false) return false;
    await writeMember(redis, keys, region, { state: 'joining', reseed: patch.reseed, rev: revAbove(m) }, false, w);
    return true;
  }
  await writeMember(redis, keys, region, { state: patch.state, joined_at: m.joinedAt ?? undefined, redis_url: m.redisUrl, reseed: patch.reseed, rev: revAbove(m) }, false, w);
  return true;
}

/** Thrown by updateMember: under `require` the entry it would mark active does not verify. */
export class UnverifiedMemberError extends Error {}

/**
 * The key `w` checks entries with before it builds on them, when it signs: under `require` only a verified entry
 * is built on (countsByNameOnly); in `sign` an unsigned one is (trust on upgrade), but its `rev` is not (revAbove).
 */
function checkedBy(w: MemberWriter) {
  return w.signing?.signs ? w.signing.auth : null;
}

/**
 * Marks `region` joining (it needs a re-seed): first in `home`, its own Redis (its entry's authoritative copy,
 * which its processes copy everywhere), then in every other member's Redis it can reach, each server once.
 */
export async function markJoining(home: Redis, links: Pick<RedisLinks, 'to'>, keys: ReplicationKeys, region: string, regions: readonly string[], w: MemberWriter = {}): Promise<void> {
  await updateMember(home, keys, region, { state: 'joining' }, w);
  const seen = new Set([home]);
  const others = regions.filter((r) => {
    const redis = links.to(r);
    if (r === region || seen.has(redis)) return false;
    seen.add(redis);
    return true;
  });
  await eachRegion(others, (r) => updateMember(links.to(r), keys, region, { state: 'joining' }, w));
}

/**
 * Lua: bumps the generation of hash KEYS[1] into `g`. A value HINCRBY refuses (not an integer, planted or
 * corrupt, or at the int64 limit) would fail the write that just landed: it is replaced by 1 instead (nothing
 * acts on the value; it only tells announcements apart), and `was` holds its start for the warning.
 */
const BUMP = `local g = redis.pcall('HINCRBY', KEYS[1], '${GENERATION}', 1)
local was = nil
if type(g) == 'table' then
  was = string.sub(redis.call('HGET', KEYS[1], '${GENERATION}') or '', 1, 100)
  g = 1
  redis.call('HSET', KEYS[1], '${GENERATION}', g)
end
`;

/** Bumps the generation of hash KEYS[1]: {generation, the value it replaced (only if it replaced one)}. */
const BUMP_GENERATION = `${BUMP}return {g, was}`;

/**
 * Sets field ARGV[1] of hash KEYS[1] to ARGV[3] only if it still holds ARGV[2], and bumps the generation:
 * {} when it did not hold it, else as BUMP_GENERATION.
 */
const COMPARE_AND_SET = `if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return {} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
${BUMP}return {g, was}`;

/**
 * The end of a re-seed: marks the region active in one Redis only if its entry is still the one the
 * re-seed wrote (joining, with its token). A relay that found the region's inbox trimmed past changes it
 * had not applied marks it joining again meanwhile (relay-confirm.ts markBehind), which clears the token: then
 * the copy may lack those changes, the region stays joining, and this answers false.
 */
export async function activateAfterReseed(redis: Redis, keys: ReplicationKeys, region: string, token: string, w: MemberWriter = {}): Promise<boolean> {
  const raw = await redis.hget(keys.members, region);
  if (raw === null) return false;
  const m = parseMember(region, raw, checkedBy(w));
  if (m.state !== 'joining' || m.reseed !== token || countsByNameOnly(m, w.signing)) return false;
  return replaceMember(redis, keys, region, raw, { state: 'active', joined_at: m.joinedAt ?? undefined, redis_url: m.redisUrl, rev: revAbove(m) }, w);
}

/** Writes `entry` into the field `region` of one Redis only if it still holds `raw` (announced); false when it does not. */
export async function replaceMember(redis: Redis, keys: ReplicationKeys, region: string, raw: string, entry: MemberEntry, w: MemberWriter = {}): Promise<boolean> {
  return replaceRaw(redis, keys, region, raw, written(region, entry, w), w.log);
}

/** Writes `value` as it is into the field `region` of one Redis only if it still holds `raw` (announced); false when it does not. */
export async function replaceRaw(redis: Redis, keys: ReplicationKeys, region: string, raw: string, value: string, log?: MemberWriter['log']): Promise<boolean> {
  const bumped = (await redis.eval(COMPARE_AND_SET, 1, keys.members, region, raw, value)) as Bumped | [];
  if (bumped.length === 0) return false;
  await announced(redis, keys, bumped, log);
  return true;
}

/**
 * Removes a region from one Redis's record, and its inbox if it is in this Redis (so no one delivers to it
 * or waits for it), with the relay's records of that inbox. Stop the region and take it out of every config
 * file first: a running region registers itself again, and a config that names it keeps counting it.
 * The removal record (signed when `w` signs) is written before the entry goes: a process that finds the entry
 * gone finds the record too (under require a member taken verified is forgotten only on a verified one, later
 * than its registration: membership.ts).
 */
export async function removeMember(
  redis: Redis,
  keys: ReplicationKeys,
  region: string,
  /** Record the removal even where the region is no longer a member (`remove --force`: a Redis that lost the record). */
  force = false,
  w: MemberWriter = {},
  /** The removal's time (ms): one for every Redis a removal is recorded in; moved past the registration of the entry removed (removalTime). */
  at = Date.now(),
): Promise<{ removed: boolean; inboxDeleted: boolean }> {
  // Recorded as gone (the other regions adopt its credentials: departures.ts), where it was a member: a
  // name that was never one records nothing. The regions' processes copy the record into every member's
  // Redis (Membership.propagate); a region added again under this name is a member again, which outranks it.
  // Where it is no longer a member (--force), a removal already recorded keeps its time.
  const raw = await redis.hget(keys.members, region);
  const member = raw !== null;
  const time = removalTime(region, raw, w.signing, at);
  const record = (keep: boolean) => copyRemovals(redis, keys, { [region]: writtenDeparture(w.signing, region, time) }, w.signing, keep);
  if (member || force) await record(!member);
  const removed = (await redis.hdel(keys.members, region)) === 1;
  // Registered between the two (it was running): recorded all the same.
  if (removed && !member) await record(false);
  await redis.hdel(keys.watermarks, region);
  await redis.hdel(keys.departedKnown, region);
  // Announced first: the regions stop delivering to it as they hear of it.
  await announce(redis, keys);
  // The inbox, and the relay's records of its incarnation (relay-trim.ts): a region added again under the same
  // name starts a new inbox, and must not be judged by the old one's first id or acks.
  const dropInbox = async () => {
    const deleted = Number(await redis.del(keys.inbox(region))) === 1;
    // With them its applied-count and outbox marks and database identity (restore-check.ts): a region added again under
    // this name starts anew.
    await redis.del(keys.inboxBorn(region), keys.acksBornAt(region), keys.appliedMark(region), keys.outboxMark(region), keys.databaseIdentity(region));
    return deleted;
  };
  const first = await dropInbox();
  // A delivery (or a relay's trim) that read the membership before the announcement reached its region can
  // still write them, which recreates the inbox: once that is over, they are deleted again.
  await new Promise((resolve) => setTimeout(resolve, REMOVAL_GRACE_MS));
  const again = await dropInbox();
  return { removed, inboxDeleted: first || again };
}

/**
 * When a removal of `region` is recorded: now, by the clock of the host that removes it, but after the
 * registration of the entry it removes (`raw`; only one that verifies where entries are signed). Under require a
 * removal counts against a member only if it is later than that entry's `joined_at` (removedAfter), which the
 * region's own host stamped: with the remover's clock behind, the removal would not count, and every process
 * would write the entry back.
 */
function removalTime(region: string, raw: string | null, signing: AckSigning | null | undefined, now: number): string {
  if (raw === null) return new Date(now).toISOString();
  const m = parseMember(region, raw, signing?.signs ? signing.auth : null);
  const joined = m.verified === null || m.verified === 'signed' ? Date.parse(m.joinedAt ?? '') : NaN;
  return new Date(Number.isNaN(joined) ? now : Math.max(now, joined + 1)).toISOString();
}

/**
 * Sets field ARGV[i] of hash KEYS[1] to ARGV[i+2] only if it still holds what ARGV[i+1] says (`0`: absent; `1`
 * and a value: that value), for each triple i; returns how many it set.
 */
const SET_IF_UNCHANGED = `local n = 0
for i = 1, #ARGV, 3 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if (cur == false and ARGV[i + 1] == '0') or (cur ~= false and ARGV[i + 1] == '1' .. cur) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    n = n + 1
  end
end
return n`;

/**
 * Writes the removal records (region -> when, as stored) into `redis` where it lacks them or holds an earlier
 * removal of the region (a region removed, added again and removed again: the later removal counts), or, under
 * require, one that does not verify (removal-auth.ts, supersedes); never an earlier over a later one. Each only
 * if the field still holds what was read (a removal written meanwhile is judged again next time). Removals are
 * never deleted. The values are copied as stored: the caller passes only those it took as counting. `keep`:
 * only where the field is missing (or, under require, does not verify).
 */
export async function copyRemovals(redis: Redis, keys: ReplicationKeys, removals: Record<string, string>, signing?: AckSigning | null, keep = false): Promise<void> {
  const entries = Object.entries(removals);
  if (entries.length === 0) return;
  const current = await redis.hgetall(keys.departed);
  const args = entries.flatMap(([r, value]) => {
    const now = current[r] ?? null;
    const write = keep ? now === null || !judgeDeparture(signing, r, now).counts : supersedes(signing, r, value, now);
    return write ? [r, now === null ? '0' : `1${now}`, value] : [];
  });
  if (args.length) await redis.eval(SET_IF_UNCHANGED, 1, keys.departed, ...args);
}

/** How long removeMember waits before it deletes the removed region's inbox again. */
export const REMOVAL_GRACE_MS = 3000;

type Bumped = [generation: number, replaced?: string];

async function announce(redis: Redis, keys: ReplicationKeys, log?: MemberWriter['log']): Promise<void> {
  await announced(redis, keys, (await redis.eval(BUMP_GENERATION, 1, keys.members)) as Bumped, log);
}

async function announced(redis: Redis, keys: ReplicationKeys, [generation, replaced]: Bumped, log?: MemberWriter['log']): Promise<void> {
  if (replaced !== undefined) log?.warn({ replaced, generation }, `the membership record's ${GENERATION} was not an integer: replaced`);
  await redis.publish(keys.membersChannel, JSON.stringify({ members: generation }));
}
