/**
 * The outbox relay's trims of the other members' inboxes (relay.ts), and the marks of each inbox's
 * incarnation they record, which tell a delivery trimmed by an inbox's cap from one lost with its Redis.
 */
import type { ReplicationKeys } from '../redis';
import { eachRegion, type RedisLinks } from './links';
import { behindTrim, groupFloor, groupInfo, streamBounds, type StreamBounds } from './stream';

/** How often the inboxes are trimmed (config streamTrimIntervalMs); each trim also records their incarnations. */
const DEFAULT_TRIM_INTERVAL_MS = 30_000;

export interface InboxTrimsDeps {
  links: RedisLinks;
  keys: ReplicationKeys;
  /** How often trim() runs (default DEFAULT_TRIM_INTERVAL_MS). */
  trimIntervalMs?: number;
}

export class InboxTrims {
  private lastTrim = 0;

  /** `destinations`: the other members, read fresh (OutboxRelay's). */
  constructor(
    private readonly d: InboxTrimsDeps,
    private readonly destinations: () => Promise<string[]>,
  ) {}

  /**
   * Records (once per incarnation of a destination's inbox) the first id it holds; returns the record (null
   * while there is none). An empty inbox is not marked: one its Redis recreated empty after losing its data
   * (the applier's MKSTREAM) has no id of its own yet, and a mark below its first entry would take every
   * entry the old incarnation lost for one the cap trimmed (none would be delivered again).
   */
  async markBorn(dest: string, bounds: StreamBounds | null): Promise<string | null> {
    const { links, keys } = this.d;
    if (!bounds) return null;
    const redis = links.to(dest);
    if (bounds.firstId) await redis.set(keys.inboxBorn(dest), bounds.firstId, 'NX');
    return redis.get(keys.inboxBorn(dest));
  }

  /**
   * `dest`'s group: how far it has read and acknowledged (`readBelow`: its floor, the oldest pending entry,
   * else the last one delivered, which only moves forward; null before it has read anything), and whether
   * a trim took entries it had not read (`behind`: it fell behind the cap, see behindTrim). A pending entry
   * the cap trimmed does not make it behind here: the consumer that read it holds its event, and once it
   * leaves the pending list unacked it is delivered again once (relay-confirm.ts). Counted behind, every
   * other delivery gone unacked (one refused there) was taken for trimmed unread, and the region marked.
   */
  async groupState(dest: string, bounds: StreamBounds | null): Promise<{ readBelow: string | null; behind: boolean }> {
    if (!bounds) return { readBelow: null, behind: false }; // no inbox (XINFO GROUPS would fail)
    const { links, keys } = this.d;
    const redis = links.to(dest);
    const stream = keys.inbox(dest);
    const g = (await groupInfo(redis, stream)).find((x) => x.name === dest);
    const floor = g ? await groupFloor(redis, stream, g) : null;
    const id = floor ? (floor.oldestPending ?? floor.lastDelivered) : null;
    return { readBelow: id === '0-0' ? null : id, behind: g !== undefined && floor !== null && behindTrim(g, { ...floor, oldestPending: null }, bounds) };
  }

  /** See keys.acksBornAt: set (if absent) to the last id of `dest`'s inbox now, and read. */
  async acksBornAt(dest: string, bounds: StreamBounds | null): Promise<string | null> {
    const { links, keys } = this.d;
    if (bounds) await links.own.set(keys.acksBornAt(dest), bounds.lastGeneratedId, 'NX');
    return links.own.get(keys.acksBornAt(dest));
  }

  /** Trims each destination's inbox below the oldest entry its region still needs (its group's floor). */
  async trim(force = false): Promise<number> {
    if (!force && Date.now() - this.lastTrim < (this.d.trimIntervalMs ?? DEFAULT_TRIM_INTERVAL_MS)) return 0;
    this.lastTrim = Date.now();
    const res = await eachRegion(await this.destinations(), (dest) => this.trimInbox(dest));
    let total = 0;
    for (const r of res.values()) if (r.ok) total += r.value;
    return total;
  }

  private async trimInbox(dest: string): Promise<number> {
    const { links, keys } = this.d;
    const redis = links.to(dest);
    const stream = keys.inbox(dest);
    const bounds = await streamBounds(redis, stream);
    if (!bounds) return 0;
    await this.markBorn(dest, bounds);
    await this.acksBornAt(dest, bounds);
    const needed = (await this.groupState(dest, bounds)).readBelow;
    if (needed === null) return 0;
    return Number(await redis.call('XTRIM', stream, 'MINID', needed));
  }
}
