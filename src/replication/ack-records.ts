/**
 * The ack records of the tracker (see tracker.ts): their values, how a region records in the Redis of a
 * change's origin that it applied, superseded or parked the change, and how they are read back.
 */
import { luaScript, type Redis, type ReplicationKeys } from '../redis';
import { checkAck, readAck, signAck, signAnnouncement, untaggedAck, type AckSigning } from './ack-auth';
import type { EventAuth } from './event-auth';

/**
 * Default lifetime of an ack record. The origin's relay shortens it to the outbox retention once the change
 * is confirmed; this TTL is the backstop for changes never confirmed (their origin gone, say).
 */
export const ACK_TTL_SECONDS = 24 * 3600;

/** The ack value of a region that parked the change instead of applying it (parseAck reads it as no ack). */
export const PARKED_PREFIX = 'parked ';

/** Hash field holding the change's organization (not a region: region ids have no '~'). */
export const ORG_FIELD = '~org';

/** The state that won over a superseded change, as recorded in an ack. */
export interface AckWinner {
  table: string;
  key: string;
  version: string;
  /** The region that wrote the winning version (the version's suffix). */
  originRegion: string;
}

export type AckOutcome = { outcome: 'applied' } | { outcome: 'superseded'; winner: AckWinner };

export interface Ack {
  outcome: 'applied' | 'superseded';
  at: string;
  winner?: AckWinner;
}

export function formatAck(o: AckOutcome, at: string): string {
  return o.outcome === 'applied' ? `applied@${at}` : `superseded:${o.winner.table}:${o.winner.key}:${o.winner.version}@${at}`;
}

/**
 * Reads an ack value; null for a value that is not an applied/superseded ack (e.g. a parked one). A signed
 * value (ack-auth.ts) reads as its untagged value: its tag is not checked here.
 */
export function parseAck(tagged: string): Ack | null {
  const atSign = tagged.lastIndexOf('@');
  const value = untaggedAck(tagged, atSign);
  if (atSign < 0) return /^\d{4}-/.test(value) ? { outcome: 'applied', at: value } : null;
  const head = value.slice(0, atSign);
  const at = value.slice(atSign + 1);
  if (head === 'applied') return { outcome: 'applied', at };
  const [kind, table = '', key = '', version = ''] = head.split(':');
  if (kind !== 'superseded') return null;
  return { outcome: 'superseded', at, winner: { table, key, version, originRegion: version.split('.').slice(2).join('.') } };
}

/** Which change an ack record is of, and the signing its values are read under (readAck); without it, unchecked. */
export interface AckCheck {
  changeId: string;
  signing: AckSigning | null | undefined;
}

/** Whether `field`'s value counts under `check` (readAck: in `require` mode only when its signature holds). */
export function counts(check: AckCheck | undefined, field: string, value: string): boolean {
  return check === undefined || readAck(check.signing, check.changeId, field, value) !== 'refused';
}

/**
 * The change's organization as its origin recorded it beside the acks (signed like an ack value, then read
 * untagged); null when none counts (`check`): a planted one must not let an organization read the change.
 */
export function orgOf(hash: Record<string, string> | null | undefined, check?: AckCheck): string | null {
  const org = hash?.[ORG_FIELD];
  return org === undefined || !counts(check, ORG_FIELD, org) ? null : untaggedAck(org);
}

/** The applied/superseded acks of a change by region that count (`check`); other fields left out. */
export function acksOf(hash: Record<string, string>, check?: AckCheck): Map<string, Ack> {
  const acks = new Map<string, Ack>();
  for (const [field, value] of Object.entries(hash)) {
    const ack = field === ORG_FIELD ? null : parseAck(value);
    if (ack && counts(check, field, value)) acks.set(field, ack);
  }
  return acks;
}

/** What writing acks takes of the tracker (tracker.ts): their lifetime, how they are signed, where repairs are told. */
export interface AckWriter {
  readonly ackTtlSeconds: number;
  /** Null or `off`: values and announcements are written unsigned, as before signing. */
  readonly signing: AckSigning | null;
  /** `changeIds`' values in `region`'s field, kept by a first judgement but not verified, replaced (see repairKept). */
  repaired(region: string, changeIds: readonly string[]): void;
}

/** The key `writer` signs with, or null when it writes unsigned (`off`, or no signing). */
const signingAuth = (writer: AckWriter): EventAuth | null => (writer.signing?.signs ? writer.signing.auth : null);

export interface AckOptions {
  /** Per change id; changes left out were applied. */
  outcomes?: ReadonlyMap<string, AckOutcome>;
  /**
   * Per change id: its organization, recorded once by the origin. A Map: an object keyed by change ids would
   * give V8 a new hidden class for every id it adds.
   */
  orgs?: ReadonlyMap<string, string>;
  /** Per change id: when it was applied (ISO); changes left out, now. An ack sent again keeps its first time. */
  at?: ReadonlyMap<string, string>;
}

/**
 * Records in `redis` (the Redis of the changes' origin, whose tracker waits on them) that `region` has
 * applied these changes of `origin` (held, unless `opts.outcomes` says superseded), and announces it on
 * the origin's channel there. Signed when `writer.signing` signs (ack-auth.ts): each value, each
 * organization (its field's name as the region) and the announcement.
 */
export async function recordAcks(
  redis: Redis,
  keys: ReplicationKeys,
  writer: AckWriter,
  { origin, region }: { origin: string; region: string },
  changeIds: readonly string[],
  opts: AckOptions = {},
): Promise<void> {
  if (changeIds.length === 0) return;
  const auth = signingAuth(writer);
  const at = new Date().toISOString();
  const lost: Record<string, string> = {};
  const perChange: string[] = [];
  for (const id of changeIds) {
    const value = formatAck(opts.outcomes?.get(id) ?? { outcome: 'applied' }, opts.at?.get(id) ?? at);
    // Untagged in the announcement: its signature covers the whole body.
    if (!value.startsWith('applied')) lost[id] = value;
    const org = opts.orgs?.get(id);
    if (auth) perChange.push(signAck(auth, id, region, value), org === undefined ? '' : signAck(auth, id, ORG_FIELD, org));
    else perChange.push(value, org ?? '');
  }
  // Superseded outcomes travel with the announcement, so a waiter answers without reading them back (but in
  // `require` mode: announcedAck, tracker.ts).
  const body = JSON.stringify(Object.keys(lost).length ? { region, ids: changeIds, lost } : { region, ids: changeIds });
  const announcement = auth ? signAnnouncement(auth, body) : body;
  const ackKeys = changeIds.map((id) => keys.ack(id));
  const kept = (await runRecordAcks(redis, ackKeys, [writer.ackTtlSeconds, region, ORG_FIELD, keys.ackChannel(origin), announcement, ...perChange])) as (number | string)[];
  if (auth === null || kept.length === 0) return;
  const seen: Kept[] = [];
  for (let k = 0; k < kept.length; k += 2) {
    const i = (kept[k] as number) - 1;
    seen.push({ changeId: changeIds[i] as string, key: ackKeys[i] as string, had: String(kept[k + 1]), own: perChange[2 * i] as string });
  }
  await repairKept(redis, writer, region, seen);
}

/**
 * recordAcks in one command: per change (KEYS[i]) its ack field, the organization's when given, and the
 * record's TTL; then the announcement. An "applied" ack is never replaced by a "superseded" one, nor
 * announced as lost: a region's first judgement stands (a change applied again after a newer state of its
 * row arrived was held there). Such a kept ack is dropped from the plain announcement's `lost`; a signed
 * announcement (not JSON: it starts `s1 `) cannot be rewritten here, without the key, so it gets a last line
 * instead, a JSON object of change id → the kept value as stored (ack-auth.ts). Returns each kept ack's
 * index (from 1) and value, for recordAcks to check (repairKept).
 * As a pipeline this was three commands per change, each an object and a reply in the client: ~12 % of an
 * applying region's main thread, and a third of its allocations.
 * ARGV: ttl, region, the org field's name, the channel, the announcement (its ids in the order of KEYS),
 * then a value and an org per key.
 */
const RECORD_ACKS = `local ttl, region, orgField = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local kept = {}
for i, key in ipairs(KEYS) do
  local value, org = ARGV[4 + 2 * i], ARGV[5 + 2 * i]
  if string.sub(value, 1, 7) ~= 'applied' then
    local had = redis.call('HGET', key, region)
    if had and string.sub(had, 1, 7) == 'applied' then
      value = had
      kept[#kept + 1] = i
      kept[#kept + 1] = had
    end
  end
  if org ~= '' then redis.call('HSET', key, region, value, orgField, org) else redis.call('HSET', key, region, value) end
  redis.call('EXPIRE', key, ttl)
end
local announcement = ARGV[5]
if #kept > 0 then
  if string.sub(announcement, 1, 1) == '{' then
    local a = cjson.decode(announcement)
    for k = 1, #kept, 2 do a.lost[a.ids[kept[k]]] = nil end
    announcement = cjson.encode(a)
  else
    local ids = cjson.decode(string.sub(announcement, string.find(announcement, '\\n', 1, true) + 1)).ids
    local line = {}
    for k = 1, #kept, 2 do line[ids[kept[k]]] = kept[k + 1] end
    announcement = announcement .. '\\n' .. cjson.encode(line)
  end
end
redis.call('PUBLISH', ARGV[4], announcement)
return kept`;

/** Runs RECORD_ACKS by its hash; a Redis that does not have it yet (new, restarted) gets it whole. */
const runRecordAcks = luaScript(RECORD_ACKS);

/**
 * Records in the origin's Redis that `region` parked these changes (it could not apply them): the origin's
 * relay counts the region as done, so it neither republishes them nor keeps them in the inbox, but no
 * waiter counts a parked change as applied (the value says "parked", and nothing is announced). A
 * judgement already recorded stands (HSETNX): another process of the region may have applied the change
 * meanwhile (the retry of parked events), and that "applied" must not turn back into "parked". Signing, it
 * also reads back what stands, to check it (repairKept).
 */
export async function recordParked(redis: Redis, keys: ReplicationKeys, writer: AckWriter, region: string, changeIds: readonly string[]): Promise<void> {
  if (changeIds.length === 0) return;
  const auth = signingAuth(writer);
  const value = `${PARKED_PREFIX}${new Date().toISOString()}`;
  const pipe = redis.pipeline();
  const own: string[] = [];
  for (const id of changeIds) {
    const key = keys.ack(id);
    const signed = auth ? signAck(auth, id, region, value) : value;
    pipe.hsetnx(key, region, signed);
    if (auth) {
      pipe.hget(key, region);
      own.push(signed);
    }
    pipe.expire(key, writer.ackTtlSeconds);
  }
  const results = await execAll(pipe);
  if (auth === null) return;
  const seen: Kept[] = [];
  changeIds.forEach((changeId, i) => {
    const had = results[3 * i + 1]?.[1];
    const signed = own[i] as string;
    if (typeof had === 'string' && had !== signed) seen.push({ changeId, key: keys.ack(changeId), had, own: signed });
  });
  await repairKept(redis, writer, region, seen);
}

/** A value the ack scripts kept in a region's field (`had`), and what the region wrote in its place (`own`). */
interface Kept {
  changeId: string;
  key: string;
  had: string;
  own: string;
}

/**
 * Replaces the kept values that are not this region's to keep with its own signed judgement (`own`), each
 * only if its field still holds the value seen. Not verified, a kept value would stand for ever (a first
 * judgement stands), and an origin that requires signatures would ignore it and deliver the change again,
 * for ever: a Redis writer's planted `applied`, say. In `sign` mode an unsigned value stands: it may be this
 * region's own judgement from before it signed (a rolling upgrade), and readers in that mode accept it;
 * one under a bad tag or an unknown key goes. In `require` mode every value that does not verify goes.
 */
async function repairKept(redis: Redis, writer: AckWriter, region: string, seen: readonly Kept[]): Promise<void> {
  const signing = writer.signing;
  if (!signing || seen.length === 0) return;
  const planted = seen.filter((k) => {
    const { verdict } = checkAck(signing.auth, k.changeId, region, k.had);
    return verdict !== 'signed' && (verdict !== 'unsigned' || signing.requires);
  });
  if (planted.length === 0) return;
  const replaced = (await runReplaceSeen(redis, planted.map((k) => k.key), [region, ...planted.flatMap((k) => [k.had, k.own])])) as number[];
  if (replaced.length) writer.repaired(region, replaced.map((i) => (planted[i - 1] as Kept).changeId));
}

/** Per key (KEYS[i]): the field ARGV[1] set to ARGV[2i + 1] if it still holds exactly ARGV[2i]. Returns the i replaced. */
const runReplaceSeen = luaScript(`local replaced = {}
for i, key in ipairs(KEYS) do
  if redis.call('HGET', key, ARGV[1]) == ARGV[2 * i] then
    redis.call('HSET', key, ARGV[1], ARGV[2 * i + 1])
    replaced[#replaced + 1] = i
  end
end
return replaced`);

/**
 * Records in the origin's Redis that `region` applied these changes after parking them (their acks are
 * recorded first): the origin's relay copies the ack into the delivery it confirmed on the parked ack
 * (Relay.unparked), which is what its status reads once its Redis lost the ack records.
 */
export async function recordUnparked(redis: Redis, keys: ReplicationKeys, origin: string, region: string, changeIds: readonly string[], ttlSeconds = ACK_TTL_SECONDS): Promise<void> {
  if (changeIds.length === 0) return;
  const pipe = redis.pipeline();
  pipe.sadd(keys.unparked(origin), ...changeIds.map((id) => `${id} ${region}`));
  pipe.expire(keys.unparked(origin), ttlSeconds);
  await execAll(pipe);
}

/** Runs the pipeline; throws its first command's error, if any. */
async function execAll(pipe: ReturnType<Redis['pipeline']>): Promise<[Error | null, unknown][]> {
  const results = (await pipe.exec()) ?? [];
  const failed = results.find(([err]) => err);
  if (failed?.[0]) throw failed[0];
  return results;
}
