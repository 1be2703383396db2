/**
 * A read's inbox entries sorted by what becomes of their events (Applier.applyBatch): each entry's signature
 * is verified before anything of it is read; then its events (one, or a pack's) are applied, dead-lettered,
 * acked as parked again, or parked.
 */
import type { DeadLetters, Refused } from './dead-letters';
import type { EventAuth } from './event-auth';
import { whyUnfit, type Unfit } from './event-fit';
import type { HybridClock } from './hlc';
import { parseEvent, readPack, type EntryRef, type Parsed } from './inbox-events';
import type { FailureLog } from './parked';
import type { RowStore } from './row-store';
import type { StreamEntry } from './stream';

export interface SortDeps {
  /** Verifies each entry's signature before anything else reads it (see event-auth.ts). */
  auth: EventAuth;
  region: string;
  store: RowStore;
  clock: HybridClock;
}

/** What this process did with entries read before: events it parked, packs whose unreadable events it dead-lettered. */
export interface SortSeen {
  failures: Pick<FailureLog, 'parkedHere'>;
  deadLetters: Pick<DeadLetters, 'hasPack'>;
}

/** A read's entries sorted by what becomes of their events (see sortEntries). */
export type Sorted = {
  parsed: Parsed[];
  poison: StreamEntry[];
  unfit: Unfit[];
  refused: Refused[];
  badInPacks: { id: string; items: { index: number; raw: string }[] }[];
  parkedBefore: Parsed[];
  /** The most events an entry held (readable or not), 0 when none was read: see Applier.eventsPerEntry. */
  largest: number;
};

/**
 * Sorts a read's entries by what becomes of their events: applied (`parsed`), dead-lettered (refused,
 * unreadable, unreadable events of packs), acked as parked again (parked before), or parked (unfit).
 */
export function sortEntries(d: SortDeps, seen: SortSeen, entries: readonly StreamEntry[]): Sorted {
  const parsed: Parsed[] = [];
  const poison: StreamEntry[] = [];
  const unfit: Unfit[] = [];
  const refused: Refused[] = [];
  const badInPacks: { id: string; items: { index: number; raw: string }[] }[] = [];
  // Events this process parked before, read again (their pack was pending, or their ack did not reach the origin).
  const parkedBefore: Parsed[] = [];
  let largest = 0;
  for (const entry of entries) {
    // Nothing of an entry is read before its signature holds: a refused one is never applied, never
    // observed by the clock, never acked to the tracker.
    const v = d.auth.verify(entry[1]);
    if (!v.ok) {
      refused.push({ entry, reason: v.reason, kid: v.kid, body: v.body });
      continue;
    }
    // A pack holds events of one origin under one MAC that holds: its readable events are applied, an
    // unreadable one (a bug of its origin's version) is dead-lettered alone and counts as settled. An
    // entry with nothing readable is dead-lettered whole.
    const pack = v.packed ? readPack(v.body) : null;
    const event = v.packed ? null : parseEvent(v.body);
    const events = pack ? pack.events : event ? [event] : [];
    if (events.length === 0) {
      poison.push(entry);
      continue;
    }
    // Read again (a pack whose event was not settled, an ack that did not reach the origin): what this
    // process dead-lettered of it is not copied again; what it parked is acked as parked again, not
    // parked or applied again (parked events apply through the retry of parked events).
    if (pack?.unreadable.length && !seen.deadLetters.hasPack(entry[0])) badInPacks.push({ id: entry[0], items: pack.unreadable });
    largest = Math.max(largest, events.length + (pack?.unreadable.length ?? 0));
    const ref: EntryRef = { id: entry[0], open: events.length };
    for (const e of events) {
      const p = { id: entry[0], event: e, entry: ref };
      if (seen.failures.parkedHere(e.changeId)) {
        parkedBefore.push(p);
        continue;
      }
      const why = e.origin === d.region ? null : whyUnfit(d, e);
      if (why) unfit.push({ p, ...why });
      else parsed.push(p);
    }
  }
  return { parsed, poison, unfit, refused, badInPacks, parkedBefore, largest };
}
