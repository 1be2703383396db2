/**
 * Validation of a SAML Response posted to an ACS (Web Browser SSO profile, HTTP-POST binding), on
 * @node-saml/node-saml. node-saml verifies the XML signature over the Response or its single Assertion with
 * the credential's current IdP certificates only (listed in its metadata, not expired; never one the message
 * brings), refuses signature wrapping (the signature must be a child of the element it references, that ID
 * must be unique, one assertion), and reads the assertion from the XML the signature digested. It checks
 * NotBefore / NotOnOrAfter with the skew, the audience, and InResponseTo against this region's outstanding
 * requests (store.ts's cache provider; it looks the Response's InResponseTo up before the signature, so a
 * response to no outstanding login is refused as such whatever its signature, which says nothing about the
 * other checks), and it refuses encrypted assertions (it is given no decryption key).
 *
 * What node-saml leaves out is checked here, after it accepted the response, on the signed assertion it
 * returns: the Version, the issuer, the IdP's status, Destination (required on a signed Response) and the bearer Recipient, that
 * InResponseTo is signed, one Subject with one identifier, and the instants node-saml does not read against
 * the clock (response-times.ts). node-saml's error messages never
 * reach the client: each is mapped to one of ours, which says what to fix; every signature failure gets the
 * same one, so a forger learns nothing about the other checks.
 * The certificates node-saml is given are first narrowed by a cheap look at the signatures
 * (signing-candidates.ts); the refusal itself is refusal.ts's, the messages for node-saml's errors and the
 * bearer confirmation's judgement response-refusals.ts's, the user's email email.ts's.
 */
import type { CacheProvider, Profile } from '@node-saml/node-saml';
import type { Element } from '@xmldom/xmldom';
import { certificateLabel, readCertificate, type CertificateInfo } from '../metadata/x509';
import { attr, childElements, DS_NS, is, parseXml } from '../metadata/xml-dom';
import type { XmlLimits } from '../metadata/xml-limits';
import { quote, refused, type SamlRefusal } from './refusal';
import { checkRecipient, firstChild, mapLibraryError, NOT_SIGNED, notStarted, OTHER_REQUEST, parseTime, statusRefusal, text } from './response-refusals';
import { checkIssued, checkSessionEnd } from './response-times';
import { signingCandidates } from './signing-candidates';
import { SAML_NS, SAMLP_NS, serviceProvider } from './sp';

export { notStarted } from './response-refusals';

const STATUS_SUCCESS = 'urn:oasis:names:tc:SAML:2.0:status:Success';

/** What the response must match: the credential's IdP and this region's SP endpoint. */
export interface Expectations {
  idpEntityId: string;
  spEntityId: string;
  acsUrl: string;
  certificates: readonly { pem: string }[];
  /**
   * The time the certificates' notAfter is judged at: the metadata's clock (validationTime), by which the fetch
   * judged them and the credential's /metadata shows them, not the response's (its times are judged by this
   * region's clock, with skewMs).
   */
  certificatesAt: Date;
  skewMs: number;
  /** This region's outstanding requests of the credential (node-saml looks InResponseTo up there). */
  requests: CacheProvider;
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
  /** The AuthnStatement's SessionNotOnOrAfter (ms), when it has one: the sign-in token ends by then. */
  sessionEnd: number | null;
}

/** The posted document, read before node-saml judges it: the 400s, and what a refusal's message quotes. */
export interface PostedResponse {
  xml: string;
  response: Element;
  /** Its single Assertion and that assertion's ID, unverified (null: none, or several). */
  assertion: Element | null;
  assertionId: string | null;
}

/**
 * What a posted response may be. A real one is a few to a few tens of KiB (an assertion with a large group
 * claim: ~1,000 elements); the signature check parses and digests the whole document, on the event loop,
 * so the bounds are what keeps a forged post, which needs no credentials, cheap.
 */
export const RESPONSE_LIMITS: XmlLimits = { maxChars: 256 * 1024, maxDepth: 30, maxElements: 2000, maxAttributes: 4000, maxAttributesPerElement: 50 };

/**
 * The signed assertion as node-saml returns it: exclusive canonicalization copies the namespace declarations
 * an element uses onto it, so it can hold more per element than was posted; its size is bounded by the post.
 */
const SIGNED_LIMITS: XmlLimits = { ...RESPONSE_LIMITS, maxChars: 4 * RESPONSE_LIMITS.maxChars, maxAttributes: 50_000, maxAttributesPerElement: 1000 };

/** Parses a decoded SAMLResponse far enough to refuse what is not a SAML 2.0 Response (400). */
export function parseResponse(xml: string): PostedResponse {
  if (xml.length > RESPONSE_LIMITS.maxChars) {
    throw refused(413, `SAMLResponse decodes to ${Math.ceil(xml.length / 1024)} KiB; at most ${RESPONSE_LIMITS.maxChars / 1024} KiB are accepted (a SAML response is a few KiB).`);
  }
  let response: Element;
  try {
    response = parseXml(xml, RESPONSE_LIMITS).root;
  } catch {
    throw refused(400, 'SAMLResponse is not a well-formed XML document within the size limits (or contains a DOCTYPE, which is never accepted). Post the IdP\'s response unchanged.');
  }
  if (!is(response, SAMLP_NS, 'Response')) throw refused(400, 'SAMLResponse is not a SAML 2.0 Response.');
  // node-saml finds the assertion by its local name alone: one in another namespace would be read by it
  // and missed by the checks here (the algorithms, the certificate chosen, the replay look-up).
  for (let n = response.firstChild; n !== null; n = n.nextSibling) {
    const el = n as Element;
    if (n.nodeType === 1 && (el.localName === 'Assertion' || el.localName === 'EncryptedAssertion') && el.namespaceURI !== SAML_NS) {
      throw refused(400, `SAMLResponse holds an ${el.localName} outside the SAML 2.0 assertion namespace; post the IdP's response unchanged.`);
    }
  }
  // A response carries one or two signatures (the Response's, the Assertion's). More SignedInfo elements
  // only make the signature checks slow (xml-crypto looks them all up for each signature it reads).
  if (response.getElementsByTagNameNS('*', 'SignedInfo').length > 2) {
    throw refused(400, 'SAMLResponse carries more than two XML signatures (a response has at most one on the Response and one on its Assertion); post the IdP\'s response unchanged.');
  }
  const assertions = childElements(response, SAML_NS, 'Assertion');
  const assertion = assertions.length === 1 ? (assertions[0] ?? null) : null;
  return { xml, response, assertion, assertionId: assertion ? attr(assertion, 'ID') : null };
}

/** The assertion's Attribute elements, in document order (every AttributeStatement's). */
function attributeElements(assertion: Element): Element[] {
  return childElements(assertion, SAML_NS, 'AttributeStatement').flatMap((statement) => childElements(statement, SAML_NS, 'Attribute'));
}

/**
 * The attributes' values by Name, read from the signed assertion: an Attribute the IdP sends twice (in one
 * AttributeStatement or two) is one attribute with the values of both, in order. node-saml's profile keeps
 * the last element of a Name only, so its value, not the first, was the email, and the first was not listed.
 * A value is its text (a structured value's own text only, as node-saml read it), trimmed.
 */
function attributesOf(assertion: Element): Record<string, string[]> {
  // No prototype: the IdP names the attributes ("constructor", "__proto__" are names like any other).
  const out: Record<string, string[]> = Object.create(null) as Record<string, string[]>;
  for (const a of attributeElements(assertion)) {
    const name = attr(a, 'Name');
    const values = childElements(a, SAML_NS, 'AttributeValue').map((v) => ownText(v).trim());
    // (An Attribute without values is not listed, as node-saml did not.)
    if (name === null || values.length === 0) continue;
    out[name] = [...(Object.hasOwn(out, name) ? (out[name] as string[]) : []), ...values];
  }
  return out;
}

function ownText(el: Element): string {
  let t = '';
  for (let n = el.firstChild; n !== null; n = n.nextSibling) if (n.nodeType === 3 || n.nodeType === 4) t += n.nodeValue ?? '';
  return t;
}

function friendlyNamesOf(assertion: Element): Record<string, string> {
  const friendly: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const a of attributeElements(assertion)) {
    const name = attr(a, 'Name');
    const f = attr(a, 'FriendlyName');
    if (name && f && !Object.hasOwn(friendly, f)) friendly[f] = name;
  }
  return friendly;
}

/**
 * SAML 2.0's Version (core 3.2.2, 2.3.3): node-saml reads a Response and an Assertion whatever Version they
 * carry (or none). The Response's may be unsigned (the assertion signed alone): it is only used to refuse.
 */
function checkVersion(el: Element, what: 'Response' | 'assertion'): void {
  const version = attr(el, 'Version');
  if (version === '2.0') return;
  if (version !== null && version.trim() === '2.0') {
    // quote() trims: it would show Version="2.0" as the value refused.
    const shown = version.slice(0, 40).replace(/[^\x20-\x7e]/gu, (c) => `\\u${(c.codePointAt(0) ?? 0).toString(16).padStart(4, '0')}`);
    throw refused(401, `the ${what} has Version="${shown}": "2.0" with white space around it, which is not Version="2.0" exactly; have the IdP send Version="2.0" without white space.`);
  }
  const found = version === null ? 'has no Version attribute' : `has Version="${quote(version, 40)}"`;
  throw refused(401, `the ${what} ${found}, not Version="2.0": this service takes SAML 2.0 only; set the IdP application to SAML 2.0 (see the SP metadata).`);
}

const IDENTIFIERS = new Set(['BaseID', 'NameID', 'EncryptedID']);

/** The children of `parent` with one of `names` as their local name, in any namespace (as node-saml reads them). */
function childrenNamed(parent: Element, names: ReadonlySet<string>): Element[] {
  const out: Element[] = [];
  for (let n = parent.firstChild; n !== null; n = n.nextSibling) if (n.nodeType === 1 && names.has((n as Element).localName ?? '')) out.push(n as Element);
  return out;
}

/**
 * The NameID of the assertion's Subject (null: none). SAML core gives an assertion at most one Subject (2.3.3)
 * and a Subject at most one identifier, a BaseID, a NameID or an EncryptedID (2.4.1); node-saml reads the first
 * Subject's first NameID, as this did, so a second Subject or identifier made the user a matter of which one a
 * reader takes first. Such an assertion is refused; counted by local name, since node-saml reads by local name.
 */
function theNameId(signed: Element): Element | null {
  const subjects = childrenNamed(signed, new Set(['Subject']));
  if (subjects.length > 1) {
    throw refused(401, `the assertion has ${subjects.length} Subject elements; SAML allows one (the user the assertion is about), so which one is the user would be a guess. Check the IdP application.`);
  }
  const subject = subjects[0];
  if (subject === undefined || !is(subject, SAML_NS, 'Subject')) return null;
  const ids = childrenNamed(subject, IDENTIFIERS);
  if (ids.length > 1) {
    throw refused(
      401,
      `the assertion's Subject has ${ids.length} identifiers (${ids.map((el) => el.localName).join(', ')}); SAML allows one (a NameID, a BaseID or an EncryptedID), ` +
        'so which one is the user would be a guess. Check the IdP application.',
    );
  }
  return firstChild(subject, SAML_NS, 'NameID');
}

/**
 * What node-saml does not check, on the signed assertion it returned (and the posted Response's envelope).
 * The fields are read from that assertion's XML rather than from node-saml's profile, where an attribute of
 * the same name (say "nameID" or "issuer") fills a field the assertion lacks, and an attribute sent twice is
 * its last element only (attributesOf).
 */
function checkAccepted(profile: Profile, posted: PostedResponse, exp: Expectations): ValidatedAssertion {
  const { response } = posted;
  checkVersion(response, 'Response');
  const destination = attr(response, 'Destination');
  // SAML Bindings 3.5.5.2: a signed message posted to an ACS must name it. A Response that carries a signature
  // counts as signed even when only its assertion's verified (the signature is there; the refusal comes after
  // node-saml accepted, so a forger learns nothing). An unsigned Response may omit it.
  if (destination === null && childElements(response, DS_NS, 'Signature').length > 0) {
    throw refused(
      401,
      `the Response is signed but has no Destination attribute, which SAML requires of a signed response posted to an ACS; ` +
        `have the IdP application set Destination to this region's ACS URL "${exp.acsUrl}" (see the SP metadata).`,
    );
  }
  if (destination !== null && destination !== exp.acsUrl) {
    throw refused(401, `the response is addressed to "${quote(destination, 200)}", not to this region's ACS URL "${exp.acsUrl}"; add this URL to the IdP application's ACS URLs.`);
  }
  if (attr(firstChild(firstChild(response, SAMLP_NS, 'Status') ?? response, SAMLP_NS, 'StatusCode') ?? response, 'Value') !== STATUS_SUCCESS) {
    throw statusRefusal(response, null);
  }
  let signed: Element;
  try {
    signed = parseXml(profile.getAssertionXml?.() ?? '', SIGNED_LIMITS).root;
  } catch {
    throw refused(401, 'the signed assertion could not be read back within the size limits; check the IdP application against the SP metadata.');
  }
  if (!is(signed, SAML_NS, 'Assertion')) throw refused(401, NOT_SIGNED);
  checkVersion(signed, 'assertion');
  const issuers = [text(firstChild(signed, SAML_NS, 'Issuer')), text(firstChild(response, SAML_NS, 'Issuer'))];
  if (issuers[0] === null) throw refused(401, 'the assertion names no Issuer.');
  for (const issuer of issuers) {
    if (issuer !== null && issuer !== exp.idpEntityId) {
      throw refused(401, `the response was issued by "${quote(issuer, 200)}", but this credential's IdP is "${quote(exp.idpEntityId, 200)}". Post it to the credential of that IdP.`);
    }
  }
  const nameIdEl = theNameId(signed);
  const nameId = text(nameIdEl);
  if (nameIdEl === null || nameId === null) throw refused(401, 'the assertion has no (unencrypted) NameID in its Subject.');
  // The Web Browser SSO profile (SAML 2.0 profiles, 4.1.4.2): the assertion must say the user authenticated.
  if (firstChild(signed, SAML_NS, 'AuthnStatement') === null) {
    throw refused(401, 'the assertion has no AuthnStatement: it does not say that the user signed in at the IdP, as the SAML Web Browser SSO profile requires; check the IdP application (an attribute query or a plain attribute assertion is not a sign-in).');
  }
  const confirmation = checkRecipient(signed, exp);
  // node-saml looked up the Response's InResponseTo, which may be unsigned; the bearer confirmation's is signed.
  const inResponseTo = attr(response, 'InResponseTo');
  if (confirmation.inResponseTo !== inResponseTo) {
    throw refused(401, inResponseTo !== null && confirmation.inResponseTo === null ? 'the response names the request it answers, but its signed assertion does not; sign in again.' : OTHER_REQUEST);
  }
  const assertionId = attr(signed, 'ID');
  if (!assertionId) throw refused(400, 'the assertion has no ID.');
  const conditions = firstChild(signed, SAML_NS, 'Conditions');
  const conditionsUntil = conditions ? parseTime(attr(conditions, 'NotOnOrAfter')) : null;
  const authns = childElements(signed, SAML_NS, 'AuthnStatement');
  const sessionIndex = attr(authns[0] as Element, 'SessionIndex');
  checkIssued(response, signed, authns, exp.skewMs);
  const sessionEnd = checkSessionEnd(authns, exp.skewMs);
  refuseLongSubject('NameID', nameId);
  if (sessionIndex !== null) refuseLongSubject('SessionIndex', sessionIndex);
  return {
    assertionId,
    inResponseTo,
    nameId,
    nameIdFormat: attr(nameIdEl, 'Format'),
    sessionIndex,
    attributes: attributesOf(signed),
    friendlyNames: friendlyNamesOf(signed),
    usableUntil: Math.min(confirmation.until, conditionsUntil ?? Infinity) + exp.skewMs,
    sessionEnd,
  };
}

/**
 * The longest NameID and SessionIndex taken. Both go into the sign-in token, which a browser or an application
 * carries in a header or cookie; a signed assertion bounded only by the post (256 KiB) made a token of ~135 KB
 * from a 100,000-character SessionIndex. Real ones are tens of characters (an email, a persistent id).
 */
export const MAX_SUBJECT_CHARS = 1024;

function refuseLongSubject(what: 'NameID' | 'SessionIndex', value: string): void {
  if (value.length <= MAX_SUBJECT_CHARS) return;
  throw refused(422, `the assertion's ${what} is ${value.length} characters long; at most ${MAX_SUBJECT_CHARS} are taken (it goes into the sign-in token). Check what the IdP application sends as its ${what}.`);
}

/**
 * The credential's certificates that verify a sign-in: a strong key (x509.ts) within its validity. One past its
 * notAfter verifies nothing: IdP metadata often keeps listing a certificate after a rotation, and its key, retired,
 * is no longer guarded as the current one is (metadata whose every certificate expired is refused, parse-metadata.ts).
 * The expired ones are kept to say so when one made the signature.
 */
function signingCertificates(certificates: Expectations['certificates'], now: number): { current: CertificateInfo[]; expired: CertificateInfo[] } {
  const current: CertificateInfo[] = [];
  const expired: CertificateInfo[] = [];
  for (const { pem } of certificates) {
    let read: ReturnType<typeof readCertificate>;
    try {
      read = readCertificate(pem);
    } catch {
      continue; // unreadable: verifies nothing (as strongSigningKey says)
    }
    if (read.weak !== null) continue;
    // The PEM as stored: what node-saml and signingCandidates are given.
    (Date.parse(read.info.notAfter) <= now ? expired : current).push({ ...read.info, pem });
  }
  return { current, expired };
}

/** The refusal of a response signed by an expired certificate of the IdP, or null when none of them made it. */
function expiredSigner(posted: PostedResponse, expired: readonly CertificateInfo[]): SamlRefusal | null {
  const signatures = [posted.response, ...(posted.assertion ? [posted.assertion] : [])].flatMap((el) => childElements(el, DS_NS, 'Signature'));
  // (signingCandidates takes every certificate for a response that carries no signature.)
  if (expired.length === 0 || signatures.length === 0) return null;
  const signer = signingCandidates(posted, expired.map((c) => c.pem))?.[0];
  const cert = expired.find((c) => c.pem === signer);
  if (cert === undefined) return null;
  return refused(
    401,
    `the SAML response is signed with the IdP's certificate ${certificateLabel(cert)}, which expired on ${cert.notAfter.slice(0, 10)}: an expired certificate verifies no sign-in. ` +
      "Have the IdP sign with its current certificate (listed in its metadata), then sign in again.",
    'signed by an expired certificate',
  );
}

/**
 * Validates a parsed SAMLResponse for `exp`: node-saml, then our checks. Throws an AppError (4xx) that says
 * what to fix; the replay cache and the IdP-initiated rule are the caller's.
 */
export async function validateResponse(posted: PostedResponse, exp: Expectations): Promise<ValidatedAssertion> {
  const { current, expired } = signingCertificates(exp.certificates, exp.certificatesAt.getTime());
  const pems = current.map((c) => c.pem);
  const candidates = signingCandidates(posted, pems);
  // (None at all: every certificate of the IdP expired, or is weak; node-saml would verify nothing either.)
  if ((candidates === null || candidates.length === 0) && posted.assertion !== null) {
    // Signed, with one assertion, and no certificate of the IdP made any of its signatures: refused without
    // node-saml's full check (a parse and a digest of the whole document), so a forged post costs a parse.
    // Answered as node-saml would: a response to no outstanding login as such, whatever its signature; else
    // not signed (with an assertion to read, node-saml's only other answer). A response without a single
    // assertion (an IdP's error status, an encrypted assertion) still goes to node-saml, which names those.
    const inResponseTo = attr(posted.response, 'InResponseTo');
    if (inResponseTo && (await exp.requests.getAsync(inResponseTo)) === null) throw notStarted('no outstanding request (checked before the signature)');
    const byExpired = expiredSigner(posted, expired);
    if (byExpired !== null) throw byExpired;
    throw refused(401, NOT_SIGNED, 'no certificate verifies a signature value');
  }
  const sp = serviceProvider({
    entityId: exp.spEntityId,
    acsUrl: exp.acsUrl,
    idpCertificates: candidates ?? pems.slice(0, 1),
    requests: exp.requests,
    skewMs: exp.skewMs,
  });
  let profile: Profile | null;
  try {
    ({ profile } = await sp.validatePostResponseAsync({ SAMLResponse: Buffer.from(posted.xml, 'utf8').toString('base64') }));
  } catch (err) {
    throw mapLibraryError(err, posted, exp);
  }
  if (profile === null) throw statusRefusal(posted.response, 'no profile');
  return checkAccepted(profile, posted, exp);
}
