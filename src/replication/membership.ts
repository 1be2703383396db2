/**
 * Deployment-wide membership: the regions every process counts for all_regions waits, outbox confirmation
 * (and so deletion) and stream trimming, instead of the region list of its own config file. While a region
 * is being added, the other regions still run the old config; they learn of the new one from here.
 *
 * The record is a Redis hash `<prefix>{repl}:members`: region -> JSON {state, since, joined_at}, plus the
 * field `~generation` (bumped on every change, announced on `<prefix>{repl}:members-changed`).
 * - state: `joining` (it joined a running deployment and has not been seeded yet) or `active`.
 * - since: the stream id its consumer group started after, when it joined a running deployment (null:
 *   it reads, or was moved to read, the stream from where its group stands and needs every change).
 *   Changes published at or before `since` reach it by the re-seed, not the stream, so the origins do not
 *   wait for its ack of them. `npm run reseed` moves the group and sets `since` to the new position.
 * The members a process uses are the record's regions united with its configured regions: membership never
 * shrinks below the config, and a config difference never removes a region. A region leaves only by the
 * explicit admin command (`npm run members -- remove <region>`), which also destroys its consumer group.
 * Each process caches the members, re-reads them every second and on an announcement, and keeps the last
 * known members while Redis is down (local_region writes never wait for this). The relay re-reads them
 * fresh before it confirms and before it trims.
 */
import type { Logger } from '../logger';
import type { Redis, ReplicationKeys } from '../redis';
import { groupInfo, streamBounds } from './stream';

export type MemberState = 'joining' | 'active';

export interface Member {
  region: string;
  state: MemberState;
  /** Changes at or before this stream id do not need this member's ack (it gets them by the re-seed). */
  since: string | null;
  joinedAt: string | null;
  /** False for a region known only from this process's config (not yet in the record). */
  registered: boolean;
}

const GENERATION = '~generation';

interface Stored {
  state?: string;
  since?: string | null;
  joined_at?: string;
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
    since: typeof v.since === 'string' && /^\d+-\d+$/.test(v.since) ? v.since : null,
    joinedAt: typeof v.joined_at === 'string' ? v.joined_at : null,
    registered: true,
  };
}

/** The record as stored: members by region, and its generation. */
export async function readMembers(redis: Redis, keys: ReplicationKeys): Promise<{ members: Map<string, Member>; generation: number }> {
  const hash = await redis.hgetall(keys.members);
  const members = new Map<string, Member>();
  for (const [field, value] of Object.entries(hash)) if (field !== GENERATION) members.set(field, parse(field, value));
  return { members, generation: Number(hash[GENERATION] ?? 0) };
}

/** Writes (or, with `onlyIfAbsent`, adds) a member's entry, bumps the generation and announces it. */
export async function writeMember(
  redis: Redis,
  keys: ReplicationKeys,
  region: string,
  entry: { state: MemberState; since: string | null; joined_at?: string },
  onlyIfAbsent = false,
): Promise<boolean> {
  const value = JSON.stringify({ state: entry.state, since: entry.since, joined_at: entry.joined_at ?? new Date().toISOString() });
  const written = onlyIfAbsent ? (await redis.hsetnx(keys.members, region, value)) === 1 : (await redis.hset(keys.members, region, value), true);
  if (written) await announce(redis, keys);
  return written;
}

/** Changes a registered member's state and/or `since` (keeping the rest); false when it is not a member. */
export async function updateMember(redis: Redis, keys: ReplicationKeys, region: string, patch: { state?: MemberState; since?: string | null }): Promise<boolean> {
  const raw = await redis.hget(keys.members, region);
  if (raw === null) return false;
  const m = parse(region, raw);
  await writeMember(redis, keys, region, {
    state: patch.state ?? m.state,
    since: patch.since === undefined ? m.since : patch.since,
    joined_at: m.joinedAt ?? undefined,
  });
  return true;
}

/**
 * Removes a region from the deployment: its entry and its consumer group (so it no longer holds back the
 * trim). Stop the region and take it out of every config file first: a running region registers itself
 * again, and a config that names it keeps counting it.
 */
export async function removeMember(redis: Redis, keys: ReplicationKeys, region: string): Promise<{ removed: boolean; groupDestroyed: boolean }> {
  const removed = (await redis.hdel(keys.members, region)) === 1;
  await redis.hdel(keys.watermarks, region);
  let groupDestroyed = false;
  try {
    groupDestroyed = Number(await redis.xgroup('DESTROY', keys.stream, region)) === 1;
  } catch (err) {
    if (!/no such key|requires the key to exist/i.test(String((err as Error).message))) throw err;
  }
  await announce(redis, keys);
  return { removed, groupDestroyed };
}

async function announce(redis: Redis, keys: ReplicationKeys): Promise<void> {
  const generation = await redis.hincrby(keys.members, GENERATION, 1);
  await redis.publish(keys.membersChannel, JSON.stringify({ members: generation }));
}

export interface MembershipDeps {
  redis: Redis;
  /** The process's subscriber connection (shared with the tracker; messages are told apart by channel). */
  subscriber: Redis;
  keys: ReplicationKeys;
  region: string;
  /** The regions of this process's config file. */
  configured: readonly string[];
  log: Logger;
  refreshMs?: number;
}

export class Membership {
  private known = new Map<string, Member>();
  private timer: NodeJS.Timeout | null = null;
  private joined = false;
  generation = 0;

  constructor(private readonly d: MembershipDeps) {
    this.known = this.union(new Map());
  }

  /** Region ids of the members (configured regions first, in config order; then the others, sorted). */
  regions(): string[] {
    return [...this.known.keys()];
  }

  members(): Member[] {
    return [...this.known.values()];
  }

  private union(stored: Map<string, Member>): Map<string, Member> {
    const out = new Map<string, Member>();
    for (const r of this.d.configured) out.set(r, stored.get(r) ?? { region: r, state: 'active', since: null, joinedAt: null, registered: false });
    for (const r of [...stored.keys()].sort()) if (!out.has(r)) out.set(r, stored.get(r) as Member);
    return out;
  }

  /** Reads the record now; on a Redis error keeps (and returns) the last known members. */
  async refresh(): Promise<Member[]> {
    try {
      const { members, generation } = await readMembers(this.d.redis, this.d.keys);
      // Redis lost the record (restarted empty): register again.
      if (this.joined && !members.has(this.d.region)) {
        await writeMember(this.d.redis, this.d.keys, this.d.region, { state: 'active', since: null }, true);
        return this.refresh();
      }
      this.generation = generation;
      this.known = this.union(members);
    } catch (err) {
      this.d.log.debug({ err: (err as Error).message }, 'membership refresh failed; using the last known members');
    }
    return this.members();
  }

  /**
   * Registers this region and makes sure its consumer group exists. Joining a running deployment (other
   * members registered, the stream holds changes, no group of ours yet): register as `joining` FIRST, then
   * create the group at the stream's current end and record that position as `since`. Every relay reads
   * the members after it selects the rows to confirm, so a change it confirms without our ack was published
   * before we registered, hence at or before `since`; and the trim never takes what a group has not read.
   * Otherwise (first start of a deployment, restart) the group is created at 0 if missing, as before.
   */
  async join(): Promise<void> {
    const { redis, keys, region, log } = this.d;
    const { members } = await readMembers(redis, keys);
    const groups = await groupInfo(redis, keys).catch((err: Error) => {
      if (/no such key/i.test(err.message)) return [];
      throw err;
    });
    const hasGroup = groups.some((g) => g.name === region);
    const bounds = await streamBounds(redis, keys);
    const others = [...members.keys()].some((r) => r !== region);
    if (!members.has(region) && !hasGroup && others && bounds && bounds.lastGeneratedId !== '0-0') {
      await writeMember(redis, keys, region, { state: 'joining', since: null });
      let since: string | null = null;
      try {
        await redis.xgroup('CREATE', keys.stream, region, '$', 'MKSTREAM');
        since = (await groupInfo(redis, keys)).find((g) => g.name === region)?.lastDeliveredId ?? null;
      } catch (err) {
        if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
      }
      if (since) await updateMember(redis, keys, region, { since });
      log.warn({ region, since }, 'joined a running deployment: re-seed this region from a peer (npm run reseed), see README "Adding a region"');
    } else {
      await writeMember(redis, keys, region, { state: 'active', since: null }, true);
    }
    this.joined = true;
    await this.refresh();
  }

  /** Refreshes every `refreshMs` and on each announcement. */
  start(): void {
    const { subscriber, keys } = this.d;
    subscriber.on('message', (channel: string) => {
      if (channel === keys.membersChannel) void this.refresh();
    });
    const subscribe = () => void subscriber.subscribe(keys.membersChannel).catch(() => undefined);
    subscriber.on('ready', subscribe);
    if (subscriber.status === 'ready') subscribe();
    const tick = () => {
      void this.refresh().finally(() => {
        if (this.timer) this.timer = setTimeout(tick, this.d.refreshMs ?? 1000).unref();
      });
    };
    this.timer = setTimeout(tick, 0).unref();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

/** Whether `member` must ack a change published at `streamId` before its origin confirms it. */
export function mustAck(member: Pick<Member, 'since'>, streamId: string | null, compare: (a: string, b: string) => number): boolean {
  return member.since === null || streamId === null || compare(streamId, member.since) > 0;
}
