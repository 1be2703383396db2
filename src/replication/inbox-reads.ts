/**
 * This region's inbox as its applier reads it: pages of XREADGROUP (new entries, or this consumer's own
 * pending ones) and of XAUTOCLAIM (entries left pending by another consumer), never handing out an entry of
 * a batch still in flight here, and the entries trimmed from the stream before this region applied them.
 */
import type { Logger } from '../logger';
import type { Redis, ReplicationKeys } from '../redis';
import type { StreamEntry } from './stream';

export interface InboxReadsDeps {
  /** A connection of its own to this region's Redis: XREADGROUP BLOCK holds it. */
  reader: Redis;
  keys: ReplicationKeys;
  region: string;
  consumer: string;
  log: Logger;
  /** How long an entry may sit unacked with a consumer before another consumer takes it over. */
  claimIdleMs?: number;
}

export class InboxReads {
  /** Stream ids of the entries of batches being applied or acked: XAUTOCLAIM must not hand them out again. */
  private readonly inFlight = new Set<string>();
  /**
   * Entries that left inFlight while an XAUTOCLAIM was under way: Redis may have handed them out before their
   * XACK, and its answer arrives after. Null when no claim is under way.
   */
  private endedDuringClaim: Set<string> | null = null;
  /** Pending entries found deleted from the stream before this region applied them (see relay trim). */
  lostEntries = 0;
  /** The reader's id in Redis (CLIENT ID), learnt on each connect: interrupt() ends its blocking read by it. */
  private readerId: number | null = null;

  /** `xack`: XACKs entries of this region's inbox. */
  constructor(
    private readonly d: InboxReadsDeps,
    private readonly xack: (ids: string[]) => Promise<unknown>,
  ) {
    const learnId = () => {
      this.readerId = null;
      d.reader.call('CLIENT', 'ID').then((id) => (this.readerId = Number(id)), () => undefined);
    };
    d.reader.on('ready', learnId);
    if (d.reader.status === 'ready') learnId();
  }

  /**
   * Ends the reader's blocking XREADGROUP under way, if any, at once and as if it timed out (CLIENT UNBLOCK
   * through `via`, another connection to the same Redis; nothing is handed out), so that a stopping applier
   * does not wait out the block (a region's stop took up to 1 s longer).
   */
  async interrupt(via: Redis): Promise<void> {
    if (this.readerId !== null) await via.call('CLIENT', 'UNBLOCK', this.readerId).catch(() => undefined);
  }

  /** A batch's entries are being applied: out of XAUTOCLAIM's reach until they leave (see leave). */
  enter(entries: StreamEntry[]): void {
    for (const e of entries) this.inFlight.add(e[0]);
  }

  /**
   * A batch's entries stay in flight (out of XAUTOCLAIM's reach) until their XACKs, which its acks to the
   * origins run in the background (OriginAcks.toOrigins; `acked` settles then), are done or failed: a claim
   * in between would hand out an entry already applied, and it would be applied (and counted) again.
   */
  leave(entries: StreamEntry[], acked: Promise<unknown>): void {
    void acked.then(() => {
      for (const e of entries) {
        this.inFlight.delete(e[0]);
        this.endedDuringClaim?.add(e[0]);
      }
    });
  }

  /** One page of XREADGROUP; `last` is the id of the last entry returned (null when none). */
  async read(args: (string | number)[]): Promise<{ entries: StreamEntry[]; last: string | null }> {
    const { reader, region, consumer } = this.d;
    const res = (await reader.call('XREADGROUP', 'GROUP', region, consumer, ...args)) as [string, StreamEntry[]][] | null;
    const raw = res?.[0]?.[1] ?? [];
    // Entries deleted from the stream while pending come back with null fields.
    const gone = raw.filter((e) => !Array.isArray(e[1])).map((e) => e[0]);
    if (gone.length) await this.lost(gone, true);
    return { entries: raw.filter((e) => Array.isArray(e[1])), last: raw[raw.length - 1]?.[0] ?? null };
  }

  /** One page of XAUTOCLAIM from `start`; `next` is where the following page starts (0-0 once wrapped). */
  async claim(count: number, start: string): Promise<{ entries: StreamEntry[]; next: string }> {
    const { reader, keys, region, consumer } = this.d;
    const ended = (this.endedDuringClaim = new Set<string>());
    let res: [string, StreamEntry[], string[]?];
    try {
      res = (await reader.call(
        'XAUTOCLAIM', keys.inbox(region), region, consumer, this.d.claimIdleMs ?? 15_000, start, 'COUNT', count,
      )) as [string, StreamEntry[], string[]?];
    } finally {
      this.endedDuringClaim = null;
    }
    // Redis 7 drops entries deleted from the stream from the pending list itself and names them here. One of a
    // batch being applied here (its apply waiting on a lock outlasts claimIdleMs), or that ended meanwhile, was
    // not lost: the batch holds the event it read and applies it (test/replication/applier-settled.test.ts).
    const deleted = (res[2] ?? []).filter((id) => !this.inFlight.has(id) && !ended.has(id));
    if (deleted.length) await this.lost(deleted, false);
    // An entry of a batch still being applied here (a slow apply outlasts claimIdleMs), or whose batch ended
    // (applied and acked) while the claim was under way, is not taken twice.
    return { entries: (res[1] ?? []).filter((e) => Array.isArray(e[1]) && !this.inFlight.has(e[0]) && !ended.has(e[0])), next: String(res[0] ?? '0-0') };
  }

  /** Pending entries trimmed from the stream before this region applied them: nothing left to apply. */
  private async lost(ids: string[], ack: boolean): Promise<void> {
    this.lostEntries += ids.length;
    this.d.log.error({ count: ids.length, first: ids[0] }, 'pending change events were trimmed from the stream before this region applied them; re-seed this region (see docs/operations.md, "Re-seeding a region")');
    if (ack) await this.xack(ids);
  }
}
