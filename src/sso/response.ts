/**
 * Validation of a SAML Response posted to an ACS (Web Browser SSO profile, HTTP-POST binding).
 *
 * The signature is checked first, against the credential's current IdP signing certificates only (never a
 * certificate the message brings along). Until it verifies, every refusal is the same kind ("not a valid
 * signed response"), so a forger learns nothing about the other checks. Against signature wrapping: a
 * signature counts only when it is a child of the Response or of its single Assertion and references exactly
 * that element by ID, and everything after is read from the XML the signature digested (xml-crypto's signed
 * reference, parsed again), never from the posted document. Unsigned Response attributes (Destination,
 * InResponseTo, Status) are only trusted where the signed assertion agrees (Recipient, InResponseTo).
 */
import type { Element } from '@xmldom/xmldom';
import { SignedXml } from 'xml-crypto';
import { AppError } from '../http/errors';
import { attr, childElements, descendantElements, DS_NS, is, parseXml } from '../metadata/xml-dom';
import { NAMEID_EMAIL, NAMEID_UNSPECIFIED, SAML_NS, SAMLP_NS } from './sp';

const STATUS_SUCCESS = 'urn:oasis:names:tc:SAML:2.0:status:Success';
const BEARER = 'urn:oasis:names:tc:SAML:2.0:cm:bearer';
const ALLOWED_TRANSFORMS = new Set([
  'http://www.w3.org/2000/09/xmldsig#enveloped-signature',
  'http://www.w3.org/2001/10/xml-exc-c14n#',
  'http://www.w3.org/2001/10/xml-exc-c14n#WithComments',
  'http://www.w3.org/TR/2001/REC-xml-c14n-20010315',
  'http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments',
]);

/** What the response must match: the credential's IdP and this region's SP endpoint. */
export interface Expectations {
  idpEntityId: string;
  spEntityId: string;
  acsUrl: string;
  certificates: readonly { pem: string }[];
  now: number;
  skewMs: number;
}

export interface ValidatedAssertion {
  assertionId: string;
  /** The request this answers (null: IdP-initiated). */
  inResponseTo: string | null;
  nameId: string;
  nameIdFormat: string | null;
  sessionIndex: string | null;
  attributes: Record<string, string[]>;
  /** FriendlyName → Name, for email_claims written either way. */
  friendlyNames: Record<string, string>;
  /** Until when the assertion could be presented (for the replay cache). */
  usableUntil: number;
}

/** A short, one-line, printable quote of text the IdP chose (an entity id, a status message). */
function quote(text: string, max = 100): string {
  const line = text.slice(0, max * 2).replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

export function refused(status: number, message: string): AppError {
  return new AppError(status, 'saml_response_refused', `Sign-in refused: ${message}`);
}

/** The one answer before the signature verifies, whatever was wrong. */
function notSigned(): AppError {
  return refused(
    401,
    "the SAML response is not signed by the identity provider of this credential (the XML signature over the Response or its Assertion " +
      "is missing, does not verify with any of the IdP's current signing certificates, or does not cover the element that is read). " +
      "If the IdP rotated its certificate, publish the new one in its metadata and refresh the credential; otherwise sign in again from the start.",
  );
}

function firstChild(parent: Element, ns: string, name: string): Element | null {
  return childElements(parent, ns, name)[0] ?? null;
}

function text(el: Element | null): string | null {
  const t = el?.textContent?.trim();
  return t ? t : null;
}

/** Verifies `signature` (a child of `element`) with one of `certs`; returns the XML it digested, or null. */
function verifiedElementXml(xml: string, element: Element, signature: Element, certs: readonly { pem: string }[]): string | null {
  const id = attr(element, 'ID');
  if (!id) return null;
  for (const cert of certs) {
    const sig = new SignedXml({ publicCert: cert.pem });
    try {
      sig.loadSignature(signature);
      if (!sig.checkSignature(xml)) continue;
    } catch {
      continue;
    }
    const refs = sig.getReferences();
    const signed = sig.getSignedReferences();
    const ref = refs[0];
    if (refs.length !== 1 || signed.length !== 1 || ref === undefined || ref.uri !== `#${id}`) return null;
    if (!ref.transforms.every((t) => ALLOWED_TRANSFORMS.has(t))) return null;
    return signed[0] ?? null;
  }
  return null;
}

function reparse(xml: string, ns: string, name: string, id: string | null): Element {
  const root = parseXml(xml).root;
  if (!is(root, ns, name) || attr(root, 'ID') !== id) throw notSigned();
  return root;
}

/** The Response and the Assertion to read: signed ones, each re-read from what its signature covered. */
function signedParts(xml: string, posted: Element, certs: Expectations['certificates']): { response: Element; assertion: Element; responseSigned: boolean } {
  const assertions = childElements(posted, SAML_NS, 'Assertion');
  const responseSigs = childElements(posted, DS_NS, 'Signature');
  if (assertions.length !== 1 || responseSigs.length > 1) throw notSigned();
  const postedAssertion = assertions[0];
  if (responseSigs.length === 1) {
    const signed = verifiedElementXml(xml, posted, responseSigs[0], certs);
    if (signed === null) throw notSigned();
    const response = reparse(signed, SAMLP_NS, 'Response', attr(posted, 'ID'));
    const inside = childElements(response, SAML_NS, 'Assertion');
    if (inside.length !== 1) throw notSigned();
    return { response, assertion: inside[0], responseSigned: true };
  }
  const assertionSigs = childElements(postedAssertion, DS_NS, 'Signature');
  if (assertionSigs.length !== 1) throw notSigned();
  const signed = verifiedElementXml(xml, postedAssertion, assertionSigs[0], certs);
  if (signed === null) throw notSigned();
  return { response: posted, assertion: reparse(signed, SAML_NS, 'Assertion', attr(postedAssertion, 'ID')), responseSigned: false };
}

function parseTime(raw: string | null): number | null {
  if (raw === null) return null;
  const t = raw.trim();
  if (t.length > 40 || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(t)) return null;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? null : ms;
}

const iso = (ms: number) => new Date(ms).toISOString();
const clockHint = 'check that the IdP\'s and this service\'s clocks are right, then sign in again';

function checkStatus(response: Element): void {
  const code = attr(firstChild(firstChild(response, SAMLP_NS, 'Status') ?? response, SAMLP_NS, 'StatusCode') ?? response, 'Value');
  if (code === STATUS_SUCCESS) return;
  const message = text(firstChild(firstChild(response, SAMLP_NS, 'Status') ?? response, SAMLP_NS, 'StatusMessage'));
  const shown = code ? quote(code.replace(/^urn:oasis:names:tc:SAML:2\.0:status:/, ''), 80) : 'none';
  throw refused(401, `the identity provider did not authenticate the user (status ${shown}${message ? `: ${quote(message, 200)}` : ''}). Sign in again or ask your IdP administrator.`);
}

function checkIssuers(response: Element, assertion: Element, exp: Expectations): void {
  const responseIssuer = text(firstChild(response, SAML_NS, 'Issuer'));
  const assertionIssuer = text(firstChild(assertion, SAML_NS, 'Issuer'));
  if (assertionIssuer === null) throw refused(401, 'the assertion names no Issuer.');
  for (const issuer of [assertionIssuer, responseIssuer]) {
    if (issuer !== null && issuer !== exp.idpEntityId) {
      throw refused(401, `the response was issued by "${quote(issuer, 200)}", but this credential's IdP is "${quote(exp.idpEntityId, 200)}". Post it to the credential of that IdP.`);
    }
  }
}

function checkConditions(assertion: Element, exp: Expectations): number | null {
  const conditions = firstChild(assertion, SAML_NS, 'Conditions');
  if (conditions === null) throw refused(401, `the assertion has no Conditions, so no audience; configure the IdP application with audience (SP entity ID) "${exp.spEntityId}".`);
  const notBefore = parseTime(attr(conditions, 'NotBefore'));
  const notOnOrAfter = parseTime(attr(conditions, 'NotOnOrAfter'));
  if (notBefore !== null && notBefore > exp.now + exp.skewMs) throw refused(401, `the assertion is not valid before ${iso(notBefore)}; ${clockHint}.`);
  if (notOnOrAfter !== null && notOnOrAfter <= exp.now - exp.skewMs) throw refused(401, `the assertion expired at ${iso(notOnOrAfter)}; sign in again (${clockHint}).`);
  const restrictions = childElements(conditions, SAML_NS, 'AudienceRestriction');
  const ok = restrictions.length > 0 && restrictions.every((r) => childElements(r, SAML_NS, 'Audience').some((a) => text(a) === exp.spEntityId));
  if (!ok) {
    const seen = restrictions.flatMap((r) => childElements(r, SAML_NS, 'Audience')).map((a) => quote(text(a) ?? '', 100));
    throw refused(401, `the assertion is meant for audience ${seen.length ? seen.map((s) => `"${s}"`).join(', ') : '(none)'}, not this service provider; set the audience (SP entity ID) of the IdP application to "${exp.spEntityId}".`);
  }
  return notOnOrAfter;
}

/** A bearer SubjectConfirmation for this ACS, still usable; returns its NotOnOrAfter and InResponseTo. */
function checkSubjectConfirmation(subject: Element, exp: Expectations): { until: number; inResponseTo: string | null } {
  const bearers = childElements(subject, SAML_NS, 'SubjectConfirmation').filter((c) => attr(c, 'Method') === BEARER);
  if (bearers.length === 0) throw refused(401, 'the assertion has no bearer SubjectConfirmation (required by the Web Browser SSO profile).');
  let problem = '';
  for (const c of bearers) {
    const data = firstChild(c, SAML_NS, 'SubjectConfirmationData');
    const recipient = data ? attr(data, 'Recipient') : null;
    const until = data ? parseTime(attr(data, 'NotOnOrAfter')) : null;
    if (recipient !== exp.acsUrl) {
      problem = `the assertion is addressed to ${recipient ? `"${quote(recipient, 200)}"` : 'no Recipient'}, not to this region's ACS URL "${exp.acsUrl}"; add this URL to the IdP application's ACS URLs (see the SP metadata).`;
    } else if (until === null) {
      problem = 'the assertion\'s SubjectConfirmationData has no valid NotOnOrAfter.';
    } else if (until <= exp.now - exp.skewMs) {
      problem = `the assertion's subject confirmation expired at ${iso(until)}; sign in again (${clockHint}).`;
    } else {
      return { until, inResponseTo: data ? attr(data, 'InResponseTo') : null };
    }
  }
  throw refused(401, problem);
}

function attributesOf(assertion: Element): { values: Record<string, string[]>; friendly: Record<string, string> } {
  const values: Record<string, string[]> = {};
  const friendly: Record<string, string> = {};
  for (const statement of childElements(assertion, SAML_NS, 'AttributeStatement')) {
    for (const a of childElements(statement, SAML_NS, 'Attribute')) {
      const name = attr(a, 'Name');
      if (!name) continue;
      const list = (values[name] ??= []);
      for (const v of childElements(a, SAML_NS, 'AttributeValue')) list.push(v.textContent?.trim() ?? '');
      const f = attr(a, 'FriendlyName');
      if (f && !(f in friendly)) friendly[f] = name;
    }
  }
  return { values, friendly };
}

/**
 * Parses and checks a decoded SAMLResponse for `exp`. Throws an AppError (4xx) that says what to fix;
 * InResponseTo and the replay cache are the caller's (they need Redis).
 */
export function validateResponse(xml: string, exp: Expectations): ValidatedAssertion {
  let posted: Element;
  try {
    posted = parseXml(xml).root;
  } catch {
    throw refused(400, 'SAMLResponse is not a well-formed XML document (or contains a DOCTYPE, which is never accepted). Post the IdP\'s response unchanged.');
  }
  if (!is(posted, SAMLP_NS, 'Response')) throw refused(400, 'SAMLResponse is not a SAML 2.0 Response.');
  if (descendantElements(posted, SAML_NS, 'EncryptedAssertion').length > 0) {
    throw refused(400, 'the assertion is encrypted, which this service does not support; turn off assertion encryption in the IdP application.');
  }
  const { response, assertion, responseSigned } = signedParts(xml, posted, exp.certificates);

  if (attr(response, 'Version') !== '2.0' || attr(assertion, 'Version') !== '2.0') throw refused(400, 'the response is not SAML version 2.0.');
  const destination = attr(response, 'Destination');
  if ((destination !== null || responseSigned) && destination !== exp.acsUrl) {
    throw refused(401, `the response is addressed to ${destination ? `"${quote(destination, 200)}"` : 'no Destination'}, not to this region's ACS URL "${exp.acsUrl}"; add this URL to the IdP application's ACS URLs.`);
  }
  checkStatus(response);
  checkIssuers(response, assertion, exp);
  const conditionsUntil = checkConditions(assertion, exp);

  const subject = firstChild(assertion, SAML_NS, 'Subject');
  const nameIdEl = subject ? firstChild(subject, SAML_NS, 'NameID') : null;
  const nameId = text(nameIdEl);
  if (subject === null || nameIdEl === null || nameId === null) throw refused(401, 'the assertion has no (unencrypted) NameID in its Subject.');
  const confirmation = checkSubjectConfirmation(subject, exp);
  const responseInResponseTo = attr(response, 'InResponseTo');
  // The confirmation's InResponseTo is signed with the assertion; the Response's may not be.
  if (confirmation.inResponseTo !== null && responseInResponseTo !== null && confirmation.inResponseTo !== responseInResponseTo) {
    throw refused(401, 'the response and its assertion answer different requests (InResponseTo differs); sign in again.');
  }
  const inResponseTo = confirmation.inResponseTo ?? (responseSigned ? responseInResponseTo : null);
  if (inResponseTo === null && responseInResponseTo !== null) {
    throw refused(401, 'the response names the request it answers, but its signed assertion does not; sign in again.');
  }

  const assertionId = attr(assertion, 'ID');
  if (!assertionId) throw refused(400, 'the assertion has no ID.');
  const authn = firstChild(assertion, SAML_NS, 'AuthnStatement');
  const { values, friendly } = attributesOf(assertion);
  return {
    assertionId,
    inResponseTo,
    nameId,
    nameIdFormat: attr(nameIdEl, 'Format'),
    sessionIndex: authn ? attr(authn, 'SessionIndex') : null,
    attributes: values,
    friendlyNames: friendly,
    usableUntil: Math.min(confirmation.until, conditionsUntil ?? Infinity) + exp.skewMs,
  };
}

const EMAIL = /^[^\s@<>()[\],;:"]{1,64}@[^\s@<>()[\],;:"]{1,255}$/;

export type EmailOutcome = { email: string } | { problem: string };

/** The first of `claims` present among the attributes (by Name or FriendlyName), else an email-format NameID. */
export function emailOf(a: ValidatedAssertion, claims: readonly string[]): EmailOutcome {
  for (const claim of claims) {
    const name = claim in a.attributes ? claim : a.friendlyNames[claim];
    const value = name === undefined ? undefined : a.attributes[name]?.find((v) => v !== '');
    if (value === undefined) continue;
    if (EMAIL.test(value)) return { email: value };
    return { problem: `the attribute "${quote(claim, 100)}" (the first of the credential's email_claims the IdP sent) holds "${quote(value, 100)}", which is not an email address. Map the user's email to it in the IdP, or change email_claims.` };
  }
  const format = a.nameIdFormat;
  if ((format === null || format === NAMEID_EMAIL || format === NAMEID_UNSPECIFIED) && EMAIL.test(a.nameId)) return { email: a.nameId };
  const listed = claims.length ? `none of the credential's email_claims (${claims.map((c) => `"${quote(c, 60)}"`).join(', ')}) is among its attributes` : 'the credential has no email_claims';
  return {
    problem:
      `the IdP sent no email address for the user: ${listed}, and the NameID is not an email address. ` +
      "Send the email as an attribute named in email_claims (or add that attribute's name to email_claims), or use the emailAddress NameID format.",
  };
}
