/**
 * The entries this region does not apply: those whose signature does not hold (refused) and those it cannot
 * read (whole entries, or single events of packs). Each is copied to the capped dead-letter stream with this
 * region and its entry id; the refusals are also counted for /admin/replication and the metrics.
 */
import type { Logger } from '../logger';
import { luaScript, type ReplicationKeys } from '../redis';
import type { RefusalReason } from './event-auth';
import { claimedOrigin, namedChange } from './inbox-events';
import type { RedisLinks } from './links';
import type { Membership } from './membership';
import { DEAD_LETTER_MAX_LENGTH, type StreamEntry } from './stream';
import type { Tracker } from './tracker';
import { recordParked } from './ack-records';

/** An entry refused for its signature, as /admin/replication shows it. */
export interface RefusedEntry {
  streamId: string;
  /** The origin the entry claims (unauthenticated: it may be a lie), null when unreadable. */
  origin: string | null;
  reason: RefusalReason;
  kid: string | null;
  at: string;
}

/** How many refused entries /admin/replication lists (the newest). */
export const RECENT_REFUSED = 20;

/** An entry whose signature does not hold, with what the verification found. */
export type Refused = { entry: StreamEntry; reason: RefusalReason; kid: string | null; body: string | null };

/**
 * Moves one entry of a region's inbox to the dead-letter stream, in one step: copied (XADD) and XACKed only
 * while it is still pending in the group, else left alone (answers 0). Two consumers holding the same entry
 * (a rolling restart's two processes, a claim racing the first reader) each run it; the first moves it, the
 * second finds it acknowledged and copies nothing. The copy comes before the XACK: one that fails (the
 * dead-letter stream cannot be written) ends the script with the entry still pending, to be moved again.
 * KEYS: the inbox, the dead-letter stream; ARGV: the group, the entry id, the cap, then the copy's fields.
 */
const MOVE_ENTRY = `
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #pending == 0 then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
return redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])`;
const runMoveEntry = luaScript(MOVE_ENTRY);
/**
 * The most fields of a copy MOVE_ENTRY takes: Lua's stack holds 8,000 values, and unpack of more fails the
 * script at every attempt (the entry stayed pending, and every read that held it failed, the entries after it
 * with it). An entry's own fields are a few; more are anyone's who can write to the inbox.
 */
const MOVE_MAX_FIELDS = 4096;

export interface DeadLettersDeps {
  links: RedisLinks;
  keys: ReplicationKeys;
  tracker: Tracker;
  region: string;
  regions: readonly string[];
  membership?: Membership;
  log: Logger;
}

export class DeadLetters {
  /** Packs whose unreadable events this process dead-lettered (the newest 10,000): not again on a re-read. */
  private readonly deadLettered = new Set<string>();
  /** Entries refused for their signature since start, per reason, and the newest of them. */
  refusedEvents = 0;
  readonly refusedByReason: Partial<Record<RefusalReason, number>> = {};
  readonly recentRefused: RefusedEntry[] = [];

  /** `onRefused`: the observer of each refused entry (its claimed origin, a known region, else 'unknown', and the reason). */
  constructor(
    private readonly d: DeadLettersDeps,
    private readonly onRefused: (origin: string, reason: string) => void,
  ) {}

  /** Whether this process dead-lettered the unreadable events of this pack already. */
  hasPack(id: string): boolean {
    return this.deadLettered.has(id);
  }

  /**
   * Entries whose signature does not hold (missing, unknown key, altered): counted, remembered for
   * /admin/replication, and dead-lettered with the reason (XACKed, so they do not pin the trim floor).
   * Not parked: parked events live in Postgres and are retried by POST /admin/replication/parked/retry,
   * which does not verify again; and whoever can write to Redis could fill this region's database.
   * The dead-letter stream is capped. Nothing is acked to the tracker: the claimed origin may be a lie.
   * Each is copied, counted and logged once, by the consumer that moved it (MOVE_ENTRY: copied and XACKed in
   * one step while pending): an attempt that fails (the dead-letter stream cannot be written) leaves the
   * entry pending, to be read and refused again, and counted then; of two consumers holding it at once (the
   * processes of a rolling restart, a claim racing the first reader) the second finds it moved already.
   */
  async refuse(items: Refused[]): Promise<void> {
    const known = new Set<string>(this.d.membership?.regions() ?? this.d.regions);
    const at = new Date().toISOString();
    const moved: Refused[] = [];
    try {
      for (const item of items) {
        const { entry, reason, kid, body } = item;
        if (!(await this.move(entry[0], ['refused', reason, ...entry[1]]))) continue;
        moved.push(item);
        const origin = claimedOrigin(body);
        this.refusedEvents += 1;
        this.refusedByReason[reason] = (this.refusedByReason[reason] ?? 0) + 1;
        this.recentRefused.push({ streamId: entry[0], origin, reason, kid: kid === null ? null : kid.slice(0, 64), at });
        if (this.recentRefused.length > RECENT_REFUSED) this.recentRefused.shift();
        this.onRefused(origin !== null && known.has(origin) ? origin : 'unknown', reason);
      }
    } finally {
      // Those moved before an attempt failed are logged now: the retry skips them (no longer pending).
      if (moved.length) {
        this.d.log.error(
          { refused: moved.map((i) => ({ id: i.entry[0], reason: i.reason, kid: i.kid?.slice(0, 64) ?? null, origin: claimedOrigin(i.body) })) },
          'change events refused: their signature does not hold (see REPLICATION_KEYS); moved to the dead-letter stream',
        );
      }
    }
  }

  /**
   * Unreadable events of packs whose other events apply: each copied alone (its pack's id and index), once
   * per pack in this process; the pack is not XACKed here. One that names its change and a member as its
   * origin (the pack's MAC holds: it is what that origin sent) is acked to it as parked, so that its
   * relay confirms it instead of taking it, once the pack is trimmed, for lost to the inbox cap.
   */
  async fromPacks(packs: { id: string; items: { index: number; raw: string }[] }[]): Promise<void> {
    const { links, keys, region, log } = this.d;
    const members = new Set<string>(this.d.membership?.regions() ?? this.d.regions);
    const byOrigin = new Map<string, string[]>();
    for (const { id, items } of packs) {
      for (const i of items) {
        await this.copy(id, ['index', String(i.index), 'e', i.raw]);
        const named = namedChange(i.raw);
        if (named && members.has(named.origin)) byOrigin.set(named.origin, [...(byOrigin.get(named.origin) ?? []), named.changeId]);
      }
      this.deadLettered.add(id);
      if (this.deadLettered.size > 10_000) this.deadLettered.delete(this.deadLettered.values().next().value as string);
    }
    for (const [origin, ids] of byOrigin) {
      await recordParked(links.to(origin), keys, this.d.tracker, region, ids).catch((err: Error) =>
        log.warn({ err: err.message, origin, count: ids.length }, 'could not ack unreadable events to their origin as parked'));
    }
  }

  /**
   * Moves whole unreadable entries to the dead-letter stream (copied and XACKed in one step). Copied and
   * logged like the refusals: once, by the consumer that moved each, not at every attempt.
   */
  async entries(entries: StreamEntry[]): Promise<void> {
    const moved: string[] = [];
    try {
      for (const [id, fields] of entries) {
        if (await this.move(id, fields)) moved.push(id);
      }
    } finally {
      if (moved.length) this.d.log.error({ ids: moved }, 'unreadable change events moved to the dead-letter stream');
    }
  }

  /**
   * Moves an entry of this region's inbox to the dead-letter stream (MOVE_ENTRY), with this region and its
   * entry id; false when it was no longer pending (another consumer of the group moved or applied it). One with
   * more fields than the script takes (MOVE_MAX_FIELDS) is copied, then XACKed: moved by the consumer whose XACK
   * acknowledged it, though two consumers holding it at once may both copy it.
   */
  private async move(id: string, fields: string[]): Promise<boolean> {
    const { links, keys, region } = this.d;
    if (fields.length > MOVE_MAX_FIELDS) {
      await this.copy(id, fields);
      return Number(await links.own.xack(keys.inbox(region), region, id)) > 0;
    }
    const moved = await runMoveEntry(links.own, [keys.inbox(region), keys.deadLetter], [region, id, DEAD_LETTER_MAX_LENGTH, 'region', region, 'id', id, ...fields]);
    return Number(moved) > 0;
  }

  /** Copies a part of an inbox entry (or a whole one too large for MOVE_ENTRY) to the dead-letter stream, with this region and its entry id. */
  private async copy(id: string, fields: string[]): Promise<void> {
    const { links, keys, region } = this.d;
    await links.own.xadd(keys.deadLetter, 'MAXLEN', '~', DEAD_LETTER_MAX_LENGTH, '*', 'region', region, 'id', id, ...fields);
  }
}
