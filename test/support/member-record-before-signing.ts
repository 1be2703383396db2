/**
 * The membership record's reader and writers as they were before entries were signed: a frozen copy of
 * src/replication/member-record.ts at commit d663f36 (parse, readMembers, writeMember, updateMember,
 * activateAfterReseed; removal and markJoining left out; the writes of an entry's bytes imported, being
 * unchanged). It stands for a region or tool of that version in
 * the rollout test (member-signatures.test.ts): what it reads from a signed entry, and what it writes back.
 * Never update it to follow the source.
 */
import type { Logger } from '../../src/logger';
import type { Redis, ReplicationKeys } from '../../src/redis';
// Writing an entry's bytes (with the generation's bump and announcement, and the compare-and-set) is the same
// in both versions (it carries no entry of its own): the source's.
import { replaceRaw, writeRaw } from '../../src/replication/member-record';

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
}

const GENERATION = '~generation';

interface Stored {
  state?: string;
  joined_at?: string;
  redis_url?: string;
  reseed?: string;
}

function parse(region: string, raw: string): Member {
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
  };
}

/** The record as stored: members by region, and its generation. */
export async function readMembers(redis: Redis, keys: ReplicationKeys): Promise<{ members: Map<string, Member>; generation: number }> {
  const hash = await redis.hgetall(keys.members);
  const members = new Map<string, Member>();
  for (const [field, value] of Object.entries(hash)) if (field !== GENERATION) members.set(field, parse(field, value));
  return { members, generation: Number(hash[GENERATION] ?? 0) };
}

export interface MemberEntry {
  state: MemberState;
  joined_at?: string;
  redis_url?: string | null;
  reseed?: string;
}

function encode(entry: MemberEntry): string {
  return JSON.stringify({
    state: entry.state,
    joined_at: entry.joined_at ?? new Date().toISOString(),
    ...(entry.redis_url ? { redis_url: entry.redis_url } : {}),
    ...(entry.reseed ? { reseed: entry.reseed } : {}),
  });
}

/** Where a writer says it replaced a generation that was not an integer (member-record.ts, BUMP). */
type WarnLog = Pick<Logger, 'warn'>;

/** Writes (or, with `onlyIfAbsent`, adds) a member's entry in one Redis, bumps its generation and announces it. */
export async function writeMember(redis: Redis, keys: ReplicationKeys, region: string, entry: MemberEntry, onlyIfAbsent = false, log?: WarnLog): Promise<boolean> {
  return writeRaw(redis, keys, region, encode(entry), onlyIfAbsent, { log });
}

/**
 * Changes a registered member's state in one Redis (keeping the rest); false when it is not a member there.
 * `reseed` names the re-seed that sets it (see activateAfterReseed); any other update clears that name.
 */
export async function updateMember(redis: Redis, keys: ReplicationKeys, region: string, patch: { state: MemberState; reseed?: string }, log?: WarnLog): Promise<boolean> {
  const raw = await redis.hget(keys.members, region);
  if (raw === null) return false;
  const m = parse(region, raw);
  await writeMember(redis, keys, region, { state: patch.state, joined_at: m.joinedAt ?? undefined, redis_url: m.redisUrl, reseed: patch.reseed }, false, log);
  return true;
}

/**
 * The end of a re-seed: marks the region active in one Redis only if its entry is still the one the
 * re-seed wrote (joining, with its token). A relay that found the region's inbox trimmed past changes it
 * had not applied marks it joining again meanwhile (relay-confirm.ts markBehind), which clears the token: then
 * the copy may lack those changes, the region stays joining, and this answers false.
 */
export async function activateAfterReseed(redis: Redis, keys: ReplicationKeys, region: string, token: string): Promise<boolean> {
  const raw = await redis.hget(keys.members, region);
  if (raw === null) return false;
  const m = parse(region, raw);
  if (m.state !== 'joining' || m.reseed !== token) return false;
  const active = encode({ state: 'active', joined_at: m.joinedAt ?? undefined, redis_url: m.redisUrl });
  return replaceRaw(redis, keys, region, raw, active);
}
