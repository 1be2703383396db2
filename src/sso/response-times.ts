/**
 * The instants of an accepted response read against this service's clock, with the skew allowed: when the
 * Response and its assertion were issued, when the user authenticated, and when the IdP says the user's
 * session there ends. node-saml reads none of them against the clock: it checks the Conditions' and the
 * bearer confirmation's NotBefore / NotOnOrAfter, and parses the assertion's IssueInstant only to cap the
 * assertion's age (maxAssertionAgeMs, not used here: NotOnOrAfter bounds it), refusing one that is missing or
 * not a date. It never reads the Response's IssueInstant, nor an AuthnStatement's AuthnInstant or
 * SessionNotOnOrAfter.
 */
import type { Element } from '@xmldom/xmldom';
import { attr } from '../metadata/xml-dom';
import { quote, refused } from './refusal';
import { clockHint, iso, parseTime } from './response-refusals';

type Instant = { kind: 'IssueInstant'; of: 'Response' | 'assertion' } | { kind: 'AuthnInstant' };

const named = (i: Instant) => (i.kind === 'IssueInstant' ? `the ${i.of}'s IssueInstant` : "the AuthnStatement's AuthnInstant");

/**
 * A required instant (SAML core 2.3.3, 2.7.2, 3.2.2), as a time not later than now plus the skew: something the
 * IdP says already happened (it issued the message, the user authenticated) cannot be in the future; an
 * assertion that says so was made by a clock too far ahead, or made to be used later.
 */
function checkPast(el: Element, instant: Instant, skewMs: number, now: number): void {
  const raw = attr(el, instant.kind);
  if (raw === null) throw refused(401, `${named(instant)} is missing (SAML requires it); check the IdP.`);
  const t = parseTime(raw);
  if (t === null) throw refused(401, `${named(instant)} "${quote(raw, 40)}" is not a valid date; check the IdP.`);
  if (t <= now + skewMs) return;
  const what = instant.kind === 'AuthnInstant' ? 'the user authenticated at the IdP' : `the ${instant.of} was issued`;
  throw refused(
    401,
    `${what} at ${iso(t)} (${named(instant)}), which is in the future by this service's clock, beyond the ${skewMs / 1000} s clock skew allowed; ${clockHint}.`,
  );
}

/**
 * The Response's and the assertion's IssueInstant, and every AuthnStatement's AuthnInstant, are not in the
 * future (beyond the skew). The Response may be unsigned: its IssueInstant can only refuse, never admit.
 * An old AuthnInstant is not refused: no maximum authentication age is configured (docs/sso.md says why).
 */
export function checkIssued(response: Element, assertion: Element, authns: readonly Element[], skewMs: number): void {
  const now = Date.now();
  checkPast(response, { kind: 'IssueInstant', of: 'Response' }, skewMs, now);
  checkPast(assertion, { kind: 'IssueInstant', of: 'assertion' }, skewMs, now);
  for (const authn of authns) checkPast(authn, { kind: 'AuthnInstant' }, skewMs, now);
}

/**
 * The AuthnStatements' SessionNotOnOrAfter (SAML core 2.7.2): when the IdP says the user's session there ends.
 * A sign-in for a session already over (beyond the skew) is refused. Each statement counts (the first alone
 * let a second one, whose session the IdP said was over, pass). Returns the earliest (null: none), since the
 * sign-in token must not outlive it.
 */
export function checkSessionEnd(authns: readonly Element[], skewMs: number): number | null {
  let earliest: number | null = null;
  for (const authn of authns) {
    const raw = attr(authn, 'SessionNotOnOrAfter');
    if (raw === null) continue;
    const end = parseTime(raw);
    if (end === null) throw refused(401, 'the AuthnStatement\'s SessionNotOnOrAfter is not a valid date; check the IdP.');
    if (end <= Date.now() - skewMs) {
      throw refused(401, `the user's session at the IdP ended at ${iso(end)} (the AuthnStatement's SessionNotOnOrAfter); sign in again (${clockHint}).`);
    }
    earliest = Math.min(end, earliest ?? end);
  }
  return earliest;
}

