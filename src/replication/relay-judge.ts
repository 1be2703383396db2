/**
 * The confirm round's judgement of a page of unconfirmed outbox rows by their ack records (relay-confirm.ts):
 * which rows every destination acked, which deliveries to confirm, which rows lack the origin's own ack,
 * which a member has no delivery of, and which deliveries have stayed unconfirmed long enough to be looked for.
 */
import { readAck, type AckReading, type AckSigning } from './ack-auth';

export interface DeliveryState {
  /** The inbox entry it was (last) delivered as. */
  sid: string;
  /** Delivered longer ago than republishAfterMs. */
  stale: boolean;
  confirmed: boolean;
}

/** A published, unconfirmed outbox row and its deliveries by destination (confirm()). */
export interface UnconfirmedRow {
  id: bigint;
  change_id: string;
  org_id: string | null;
  deliveries: Record<string, DeliveryState>;
}

/** A delivery: its change, and the inbox entry it was delivered as. */
export interface SentEntry {
  change_id: string;
  stream_id: string;
}

/** A delivery acked: the ack value that confirms it, if known, and whether it did not verify (readAck). */
export interface AckedDelivery {
  changeId: string;
  region: string;
  ack?: string;
  unverified?: boolean;
}

/** What confirm() makes of a page of rows and their ack records (judgeRows). */
export interface Judgement {
  /** Rows every destination acked. */
  confirmed: string[];
  /** Deliveries acked but not yet confirmed. */
  acked: AckedDelivery[];
  /** Rows without the origin's own ack. */
  ownAck: string[];
  /** Rows a destination has no delivery of. */
  missing: Set<string>;
  /** Per destination, its long-unconfirmed deliveries. */
  suspects: Map<string, SentEntry[]>;
}

/**
 * confirm()'s judgement of each row by its ack record (`acks`, one reply per row; a failed read: not judged).
 * A field whose value does not count under `signing` (readAck: `require` mode) is absent: the change is
 * delivered again, and the origin records its own ack again.
 */
export function judgeRows(rows: readonly UnconfirmedRow[], acks: readonly [Error | null, unknown][], destinations: readonly string[], region: string, signing: AckSigning | null = null): Judgement {
  const j: Judgement = { confirmed: [], acked: [], ownAck: [], missing: new Set(), suspects: new Map() };
  rows.forEach((r, i) => {
    const [err, record] = acks[i] ?? [new Error('missing reply')];
    if (err) return;
    const ackOf = (record ?? {}) as Record<string, string | undefined>;
    // Own fields only: a region name that an object inherits (a member planted in the unsigned record as
    // `toString`, say) must read as no ack, not as a function.
    const valueOf = (field: string): string | undefined => (Object.hasOwn(ackOf, field) ? ackOf[field] : undefined);
    const reading = (field: string): AckReading | null => {
      const value = valueOf(field);
      return value === undefined ? null : readAck(signing, r.change_id, field, value);
    };
    const own = reading(region);
    if (own === null || own === 'refused') j.ownAck.push(r.change_id);
    let done = true;
    for (const dest of destinations) {
      const dl = Object.hasOwn(r.deliveries, dest) ? r.deliveries[dest] : undefined;
      if (dl?.confirmed) continue;
      const read = reading(dest);
      if (read !== null && read !== 'refused') {
        j.acked.push({ changeId: r.change_id, region: dest, ack: valueOf(dest), unverified: read === 'unverified' });
        continue;
      }
      done = false;
      if (!dl) j.missing.add(r.change_id);
      else if (dl.stale) {
        const list = j.suspects.get(dest);
        if (list) list.push({ change_id: r.change_id, stream_id: dl.sid });
        else j.suspects.set(dest, [{ change_id: r.change_id, stream_id: dl.sid }]);
      }
    }
    if (done) j.confirmed.push(r.change_id);
  });
  return j;
}
