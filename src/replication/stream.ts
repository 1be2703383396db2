/**
 * Small helpers over a region's inbox stream (the changes delivered to it, in its own Redis), shared by
 * the applier, the relay and the admin status. Each inbox has one consumer group: its region's.
 */
import { luaScript, type Redis } from '../redis';

export type StreamEntry = [id: string, fields: string[]];

export function compareStreamIds(a: string, b: string): number {
  const [am, as] = a.split('-').map((x) => BigInt(x));
  const [bm, bs] = b.split('-').map((x) => BigInt(x));
  if (am !== bm) return am < bm ? -1 : 1;
  if (as !== bs) return as < bs ? -1 : 1;
  return 0;
}

/** Creates the region's consumer group on its inbox, reading from the start, unless it exists. */
export async function ensureGroup(redis: Redis, stream: string, region: string): Promise<void> {
  try {
    await redis.xgroup('CREATE', stream, region, '0', 'MKSTREAM');
  } catch (err) {
    if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
  }
}

export interface GroupInfo {
  name: string;
  pending: number;
  lastDeliveredId: string;
  /** Entries not yet delivered to the group (Redis 7); null when Redis cannot tell. */
  lag: number | null;
  /** The group's logical read counter (Redis 7); null when Redis cannot tell. */
  entriesRead: number | null;
}

export async function groupInfo(redis: Redis, stream: string): Promise<GroupInfo[]> {
  const raw = (await redis.xinfo('GROUPS', stream)) as unknown[][];
  return raw.map((flat) => {
    const m = new Map<string, unknown>();
    for (let i = 0; i + 1 < flat.length; i += 2) m.set(String(flat[i]), flat[i + 1]);
    const lag = m.get('lag');
    const read = m.get('entries-read');
    return {
      name: String(m.get('name')),
      pending: Number(m.get('pending') ?? 0),
      lastDeliveredId: String(m.get('last-delivered-id') ?? '0-0'),
      lag: lag === null || lag === undefined ? null : Number(lag),
      entriesRead: read === null || read === undefined ? null : Number(read),
    };
  });
}

/**
 * For each id, whether the stream holds an entry of that id. In Redis, one script per batch of ids: an
 * XRANGE per id whose reply stays in Redis (the entry is still read there, into the script, but neither sent
 * nor parsed here). Looked up with XRANGE from here, the entries came back in full (a create's event is
 * ~9 KB, a pack up to 64 KB): the relay's lookups of long-unconfirmed deliveries, 2,000 per destination every
 * confirm round while a destination is down, were two thirds of Redis's time in the bench's creates, and the
 * region parsed every byte. An id Redis cannot look up (not a stream id, a key that is not a stream) answers
 * -1 and counts as held, as one lookup's error did before: nothing is delivered again on a misread.
 */
const HOLDS_ENTRIES = `
local held = {}
for i = 1, #ARGV do
  local r = redis.pcall('XRANGE', KEYS[1], ARGV[i], ARGV[i], 'COUNT', 1)
  if type(r) == 'table' and r.err == nil then held[i] = #r else held[i] = -1 end
end
return held`;
const runHoldsEntries = luaScript(HOLDS_ENTRIES);
/**
 * Ids per script run: the script holds the Redis for its whole run (a few ms for 250 ids of large entries),
 * and the other clients of that Redis (its applier, other origins' deliveries) wait meanwhile.
 */
const HOLDS_BATCH = 250;

export async function streamHolds(redis: Redis, stream: string, ids: readonly string[]): Promise<boolean[]> {
  // The events of a pack share its entry's id: each id is looked up once.
  const distinct = [...new Set(ids)];
  const held = new Map<string, boolean>();
  for (let i = 0; i < distinct.length; i += HOLDS_BATCH) {
    const batch = distinct.slice(i, i + HOLDS_BATCH);
    const res = await runHoldsEntries(redis, [stream], batch);
    if (!Array.isArray(res) || res.length !== batch.length) throw new Error(`unexpected answer to the inbox lookup of ${batch.length} ids`);
    batch.forEach((id, j) => held.set(id, res[j] !== 0));
  }
  return ids.map((id) => held.get(id) === true);
}

/**
 * For each id, whether it is in the group's pending list: read by a consumer of the group and not yet acked.
 * An entry a trim took while pending stays in that list until a consumer acks it (the one applying it, which
 * holds the event it read) or the group's next XAUTOCLAIM over it, or a restart's walk of its pending
 * entries, finds it gone (Redis 7 drops it from the list then; inbox-reads.ts). None without the stream or group.
 */
export async function pendingIds(redis: Redis, stream: string, group: string, ids: readonly string[]): Promise<boolean[]> {
  const distinct = [...new Set(ids)];
  if (distinct.length === 0) return [];
  const pipe = redis.pipeline();
  for (const id of distinct) pipe.xpending(stream, group, id, id, 1);
  const res = (await pipe.exec()) ?? [];
  const pending = new Set<string>();
  distinct.forEach((id, i) => {
    const [err, reply] = res[i] ?? [new Error('missing reply')];
    // No such stream or group (a Redis that lost its data, its applier not back yet): nothing is pending.
    if (err && !String(err.message).includes('NOGROUP')) throw err;
    if (!err && Array.isArray(reply) && reply.length > 0) pending.add(id);
  });
  return ids.map((id) => pending.has(id));
}

/** Default cap of the change stream (XADD MAXLEN ~): about 1,000,000 entries of ~1 kB, some 1 GB. */
export const DEFAULT_STREAM_MAX_LENGTH = 1_000_000;
/** Cap of the dead-letter stream. */
export const DEAD_LETTER_MAX_LENGTH = 10_000;

export interface StreamBounds {
  length: number;
  /** The oldest entry still in the stream (null when empty). */
  firstId: string | null;
  lastGeneratedId: string;
  entriesAdded: number;
}

/** Where the stream begins and ends now (null when there is no stream). */
export async function streamBounds(redis: Redis, stream: string): Promise<StreamBounds | null> {
  let flat: unknown[];
  try {
    flat = (await redis.xinfo('STREAM', stream)) as unknown[];
  } catch (err) {
    if (/no such key/i.test(String((err as Error).message))) return null;
    throw err;
  }
  const m = new Map<string, unknown>();
  for (let i = 0; i + 1 < flat.length; i += 2) m.set(String(flat[i]), flat[i + 1]);
  const first = m.get('first-entry');
  return {
    length: Number(m.get('length') ?? 0),
    firstId: Array.isArray(first) ? String(first[0]) : null,
    lastGeneratedId: String(m.get('last-generated-id') ?? '0-0'),
    entriesAdded: Number(m.get('entries-added') ?? 0),
  };
}

/**
 * Entries of the stream not yet delivered to the group; null only when Redis cannot tell and the stream's
 * bounds are unknown. Redis 7.0's group `lag` counts entries a trim took before the group read them as still
 * to deliver, for good (its read counter adds only what the group reads): a region re-seeded after falling
 * behind the cap read as hundreds of entries behind with nothing left to read. So a group that has read the
 * newest entry has 0, and no group has more undelivered than the stream holds. Redis answers no `lag` at all
 * once an entry past the group's position was deleted (XDEL; see undeliveredIsBound): the stream's length
 * is then the answer, an upper bound, rather than nothing.
 */
export function undelivered(g: GroupInfo, b: StreamBounds | null): number | null {
  if (b && compareStreamIds(g.lastDeliveredId, b.lastGeneratedId) >= 0) return 0;
  if (g.lag === null) return b ? b.length : null;
  return b ? Math.min(g.lag, b.length) : g.lag;
}

/** Whether undelivered() is an upper bound (the stream's length standing in for a `lag` Redis could not count), not a count. */
export function undeliveredIsBound(g: GroupInfo, b: StreamBounds | null): boolean {
  return g.lag === null && b !== null && compareStreamIds(g.lastDeliveredId, b.lastGeneratedId) < 0;
}

/** The group's last delivered id and its oldest pending entry (null when none pending). */
export async function groupFloor(redis: Redis, stream: string, g: GroupInfo): Promise<{ lastDelivered: string; oldestPending: string | null }> {
  if (g.pending === 0) return { lastDelivered: g.lastDeliveredId, oldestPending: null };
  const summary = (await redis.xpending(stream, g.name)) as [number, string | null, string | null, unknown];
  return { lastDelivered: g.lastDeliveredId, oldestPending: summary[1] };
}

/**
 * Whether a trim took entries the group had not read or acked (it fell behind the stream cap, or was
 * created after the history it needs was trimmed): it then needs a re-seed (npm run reseed). Redis 7.0
 * does not record trims in max-deleted-entry-id, so this compares with the oldest entry left: a pending
 * entry older than it is gone; a group positioned before it lost the entries in between, which the
 * group's read counter tells when Redis knows it (conservatively yes when it does not).
 */
export function behindTrim(g: GroupInfo, floor: { lastDelivered: string; oldestPending: string | null }, b: StreamBounds | null): boolean {
  if (!b || b.entriesAdded <= b.length) return false;
  const before = (id: string) => (b.firstId ? compareStreamIds(id, b.firstId) < 0 : compareStreamIds(id, b.lastGeneratedId) < 0);
  if (floor.oldestPending !== null && before(floor.oldestPending)) return true;
  if (!before(floor.lastDelivered)) return false;
  if (b.firstId && floor.lastDelivered === previousStreamId(b.firstId)) return false;
  return g.entriesRead === null || b.entriesAdded - g.entriesRead > b.length;
}

/** The stream id just before `id` (for XGROUP SETID: the next read starts at `id`). */
export function previousStreamId(id: string): string {
  const [ms = 0n, seq = 0n] = id.split('-').map((x) => BigInt(x));
  if (seq > 0n) return `${ms}-${seq - 1n}`;
  return ms > 0n ? `${ms - 1n}-18446744073709551615` : '0-0';
}
