/**
 * What an inbox entry's verified body holds: one change event, or a pack of them (see event-auth.ts), read
 * and checked for the fields the applier relies on. Also what an unreadable or unauthenticated body still
 * names, for operators and for the acks owed to an origin.
 */
import { isUuid } from '../http/validate';
import { isVersion } from './hlc';
import type { ChangeEvent } from './tables';

/**
 * An event read from the inbox: its entry's id and the entry it came in (null for a parked event retried
 * from the database). An entry is XACKed once each of its events is settled (applied or parked, and acked
 * to its origin): a pack whose event failed stays pending, and is read again whole.
 */
export type Parsed = { id: string; event: ChangeEvent; entry: EntryRef | null };
/** An inbox entry being applied, with how many of its events are not settled yet. */
export type EntryRef = { id: string; open: number };

/** The origin an unauthenticated entry claims, for operators (at most 64 characters), or null. */
export function claimedOrigin(body: string | null): string | null {
  if (body === null || body.length > 4_000_000) return null;
  try {
    const parsed = JSON.parse(body) as { origin?: unknown } | { origin?: unknown }[] | null;
    // A pack claims the origin of its first event (a pack holds one origin's events).
    const o = (Array.isArray(parsed) ? (parsed[0] as { origin?: unknown } | undefined) : parsed)?.origin;
    return typeof o === 'string' ? o.slice(0, 64) : null;
  } catch {
    return null;
  }
}

/** The change id and origin an unreadable event still names, if it does. */
export function namedChange(raw: string): { changeId: string; origin: string } | null {
  try {
    const e = JSON.parse(raw) as { changeId?: unknown; origin?: unknown } | null;
    return e && typeof e.changeId === 'string' && isUuid(e.changeId) && typeof e.origin === 'string' ? { changeId: e.changeId, origin: e.origin } : null;
  } catch {
    return null;
  }
}

export function parseEvent(raw: string | null): ChangeEvent | null {
  if (!raw) return null;
  try {
    const e: unknown = JSON.parse(raw);
    return validEvent(e) ? e : null;
  } catch {
    return null;
  }
}

/** A pack's readable events, and its unreadable ones (their index and JSON); none when it is not a JSON array. */
export function readPack(raw: string): { events: ChangeEvent[]; unreadable: { index: number; raw: string }[] } {
  let list: unknown;
  try {
    list = JSON.parse(raw);
  } catch {
    return { events: [], unreadable: [] };
  }
  const events: ChangeEvent[] = [];
  const unreadable: { index: number; raw: string }[] = [];
  if (!Array.isArray(list)) return { events, unreadable };
  list.forEach((e: unknown, index) => {
    if (validEvent(e)) events.push(e);
    else unreadable.push({ index, raw: JSON.stringify(e) ?? 'null' });
  });
  return { events, unreadable };
}

function validEvent(v: unknown): v is ChangeEvent {
  const e = v as ChangeEvent | null;
  return (
    typeof e === 'object' && e !== null &&
    typeof e.changeId === 'string' && typeof e.origin === 'string' && typeof e.createdAt === 'string' && !Number.isNaN(Date.parse(e.createdAt)) && Array.isArray(e.ops) &&
    e.ops.every((op) => typeof op.table === 'string' && isVersion(op.version) && typeof op.row === 'object' && op.row !== null)
  );
}
