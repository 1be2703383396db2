/**
 * Signed ack values and ack announcements (the codec; see docs/replication.md, "Tracker"). A region writes
 * its acks into the Redis of the change's origin, where anything that can write to that Redis could plant
 * one: a signed value binds the outcome to the change and the acking region under the deployment's
 * replication key (the same `REPLICATION_KEYS` that sign change events, event-auth.ts).
 *
 * Value: today's value followed by a tag `#<kid>:<mac>`, e.g. `applied@2026-12-05T22:43:30.935Z#k1:h8X_…`.
 * The tag goes last so that a reader of a version before it still finds the outcome at the front (`applied`,
 * `superseded:…`, `parked `). `mac`: the first 128 bits, base64url, of HMAC-SHA256 over ACK_MAC_CONTEXT, the
 * key id, the change id, the region (the hash field) and the untagged value, each after a newline.
 *
 * Announcement: `s1 <kid>:<mac>\n<body>` with an optional trailing `\n<kept>` line (the ack script's note of
 * the ids whose earlier applied ack it kept, which it cannot sign); the MAC covers the body only, under
 * ACK_ANNOUNCEMENT_MAC_CONTEXT. Not JSON on purpose: a tracker of an older version fails to parse it and
 * ignores it (its sweep of the stored acks still answers its waiters).
 *
 * Watermark report (tombstones.ts, the field `region` of `<prefix>{repl}:watermarks`): its JSON followed by
 * `#<kid>:<mac>`, the MAC over WATERMARK_REPORT_MAC_CONTEXT, the key id, the region and the JSON. Not JSON
 * on purpose: a collector of an older version reads it as an unreadable report, which holds its horizon
 * (horizon.ts, computeHorizon): never collecting early is the safe direction.
 *
 * Membership entry (member-record.ts, the field `region` of `<prefix>{repl}:members`): its JSON with a last
 * member `"sig":"<kid>:<mac>"`, the MAC over MEMBER_ENTRY_MAC_CONTEXT, the key id, the region and the entry's
 * bytes without that member (the stored text up to its `,"sig":"`, then `}`). Inside the JSON on purpose: a
 * reader of an older version parses it and reads every field as written (docs/membership-signing.md, §2.3).
 *
 * Every reader reads both forms; the writers (ack-records.ts, tombstones.ts) write the signed ones when
 * `ackSignatures` signs. Readers judge what they read through readAck, readReport (and
 * AckSigning.announcement): in `require` mode only what verifies counts; in `sign` and `require` modes what
 * does not is counted (AckSigning.unverified).
 */
import crypto from 'node:crypto';
import type { AckSignatures } from '../config-schema';
import type { EventAuth, RefusalReason } from './event-auth';

export const ACK_MAC_CONTEXT = 'saml-credential-service/change-ack/v1\n';
export const ACK_ANNOUNCEMENT_MAC_CONTEXT = 'saml-credential-service/ack-announcement/v1\n';
export const WATERMARK_REPORT_MAC_CONTEXT = 'saml-credential-service/watermark-report/v1\n';
export const MEMBER_ENTRY_MAC_CONTEXT = 'saml-credential-service/member-entry/v1\n';

/** The first line of a signed announcement starts with this. */
const ANNOUNCEMENT_MARK = 's1 ';
/** 128 bits: forging one is out of reach, and a value grows by 26 bytes only. */
const MAC_BYTES = 16;
/** A tag's shape; the MAC may be of any length here (a truncated one is a bad signature, not no tag). */
const TAG = /^([A-Za-z0-9._-]+):([A-Za-z0-9_-]*)$/;

/** How many verified ack values AckSigning remembers (~150 bytes each). */
const VERIFIED_KEPT = 50_000;

/** Config `ackSignatures`: what this region writes, and what it accepts. */
export type { AckSignatures } from '../config-schema';

/** How this region signs the acks it writes and judges the ones it reads (config `ackSignatures`). */
export class AckSigning {
  constructor(
    readonly auth: EventAuth,
    readonly mode: AckSignatures = 'off',
  ) {}

  /** Whether acks, their organization field and announcements are written signed. */
  get signs(): boolean {
    return this.mode !== 'off';
  }

  /** Whether an ack or announcement counts only when its signature holds. */
  get requires(): boolean {
    return this.mode === 'require';
  }

  /**
   * Ack values (the `~org` field's too), announcements and watermark reports read that did not verify, by reason, since start;
   * counted in `sign` and `require` modes (in `off` nothing is checked). The figure that says when `require`
   * is safe: once it stops growing in every region (docs/operations.md, "Signing acks").
   */
  readonly unverified: Record<RefusalReason, number> = { unsigned: 0, 'bad-signature': 0, 'unknown-key': 0 };
  /** Deliveries the relay confirmed on an ack value that did not verify (`sign` mode; `require` confirms none). */
  confirmedUnverified = 0;
  /**
   * Entries of the membership record (this region's copy) that did not verify, by reason, since start (`sign`
   * and `require` modes): each distinct stored value once, not once per refresh (see member). `replayed`
   * (`require`): signed, but below an entry of the same region this process took before (Membership).
   */
  readonly unverifiedMembers: Record<Exclude<MemberVerdict, 'signed'>, number> = { unsigned: 0, 'bad-signature': 0, 'unknown-key': 0, replayed: 0 };
  /** Per member, the last stored entry judged (member): a value read again every second is counted once. */
  private readonly membersJudged = new Map<string, string>();
  /**
   * Removal records (`departed` and `departed-known` fields of this region's Redis, removal-auth.ts) read that
   * did not verify, by reason, since start (`sign` and `require` modes), each stored value once.
   */
  readonly unverifiedRemovals: Record<RefusalReason, number> = { unsigned: 0, 'bad-signature': 0, 'unknown-key': 0 };
  /** Per record and field, the last stored value judged (removal). */
  private readonly removalsJudged = new Map<string, string>();

  /** Whether a value read with `verdict` counts here; one that does not verify is counted in `unverified`. */
  private takes(verdict: AckVerdict): boolean {
    if (verdict === 'signed') return true;
    this.unverified[verdict]++;
    return !this.requires;
  }

  /**
   * Values found signed, as `change id, field, value`, oldest first (at most VERIFIED_KEPT): the relay reads
   * the acks of every unconfirmed row each round, and while a region is down its rows wait with the same
   * signed acks of the others (~4 µs a check: a page of 2,000 rows was ~28 ms a round without this).
   */
  private readonly verified = new Set<string>();

  /** How `value`, the field `field` of `changeId`'s ack record, reads here (see readAck). */
  read(changeId: string, field: string, value: string): AckReading {
    if (!this.signs) return 'holds';
    const seen = `${changeId}\n${field}\n${value}`;
    if (this.verified.has(seen)) return 'holds';
    const { verdict } = checkAck(this.auth, changeId, field, value);
    if (verdict !== 'signed') return this.takes(verdict) ? 'unverified' : 'refused';
    if (this.verified.size >= VERIFIED_KEPT) this.verified.delete(this.verified.values().next().value as string);
    this.verified.add(seen);
    return 'holds';
  }

  /** An announcement's body and kept line when it counts here (see readAck); null when it does not, or is none. */
  announcement(message: string): { body: string; kept: string | null } | null {
    if (!this.signs) return readAnnouncement(message);
    const checked = checkAnnouncement(this.auth, message);
    return checked && this.takes(checked.verdict) ? checked : null;
  }

  /** `region`'s watermark report (its JSON) as this region writes it: signed in `sign` and `require` modes. */
  writtenReport(region: string, json: string): string {
    return this.signs ? signReport(this.auth, region, json) : json;
  }

  /** `json`, `region`'s membership entry, as this region writes it: signed in `sign` and `require` modes. */
  writtenMember(region: string, json: string): string {
    return this.signs ? signMember(this.auth, region, json) : json;
  }

  /**
   * Counts `raw`, the entry of `region` read with `verdict`, when it does not verify and differs from the last
   * one judged for that member. (What a reader uses of such an entry under `require`: member-record.ts,
   * countsByNameOnly.)
   */
  member(region: string, raw: string, verdict: MemberVerdict): void {
    if (!this.signs || this.membersJudged.get(region) === raw) return;
    this.membersJudged.set(region, raw);
    if (verdict !== 'signed') this.unverifiedMembers[verdict]++;
  }

  /**
   * Whether a removal record read with `verdict` counts here (`require`: only a signed one), counting one that
   * does not verify when `count` and it differs from the last value judged for `record` (the hash and field).
   */
  removal(record: string, raw: string, verdict: AckVerdict, count: boolean): boolean {
    if (count && this.removalsJudged.get(record) !== raw) {
      this.removalsJudged.set(record, raw);
      if (verdict !== 'signed') this.unverifiedRemovals[verdict]++;
    }
    return verdict === 'signed' || !this.requires;
  }

  /** The JSON of `stored`, the report in the field `region`, when it counts here (see readReport). */
  report(region: string, stored: string): string | null {
    if (!this.signs) return untaggedReport(stored);
    const { value, verdict } = checkReport(this.auth, region, stored);
    return this.takes(verdict) ? value : null;
  }
}

/**
 * How a stored ack value reads: `holds` (its signature holds, or nothing is checked: `off`, or no signing
 * given), `unverified` (it does not verify but counts: `sign`, a rolling upgrade), `refused` (`require`:
 * the reader takes the field as absent).
 */
export type AckReading = 'holds' | 'unverified' | 'refused';

/**
 * The one check every reader of an ack record makes: how `value`, the field `field` (a region, or `~org`)
 * of `changeId`'s record, reads under `signing` (null: unchecked). Values that do not verify are counted.
 */
export function readAck(signing: AckSigning | null | undefined, changeId: string, field: string, value: string): AckReading {
  return signing ? signing.read(changeId, field, value) : 'holds';
}

/** As a change event is judged (event-auth.ts): signed, or refused for the same reasons. */
export type AckVerdict = 'signed' | RefusalReason;

/**
 * How a reader takes a membership entry: its signature's verdict, or `replayed` (`require`): it verifies, but
 * an entry of the same region this process took before is newer (Membership, docs/membership-signing.md §2.4).
 */
export type MemberVerdict = AckVerdict | 'replayed';

export interface CheckedAck {
  /** The value without its tag (as written before values were signed). */
  value: string;
  verdict: AckVerdict;
}

export interface CheckedAnnouncement {
  /** The announcement's JSON: `{ region, ids, lost? }`. */
  body: string;
  /** The ack script's trailing line, if any: a JSON object of change id → the kept (signed) ack value. */
  kept: string | null;
  verdict: AckVerdict;
}

/**
 * Where a value's tag starts (its `#`), or -1: the first `#` after the last `@` (after the time; a winner's
 * table key may hold one before it). indexOf over the tail: String#lastIndexOf costs ~100 ns a call in V8
 * 11 (measured), and every ack read goes through here.
 */
function tagStart(value: string, atSign = value.lastIndexOf('@')): number {
  return value.indexOf('#', atSign + 1);
}

/** The value without its tag (the value itself when it has none); `atSign`: its last `@`, when the caller has it. */
export function untaggedAck(value: string, atSign?: number): string {
  const hash = tagStart(value, atSign);
  return hash < 0 ? value : value.slice(0, hash);
}

function macText(auth: EventAuth, context: string, body: string, kid?: string): string | null {
  return auth.macOf(context, body, kid)?.subarray(0, MAC_BYTES).toString('base64url') ?? null;
}

/** The bytes an ack value's MAC covers (after the context and key id). */
const ackBody = (changeId: string, region: string, value: string): string => `${changeId}\n${region}\n${value}`;

/** Whether `given` is `expected`, in constant time (the lengths are not secret: every MAC has the same). */
function sameMac(expected: string, given: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

/** `kid:mac` over `body` under `context`, with the current signing key (for the codecs of other records: removal-auth.ts). */
export function tagOver(auth: EventAuth, context: string, body: string): string {
  return `${auth.signingKid}:${macText(auth, context, body) as string}`;
}

/** How `tag` (`kid:mac`) holds over `body` under `context`: `bad-signature` when it is not of that shape. */
export function judgeTag(auth: EventAuth, context: string, body: string, tag: string): AckVerdict {
  const parts = TAG.exec(tag);
  return parts ? judge(auth, context, body, parts[1] as string, parts[2] as string) : 'bad-signature';
}

/** Checks `mac` under key `kid` over `body`: a known key is required, then an exact match. */
function judge(auth: EventAuth, context: string, body: string, kid: string, mac: string): AckVerdict {
  const expected = macText(auth, context, body, kid);
  if (expected === null) return 'unknown-key';
  return sameMac(expected, mac) ? 'signed' : 'bad-signature';
}

/** Reads `tagged` whose tag starts at `hash` (-1: none): its untagged value, and whether the tag holds over `body(value)`. */
function checkTag(auth: EventAuth, context: string, tagged: string, hash: number, body: (value: string) => string): CheckedAck {
  if (hash < 0) return { value: tagged, verdict: 'unsigned' };
  const value = tagged.slice(0, hash);
  const tag = TAG.exec(tagged.slice(hash + 1));
  if (!tag) return { value, verdict: 'bad-signature' };
  return { value, verdict: judge(auth, context, body(value), tag[1] as string, tag[2] as string) };
}

/** `value` (untagged) as `region`'s ack of `changeId`, tagged under the current signing key. */
export function signAck(auth: EventAuth, changeId: string, region: string, value: string): string {
  // It would read back as a shorter value under a tag that does not hold: no value written has one.
  if (tagStart(value) >= 0) throw new Error(`an ack value with a '#' after its time cannot be signed: ${value}`);
  return `${value}#${auth.signingKid}:${macText(auth, ACK_MAC_CONTEXT, ackBody(changeId, region, value)) as string}`;
}

/** Reads a stored ack value of `region` for `changeId`: its untagged value and whether its tag holds. */
export function checkAck(auth: EventAuth, changeId: string, region: string, tagged: string): CheckedAck {
  return checkTag(auth, ACK_MAC_CONTEXT, tagged, tagStart(tagged), (value) => ackBody(changeId, region, value));
}

/** Where a report's tag starts (its `#`), or -1: after the JSON's last `}` (a tag holds none). */
const reportTagStart = (stored: string): number => stored.indexOf('#', stored.lastIndexOf('}') + 1);

/** A report's JSON without its tag (the report itself when it has none). */
export function untaggedReport(stored: string): string {
  const hash = reportTagStart(stored);
  return hash < 0 ? stored : stored.slice(0, hash);
}

/** `json`, `region`'s watermark report, tagged under the current signing key. */
export function signReport(auth: EventAuth, region: string, json: string): string {
  return `${json}#${auth.signingKid}:${macText(auth, WATERMARK_REPORT_MAC_CONTEXT, `${region}\n${json}`) as string}`;
}

/** Reads the report stored in the field `region`: its JSON and whether its tag holds (bound to the field). */
export function checkReport(auth: EventAuth, region: string, stored: string): CheckedAck {
  return checkTag(auth, WATERMARK_REPORT_MAC_CONTEXT, stored, reportTagStart(stored), (json) => `${region}\n${json}`);
}

/**
 * The one check every reader of the watermark reports makes: the JSON of `stored`, the field `region`, when
 * it counts under `signing` (null: unchecked); null in `require` mode when its tag does not hold (counted).
 */
export function readReport(signing: AckSigning | null | undefined, region: string, stored: string): string | null {
  return signing ? signing.report(region, stored) : untaggedReport(stored);
}

/** An announcement's JSON `body` in the signed form, under the current signing key. */
export function signAnnouncement(auth: EventAuth, body: string): string {
  return `${ANNOUNCEMENT_MARK}${auth.signingKid}:${macText(auth, ACK_ANNOUNCEMENT_MAC_CONTEXT, body) as string}\n${body}`;
}

/**
 * An announcement split into its parts, without checking it (for a reader that holds no key): `tag` null for
 * the unsigned (plain JSON) form. Null for a signed form without a body line.
 */
export function readAnnouncement(message: string): { body: string; kept: string | null; tag: string | null } | null {
  if (!message.startsWith(ANNOUNCEMENT_MARK)) return { body: message, kept: null, tag: null };
  const first = message.indexOf('\n');
  if (first < 0) return null;
  const second = message.indexOf('\n', first + 1);
  return {
    tag: message.slice(ANNOUNCEMENT_MARK.length, first),
    body: second < 0 ? message.slice(first + 1) : message.slice(first + 1, second),
    kept: second < 0 ? null : message.slice(second + 1),
  };
}

/** Reads an announcement, either form: its body, the kept line, and whether its signature holds. */
export function checkAnnouncement(auth: EventAuth, message: string): CheckedAnnouncement | null {
  const read = readAnnouncement(message);
  if (!read) return null;
  const { body, kept, tag } = read;
  if (tag === null) return { body, kept, verdict: 'unsigned' };
  const parts = TAG.exec(tag);
  if (!parts) return { body, kept, verdict: 'bad-signature' };
  return { body, kept, verdict: judge(auth, ACK_ANNOUNCEMENT_MAC_CONTEXT, body, parts[1] as string, parts[2] as string) };
}

/** Where a member entry's signature member starts: a JSON string holds no raw `,"sig":"`, so only the structural one. */
const MEMBER_SIG = ',"sig":"';
/** The rest of a signed entry after MEMBER_SIG: the tag, and the object's end. */
const MEMBER_TAG = /^([A-Za-z0-9._-]+):([A-Za-z0-9_-]*)"}$/;

/** `json` (an entry's JSON object, without `sig`), `region`'s membership entry, with its signature as the last member. */
export function signMember(auth: EventAuth, region: string, json: string): string {
  // An object with at least one member (`{}` would become `{,"sig":…}`: signed, yet no JSON a reader parses).
  if (!json.startsWith('{"') || !json.endsWith('}') || json.includes(MEMBER_SIG)) throw new Error(`not an unsigned member entry: ${json}`);
  const tag = `${auth.signingKid}:${macText(auth, MEMBER_ENTRY_MAC_CONTEXT, `${region}\n${json}`) as string}`;
  return `${json.slice(0, -1)}${MEMBER_SIG}${tag}"}`;
}

/** The key id a stored member entry is signed with (whether or not its signature holds), or null when it carries none. */
export function memberSigningKid(stored: string): string | null {
  const at = stored.lastIndexOf(MEMBER_SIG);
  return at < 0 ? null : (MEMBER_TAG.exec(stored.slice(at + MEMBER_SIG.length))?.[1] ?? null);
}

/**
 * Reads the entry stored in the field `region` of the membership record: its JSON without the signature
 * member, and whether the signature holds (bound to the field). No `sig` member last: `unsigned`.
 */
export function checkMember(auth: EventAuth, region: string, stored: string): CheckedAck {
  const at = stored.lastIndexOf(MEMBER_SIG);
  if (at < 0) return { value: stored, verdict: 'unsigned' };
  const value = `${stored.slice(0, at)}}`;
  const tag = MEMBER_TAG.exec(stored.slice(at + MEMBER_SIG.length));
  if (!tag) return { value, verdict: 'bad-signature' };
  return { value, verdict: judge(auth, MEMBER_ENTRY_MAC_CONTEXT, `${region}\n${value}`, tag[1] as string, tag[2] as string) };
}
