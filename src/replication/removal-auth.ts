/**
 * Signed removal records (docs/membership-signing.md §7, item 2). `<prefix>{repl}:departed` holds, per region
 * removed by `npm run members -- remove`, when it was removed; `<prefix>{repl}:departed-known` holds, per member,
 * the removals its processes know (a JSON list of region ids). They decide whose credentials are adopted
 * (departures.ts), which owed acks are dropped (origin-acks.ts), and when a member is forgotten (membership.ts).
 * With config `ackSignatures` `sign` or `require` each value is signed under the deployment's replication key,
 * bound to its field (the region) and to its kind (a context of its own), like the membership entries
 * (ack-auth.ts, signMember); `off` writes the bytes every version before signing writes.
 *
 * departed: the time (an ISO string) followed by `#<kid>:<mac>`, the MAC over DEPARTURE_MAC_CONTEXT, the key
 * id, the region and the time. A reader of a version before signing uses the field's presence only (its
 * `members list` prints the value, tag and all), and copies the value as it is.
 *
 * departed-known: the JSON list with a last element `"#<kid>:<mac>"`, the MAC over DEPARTURES_KNOWN_MAC_CONTEXT,
 * the key id, the region and the list's JSON without that element (the stored text up to its `,"#`, or `["#`
 * for an empty list, then `]`). Still a JSON list of strings on purpose: a reader of a version before signing
 * reads the regions listed, and one element more that names no region (a region id holds no `#`).
 *
 * In `require` a value that does not verify counts as absent (nothing adopted, no ack dropped, no member
 * forgotten: the safe direction); in `sign` it counts (trust on upgrade); in both it is counted
 * (AckSigning.unverifiedRemovals), each stored value once.
 */
import { judgeTag, tagOver, type AckSigning, type AckVerdict, type CheckedAck } from './ack-auth';
import type { EventAuth } from './event-auth';

export const DEPARTURE_MAC_CONTEXT = 'saml-credential-service/departure/v1\n';
export const DEPARTURES_KNOWN_MAC_CONTEXT = 'saml-credential-service/departures-known/v1\n';

/** A departed value's time, without its tag (the value itself when it has none). */
export function departureTime(stored: string): string {
  const hash = stored.indexOf('#');
  return hash < 0 ? stored : stored.slice(0, hash);
}

/** `at` (an ISO time), the removal of `region`, tagged under the current signing key. */
export function signDeparture(auth: EventAuth, region: string, at: string): string {
  if (at.includes('#')) throw new Error(`not a removal time: ${at}`);
  return `${at}#${tagOver(auth, DEPARTURE_MAC_CONTEXT, `${region}\n${at}`)}`;
}

/** Reads the departed value stored in the field `region`: its time and whether its tag holds (bound to the field). */
export function checkDeparture(auth: EventAuth, region: string, stored: string): CheckedAck {
  const value = departureTime(stored);
  if (value === stored) return { value, verdict: 'unsigned' };
  return { value, verdict: judgeTag(auth, DEPARTURE_MAC_CONTEXT, `${region}\n${value}`, stored.slice(value.length + 1)) };
}

/** A signed list's last element: its tag (group 2), after `,` or, for an empty list, `[` (group 1). */
const KNOWN_TAG = /(,|\[)"#([^"\\]*)"\]$/;

/** `regions`, the removals `region`'s processes know, as a JSON list with its tag as the last element. */
export function signKnown(auth: EventAuth, region: string, regions: readonly string[]): string {
  if (regions.some((r) => r.includes('#'))) throw new Error(`not a list of region ids: ${JSON.stringify(regions)}`);
  const json = JSON.stringify(regions);
  return `${json.slice(0, -1)}${regions.length ? ',' : ''}"#${tagOver(auth, DEPARTURES_KNOWN_MAC_CONTEXT, `${region}\n${json}`)}"]`;
}

/** Reads the departed-known value stored in the field `region`: the list's JSON without its tag, and whether the tag holds. */
export function checkKnown(auth: EventAuth, region: string, stored: string): CheckedAck {
  const tag = KNOWN_TAG.exec(stored);
  if (!tag) return { value: stored, verdict: 'unsigned' };
  const value = `${stored.slice(0, tag.index)}${tag[1] === '[' ? '[' : ''}]`;
  return { value, verdict: judgeTag(auth, DEPARTURES_KNOWN_MAC_CONTEXT, `${region}\n${value}`, tag[2] as string) };
}

/** A departed-known list's regions (its tag left out); anything unreadable counts as knowing none. */
export function parseKnown(raw: string): string[] {
  try {
    const v: unknown = JSON.parse(raw);
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string' && !x.startsWith('#')) : [];
  } catch {
    return [];
  }
}

/** `at`, the removal of `region`, as `signing` writes it: signed in `sign` and `require` modes. */
export function writtenDeparture(signing: AckSigning | null | undefined, region: string, at: string): string {
  return signing?.signs ? signDeparture(signing.auth, region, at) : at;
}

/** The removals `region`'s processes know, as `signing` writes them: signed in `sign` and `require` modes. */
export function writtenKnown(signing: AckSigning | null | undefined, region: string, regions: readonly string[]): string {
  return signing?.signs ? signKnown(signing.auth, region, regions) : JSON.stringify(regions);
}

/**
 * How a departed value reads under `signing`: its verdict (null: not checked, `off`), and whether it counts
 * (`require`: signed only). `count`: a reader of this region's own copy, which counts one that does not verify.
 */
export function judgeDeparture(signing: AckSigning | null | undefined, region: string, stored: string, count = false): { verdict: AckVerdict | null; counts: boolean } {
  if (!signing?.signs) return { verdict: null, counts: true };
  const { verdict } = checkDeparture(signing.auth, region, stored);
  return { verdict, counts: signing.removal(`departed\n${region}`, stored, verdict, count) };
}

/** The removals `region`'s processes know, read from `stored` under `signing`: null when it does not count (`require`, not signed). */
export function readKnown(signing: AckSigning | null | undefined, region: string, stored: string, count = false): string[] | null {
  if (!signing?.signs) return parseKnown(stored);
  const { verdict } = checkKnown(signing.auth, region, stored);
  return signing.removal(`departed-known\n${region}`, stored, verdict, count) ? parseKnown(stored) : null;
}

/** A departed value's time in ms since the epoch; one that does not parse ranks below every time. */
function timeOf(stored: string): number {
  const t = Date.parse(departureTime(stored));
  return Number.isNaN(t) ? -Infinity : t;
}

/** Whether the removal `stored` is later than a registration at `joinedAt` (null: not recorded, so any removal is). */
export function removedAfter(stored: string, joinedAt: string | null): boolean {
  const joined = joinedAt === null ? NaN : Date.parse(joinedAt);
  return Number.isNaN(joined) || timeOf(stored) > joined;
}

/**
 * Whether `value` should replace `current` (null: none) as the removal of `region`: the latest removal wins (a
 * region removed, added again and removed again is removed at the later time); at the same time a signed value
 * wins over one that is not; under `require` a current value that does not verify counts as none. A copier
 * writes only values it took as counting.
 */
export function supersedes(signing: AckSigning | null | undefined, region: string, value: string, current: string | null): boolean {
  if (current === null || current === value) return current === null;
  const now = judgeDeparture(signing, region, current);
  if (!now.counts) return true;
  const [tv, tc] = [timeOf(value), timeOf(current)];
  if (tv !== tc) return tv > tc;
  return now.verdict !== null && now.verdict !== 'signed' && judgeDeparture(signing, region, value).verdict === 'signed';
}
