/**
 * The refusals of a posted SAML Response that need reading it: node-saml's errors mapped to messages that say
 * what to fix (its own wording never reaches the client), and the bearer subject confirmation judged for this
 * ACS. Split from response.ts, which validates; the messages are what docs/sso.md's table of ACS refusals documents.
 */
import type { Element } from '@xmldom/xmldom';
import { AppError } from '../http/errors';
import { nodeSaml } from '../on-first-use';
import { attr, childElements } from '../metadata/xml-dom';
import { quote, refused, type SamlRefusal } from './refusal';
import type { Expectations, PostedResponse } from './response';
import { SAML_NS, SAMLP_NS } from './sp';
import { REQUEST_TTL_SECONDS } from './store';

const BEARER = 'urn:oasis:names:tc:SAML:2.0:cm:bearer';

export const NOT_SIGNED =
  "the SAML response is not signed by the identity provider of this credential (the XML signature over the Response or its Assertion " +
  "is missing, does not verify with any of the IdP's current signing certificates, or does not cover the element that is read). " +
  'If the IdP rotated its certificate, publish the new one in its metadata and refresh the credential; otherwise sign in again from the start.';

const NOT_STARTED =
  `the response answers a login request this region did not start, or one that expired or was already answered (requests last ` +
  `${REQUEST_TTL_SECONDS / 60} minutes and are answered once, in the region where they started). Sign in again.`;

export const notStarted = (libraryReason: string | null = null) => refused(401, NOT_STARTED, libraryReason);

export const OTHER_REQUEST = 'the response and its assertion answer different requests (InResponseTo differs); sign in again.';

export function firstChild(parent: Element, ns: string, name: string): Element | null {
  return childElements(parent, ns, name)[0] ?? null;
}

export function text(el: Element | null): string | null {
  const t = el?.textContent?.trim();
  return t ? t : null;
}

export function parseTime(raw: string | null): number | null {
  if (raw === null) return null;
  const t = raw.trim();
  if (t.length > 40 || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(t)) return null;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? null : ms;
}

export const iso = (ms: number) => new Date(ms).toISOString();
export const clockHint = 'check that the IdP\'s and this service\'s clocks are right, then sign in again';

function bearerData(assertion: Element): Element[] {
  const subject = firstChild(assertion, SAML_NS, 'Subject');
  return (subject ? childElements(subject, SAML_NS, 'SubjectConfirmation') : [])
    .filter((c) => attr(c, 'Method') === BEARER)
    .flatMap((c) => childElements(c, SAML_NS, 'SubjectConfirmationData'));
}

/** The posted assertion's times named by `attribute` (Conditions and bearer confirmations), for messages only. */
function postedTimes(posted: PostedResponse, attribute: string): number[] {
  const a = posted.assertion;
  if (a === null) return [];
  const conditions = firstChild(a, SAML_NS, 'Conditions');
  return [...(conditions ? [conditions] : []), ...bearerData(a)].map((el) => parseTime(attr(el, attribute))).filter((t): t is number => t !== null);
}

function audienceRefusal(posted: PostedResponse, exp: Expectations, reason: string): SamlRefusal {
  const conditions = posted.assertion ? firstChild(posted.assertion, SAML_NS, 'Conditions') : null;
  const restrictions = (conditions ? childElements(conditions, SAML_NS, 'AudienceRestriction') : []).map((r) =>
    childElements(r, SAML_NS, 'Audience').map((a) => a.textContent ?? ''),
  );
  // Every AudienceRestriction must name the SP (SAML core 2.5.1.4; compared untrimmed, as node-saml does): the
  // ones that do are not the problem, and quoting them listed this SP's own entity ID among the audiences it is "not".
  const leavingOut = restrictions.filter((r) => !r.includes(exp.spEntityId));
  // The SP's entity ID with white space around it (a pretty-printed assertion): quoted trimmed, it read as
  // "meant for audience X, … must name X".
  if (leavingOut.length > 0 && leavingOut.every((r) => r.some((a) => a.trim() === exp.spEntityId))) {
    return refused(
      401,
      `the assertion's audience is "${exp.spEntityId}" with white space or line breaks around it, which is not this service provider's entity ID exactly; ` +
        `have the IdP send the audience "${exp.spEntityId}" as it is, without white space around it.`,
      reason,
    );
  }
  const named = leavingOut.flatMap((r) => r.map((a) => a.trim()).filter((a) => a !== ''));
  const seen = [...new Set(named)].map((a) => `"${quote(a, 100)}"`);
  return refused(
    401,
    `the assertion is meant for audience ${seen.length ? seen.join(', ') : '(none)'}, not this service provider; ` +
      `its AudienceRestriction must name "${exp.spEntityId}": set the audience (SP entity ID) of the IdP application to it.`,
    reason,
  );
}

export function statusRefusal(response: Element, reason: string | null): SamlRefusal {
  const status = firstChild(response, SAMLP_NS, 'Status');
  const top = status ? firstChild(status, SAMLP_NS, 'StatusCode') : null;
  // The second-level code (AuthnFailed, NoPassive, RequestDenied, …) is the one that says what went wrong.
  const codes = [top, top ? firstChild(top, SAMLP_NS, 'StatusCode') : null].map((c) => (c ? attr(c, 'Value') : null)).filter((c): c is string => c !== null);
  const message = status ? text(firstChild(status, SAMLP_NS, 'StatusMessage')) : null;
  const shown = codes.length ? codes.map((c) => quote(c.replace(/^urn:oasis:names:tc:SAML:2\.0:status:/, ''), 80)).join('/') : 'none';
  return refused(401, `the identity provider did not authenticate the user (status ${shown}${message ? `: ${quote(message, 200)}` : ''}). Sign in again or ask your IdP administrator.`, reason);
}

/**
 * node-saml's refusal as ours. Its wording is matched, not shown: an error it may add in a later version
 * falls to the last, general answer, and is logged (libraryReason) for the operators.
 */
export function mapLibraryError(err: unknown, posted: PostedResponse, exp: Expectations): AppError {
  if (err instanceof AppError) return err; // the session store (503)
  const reason = err instanceof Error ? err.message : String(err);
  if (err instanceof nodeSaml().SamlStatusError) return statusRefusal(posted.response, reason);
  if (/No decryption key/.test(reason)) {
    return refused(400, 'the assertion is encrypted, which this service does not support; turn off assertion encryption in the IdP application.', reason);
  }
  if (/^(Subject)?InResponseTo is not valid/.test(reason)) return notStarted(reason);
  if (/InResponseTo does not match/.test(reason)) return refused(401, OTHER_REQUEST, reason);
  // node-saml finds no usable subject confirmation for a login when none has times it can read (an empty
  // <SubjectConfirmationData/> has none): say what is wrong with the bearer one rather than "expired".
  if (/No valid subject confirmation|Error parsing NotOnOrAfter/.test(reason)) {
    const problems = posted.assertion ? bearerData(posted.assertion).map((d) => judgeConfirmation(d, exp)) : [];
    const last = problems.at(-1);
    if (last !== undefined && problems.every((p) => 'problem' in p) && 'problem' in last) return refused(401, last.problem, reason);
  }
  if (/not yet valid/.test(reason)) {
    const notBefore = Math.max(...postedTimes(posted, 'NotBefore'));
    return refused(401, `the assertion is not valid before ${Number.isFinite(notBefore) ? iso(notBefore) : 'its NotBefore'}; ${clockHint}.`, reason);
  }
  if (/expired|No valid subject confirmation/.test(reason)) {
    const notOnOrAfter = Math.min(...postedTimes(posted, 'NotOnOrAfter'));
    return refused(401, `the assertion expired at ${Number.isFinite(notOnOrAfter) ? iso(notOnOrAfter) : 'its NotOnOrAfter'}; sign in again (${clockHint}).`, reason);
  }
  if (/Error parsing (NotBefore|NotOnOrAfter|IssueInstant)/.test(reason)) {
    return refused(401, 'the assertion lacks a valid IssueInstant, or a NotOnOrAfter in its Conditions or SubjectConfirmationData, or one of its times is not a valid date; check the IdP.', reason);
  }
  if (/audience|AudienceRestriction/i.test(reason)) return audienceRefusal(posted, exp, reason);
  if (/signature|Missing SAML assertion|assertion from signed data|reference uri|ref URI/i.test(reason)) return refused(401, NOT_SIGNED, reason);
  return refused(
    401,
    `the SAML response could not be validated as a sign-in of this credential's IdP; check the IdP application against the SP metadata (${exp.acsUrl.replace(/acs$/, 'metadata')}), then sign in again.`,
    reason,
  );
}



type Confirmation = { until: number; inResponseTo: string | null } | { problem: string };

/** One bearer SubjectConfirmationData: usable for this ACS now (its NotOnOrAfter and InResponseTo), or what is wrong with it. */
function judgeConfirmation(d: Element, exp: Expectations): Confirmation {
  const recipient = attr(d, 'Recipient');
  const rawUntil = attr(d, 'NotOnOrAfter');
  const until = parseTime(rawUntil);
  // node-saml checks a confirmation's NotBefore only for a response to a login; the profile forbids it on a
  // bearer confirmation, and one in the future is not usable yet, whoever started the sign-in.
  const notBefore = attr(d, 'NotBefore');
  const from = notBefore === null ? null : parseTime(notBefore);
  if (recipient === null && rawUntil === null) {
    return {
      problem:
        "the assertion's bearer SubjectConfirmationData has neither a Recipient nor a NotOnOrAfter; the Web Browser SSO profile requires both " +
        `(the ACS URL it is for, and when it stops being usable): check that the IdP application's ACS URL is "${exp.acsUrl}" (see the SP metadata).`,
    };
  }
  if (notBefore !== null && (from === null || from > Date.now() + exp.skewMs)) {
    return { problem: `the assertion's subject confirmation is not valid before ${from === null ? 'its NotBefore (not a date)' : iso(from)}; ${clockHint}.` };
  }
  if (recipient !== exp.acsUrl) {
    return { problem: `the assertion is addressed to ${recipient ? `"${quote(recipient, 200)}"` : 'no Recipient'}, not to this region's ACS URL "${exp.acsUrl}"; add this URL to the IdP application's ACS URLs (see the SP metadata).` };
  }
  if (rawUntil === null) return { problem: "the assertion's bearer SubjectConfirmationData has no NotOnOrAfter (the Web Browser SSO profile requires one); check the IdP." };
  if (until === null) return { problem: `the assertion's bearer SubjectConfirmationData has NotOnOrAfter="${quote(rawUntil, 40)}", which is not a valid date; check the IdP.` };
  if (until <= Date.now() - exp.skewMs) return { problem: `the assertion's subject confirmation expired at ${iso(until)}; sign in again (${clockHint}).` };
  return { until, inResponseTo: attr(d, 'InResponseTo') };
}

/** A bearer SubjectConfirmation for this ACS, still usable; returns its NotOnOrAfter and InResponseTo. */
export function checkRecipient(assertion: Element, exp: Expectations): { until: number; inResponseTo: string | null } {
  const data = bearerData(assertion);
  if (data.length === 0) throw refused(401, 'the assertion has no bearer SubjectConfirmation (required by the Web Browser SSO profile).');
  let problem = '';
  for (const d of data) {
    const judged = judgeConfirmation(d, exp);
    if (!('problem' in judged)) return judged;
    problem = judged.problem;
  }
  throw refused(401, problem);
}
