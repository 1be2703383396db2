/**
 * The ack records of the tracker (see tracker.ts): their values, how a region records in the Redis of a
 * change's origin that it applied, superseded or parked the change, and how they are read back.
 */
import { luaScript, type Redis, type ReplicationKeys } from '../redis';
import { readAck, untaggedAck, type AckSigning } from './ack-auth';

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
 * the origin's channel there.
 */
export async function recordAcks(
  redis: Redis,
  keys: ReplicationKeys,
  { origin, region }: { origin: string; region: string },
  changeIds: readonly string[],
  opts: AckOptions = {},
  ttlSeconds = ACK_TTL_SECONDS,
): Promise<void> {
  if (changeIds.length === 0) return;
  const at = new Date().toISOString();
  const lost: Record<string, string> = {};
  const perChange: string[] = [];
  for (const id of changeIds) {
    const value = formatAck(opts.outcomes?.get(id) ?? { outcome: 'applied' }, opts.at?.get(id) ?? at);
    if (!value.startsWith('applied')) lost[id] = value;
    perChange.push(value, opts.orgs?.get(id) ?? '');
  }
  // Superseded outcomes travel with the announcement, so a waiter answers without reading them back.
  const announcement = JSON.stringify(Object.keys(lost).length ? { region, ids: changeIds, lost } : { region, ids: changeIds });
  await runRecordAcks(redis, changeIds.map((id) => keys.ack(id)), [ttlSeconds, region, ORG_FIELD, keys.ackChannel(origin), announcement, ...perChange]);
}

/**
 * recordAcks in one command: per change (KEYS[i]) its ack field, the organization's when given, and the
 * record's TTL; then the announcement. An "applied" ack is never replaced by a "superseded" one, nor
 * announced as lost: a region's first judgement stands (a change applied again after a newer state of its
 * row arrived was held there). As a pipeline this was three commands per change, each an object and a reply
 * in the client: ~12 % of an applying region's main thread, and a third of its allocations.
 * ARGV: ttl, region, the org field's name, the channel, the announcement (its ids in the order of KEYS),
 * then a value and an org per key.
 */
const RECORD_ACKS = `local ttl, region, orgField = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local kept = nil
for i, key in ipairs(KEYS) do
  local value, org = ARGV[4 + 2 * i], ARGV[5 + 2 * i]
  if string.sub(value, 1, 7) ~= 'applied' then
    local had = redis.call('HGET', key, region)
    if had and string.sub(had, 1, 7) == 'applied' then
      value = had
      kept = kept or {}
      kept[#kept + 1] = i
    end
  end
  if org ~= '' then redis.call('HSET', key, region, value, orgField, org) else redis.call('HSET', key, region, value) end
  redis.call('EXPIRE', key, ttl)
end
local announcement = ARGV[5]
if kept then
  local a = cjson.decode(announcement)
  for _, i in ipairs(kept) do a.lost[a.ids[i]] = nil end
  announcement = cjson.encode(a)
end
redis.call('PUBLISH', ARGV[4], announcement)
return #KEYS`;

/** Runs RECORD_ACKS by its hash; a Redis that does not have it yet (new, restarted) gets it whole. */
const runRecordAcks = luaScript(RECORD_ACKS);

/**
 * Records in the origin's Redis that `region` parked these changes (it could not apply them): the origin's
 * relay counts the region as done, so it neither republishes them nor keeps them in the inbox, but no
 * waiter counts a parked change as applied (the value says "parked", and nothing is announced). A
 * judgement already recorded stands (HSETNX): another process of the region may have applied the change
 * meanwhile (the retry of parked events), and that "applied" must not turn back into "parked".
 */
export async function recordParked(redis: Redis, keys: ReplicationKeys, region: string, changeIds: readonly string[], ttlSeconds = ACK_TTL_SECONDS): Promise<void> {
  if (changeIds.length === 0) return;
  const value = `${PARKED_PREFIX}${new Date().toISOString()}`;
  const pipe = redis.pipeline();
  for (const id of changeIds) {
    pipe.hsetnx(keys.ack(id), region, value);
    pipe.expire(keys.ack(id), ttlSeconds);
  }
  await execAll(pipe);
}

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

async function execAll(pipe: ReturnType<Redis['pipeline']>): Promise<void> {
  const results = await pipe.exec();
  const failed = results?.find(([err]) => err);
  if (failed?.[0]) throw failed[0];
}
