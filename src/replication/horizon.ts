/**
 * The replication horizon: a version H such that no change event with a version at or below H can still
 * arrive anywhere, be retried, or be written, so a tombstone older than H has done its work everywhere.
 *
 * Each member region reports a *watermark*: the least of
 * - the oldest version of its outbox rows that are not settled (unconfirmed, or confirmed less than
 *   `settleMs` ago: see below),
 * - the oldest version of the events it holds failing or parked (replication_failures),
 * - its clock less IN_FLIGHT_MS (versions of write transactions still running, and of every later write,
 *   are above it).
 * The deployment's horizon is the least watermark of all current members, computed only when every member
 * has a fresh report, is active (not joining or being re-seeded), and reports a consumer group on its inbox
 * that did not fall behind the inbox cap; otherwise there is none. Never on missing information.
 *
 * Why a confirmed row still holds its origin's watermark for `settleMs`: a region may park an event and
 * ack it as parked, after which its origin confirms it. If that region's report predates the park while
 * the origin's postdates the confirmation, the event would be below H while still held. A report is used
 * only while younger than `maxAgeMs`, and settleMs exceeds it, so a report fresh enough to be used was made
 * after any park its origin's confirmation reflects.
 */
import { formatVersion } from './hlc';

/**
 * How long a write transaction may run (replicator.ts): versions it took earlier are committed or gone. The
 * default and the most a config's `writeTransactionTimeoutMs` may set.
 */
export const WRITE_TX_TIMEOUT_MS = 20_000;

/** How far behind its clock a region's watermark stays beyond the write timeout in force. */
const IN_FLIGHT_MARGIN_MS = 10_000;

/** How far behind its clock a region's watermark stays where writes run at most `writeTxTimeoutMs`. */
export function inFlightMs(writeTxTimeoutMs: number): number {
  return writeTxTimeoutMs + IN_FLIGHT_MARGIN_MS;
}

/** The same with the default write timeout. */
export const IN_FLIGHT_MS = inFlightMs(WRITE_TX_TIMEOUT_MS);

export interface Watermark {
  /** A version (or version prefix): every event of this region below it is settled or gone. */
  watermark: string;
  /** When it was computed (ms, Redis clock). */
  at: number;
  /**
   * The reporting region's own inbox, as its Redis shows it: whether its consumer group exists and fell
   * behind the inbox cap. Each inbox lives in its region's Redis, which other regions need not reach, so
   * the region reports it (absent: a report of an older version, read as no group).
   */
  inbox?: { group: boolean; behindTrim: boolean };
}

export type HoldReason = 'joining' | 'no-report' | 'stale-report' | 'no-group' | 'needs-reseed' | 'unreadable' | 'unverified';

export interface MemberView {
  region: string;
  state: 'joining' | 'active';
  /** Null: it has no consumer group on its inbox (as its report says). */
  group: { behindTrim: boolean } | null;
  /** Its membership entry does not verify (`ackSignatures: require`): held whatever it says. */
  unverified?: boolean;
}

export interface HorizonResult {
  /** The deployment's horizon, or null while any member holds it back. */
  horizon: string | null;
  /** Members that keep the horizon from being computed, and why. */
  heldBy: { region: string; reason: HoldReason }[];
  /** The member with the lowest watermark (what the horizon is), when there is a horizon. */
  lowest: string | null;
  members: { region: string; watermark: string | null; reportedAt: number | null; ageMs: number | null }[];
}

/** The clock part of a watermark: a prefix below every version issued at or after `wallMs`. */
export function clockFloor(wallMs: number): string {
  return formatVersion({ wall: Math.max(0, wallMs), counter: 0, region: '' });
}

/** The least of a region's parts; null parts (nothing pending) do not count. */
export function regionWatermark(parts: { outbox: string | null; failures: string | null; clock: string }): string {
  let w = parts.clock;
  for (const p of [parts.outbox, parts.failures]) if (p !== null && p < w) w = p;
  return w;
}

export function parseWatermark(raw: string | undefined | null): Watermark | null {
  if (!raw) return null;
  try {
    const v = JSON.parse(raw) as Partial<Watermark>;
    if (typeof v.watermark !== 'string' || !/^\d{15}\.\d{6}\./.test(v.watermark) || typeof v.at !== 'number') return null;
    const inbox = v.inbox && typeof v.inbox.group === 'boolean' && typeof v.inbox.behindTrim === 'boolean' ? { group: v.inbox.group, behindTrim: v.inbox.behindTrim } : undefined;
    return { watermark: v.watermark, at: v.at, ...(inbox ? { inbox } : {}) };
  } catch {
    return null;
  }
}

/** The deployment's horizon from the members' states and reports (see the module comment). */
export function computeHorizon(input: {
  members: readonly MemberView[];
  reports: ReadonlyMap<string, Watermark | null>;
  /** Regions whose report was set aside for its signature (`ackSignatures: require`; not in `reports`). */
  unverified?: ReadonlySet<string>;
  now: number;
  maxAgeMs: number;
}): HorizonResult {
  const heldBy: HorizonResult['heldBy'] = [];
  const members: HorizonResult['members'] = [];
  let horizon: string | null = null;
  let lowest: string | null = null;
  for (const m of input.members) {
    const r = input.reports.get(m.region) ?? null;
    const ageMs = r ? input.now - r.at : null;
    members.push({ region: m.region, watermark: r?.watermark ?? null, reportedAt: r?.at ?? null, ageMs });
    const hold = (reason: HoldReason) => heldBy.push({ region: m.region, reason });
    if (m.unverified) hold('unverified');
    else if (m.state === 'joining') hold('joining');
    else if (!m.group) hold('no-group');
    else if (m.group.behindTrim) hold('needs-reseed');
    else if (input.unverified?.has(m.region)) hold('unverified');
    else if (!input.reports.has(m.region)) hold('no-report');
    else if (!r) hold('unreadable');
    else if (ageMs === null || ageMs > input.maxAgeMs) hold('stale-report');
    else if (horizon === null || r.watermark < horizon) {
      horizon = r.watermark;
      lowest = m.region;
    }
  }
  if (heldBy.length || input.members.length === 0) return { horizon: null, heldBy, lowest: null, members };
  return { horizon, heldBy, lowest, members };
}

/**
 * The cut-off the collector deletes below: the horizon less the minimum age. A version prefix (no region),
 * so comparing it with versions as text orders it before every version of its millisecond.
 */
export function collectionCutoff(horizon: string, minAgeMs: number): string {
  return clockFloor(wallOf(horizon) - minAgeMs);
}

/** The wall-clock part (ms) of a version or watermark. */
export function wallOf(version: string): number {
  return Number(version.slice(0, 15));
}
