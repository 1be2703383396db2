/**
 * A SAML IdP simulator for tests: the test keys and certificates of test/fixtures/sso (and the run's expired
 * and dated ones, test/support/test-certs.ts), the IdP metadata naming them, and SAML Responses built and
 * signed (xml-crypto) the way an IdP would, or tampered with.
 */
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { signEnveloped } from '../../../bench/metadata-documents';
import { PROJECT_ROOT } from '../../../src/paths';
import { datedCert, runCerts } from '../../support/test-certs';

const DIR = path.join(PROJECT_ROOT, 'test', 'fixtures', 'sso');
export const SAMLP = 'urn:oasis:names:tc:SAML:2.0:protocol';
export const SAML = 'urn:oasis:names:tc:SAML:2.0:assertion';
export const REDIRECT = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect';
export const POST = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST';
export const EMAIL_FORMAT = 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress';
export const PERSISTENT_FORMAT = 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent';

export interface Signer {
  name: string;
  key: string;
  cert: string;
}

/** `idp-a`, `idp-b` (a rotation's old and new key), `stranger` (listed nowhere), `weak-1024` (too short a key). */
export function signer(name: 'idp-a' | 'idp-b' | 'stranger' | 'weak-1024'): Signer {
  return { name, key: fs.readFileSync(path.join(DIR, `${name}.key.pem`), 'utf8'), cert: fs.readFileSync(path.join(DIR, `${name}.cert.pem`), 'utf8') };
}

/** A certificate valid January 2020 only, and its key (the run's: test/support/test-certs.ts). */
export function expiredSigner(): Signer {
  const run = runCerts();
  return { name: 'expired', key: run.expiredKey, cert: run.certs.expiredPem };
}

/**
 * A certificate with subject CN=`cn` valid from `start` to `end` (openssl's YYYYMMDDHHMMSSZ), and its key
 * (the run's dating key: no key is generated here).
 */
export function datedSigner(cn: string, start: string, end: string): Signer {
  return { name: cn, ...datedCert(cn, start, end) };
}

const bare = (pem: string) => pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');

/** `validUntil`: the EntityDescriptor's (ISO), when the document should have one. */
export function idpMetadata(o: { entityId: string; ssoUrl: string; certs: Signer[]; bindings?: string[]; validUntil?: string }): string {
  const keys = o.certs
    .map((s) => `<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>${bare(s.cert)}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>`)
    .join('');
  const services = (o.bindings ?? [REDIRECT, POST]).map((b) => `<md:SingleSignOnService Binding="${b}" Location="${o.ssoUrl}"/>`).join('');
  return (
    `<?xml version="1.0"?><md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="${o.entityId}"${o.validUntil ? ` validUntil="${o.validUntil}"` : ''}>` +
    `<md:IDPSSODescriptor protocolSupportEnumeration="${SAMLP}">${keys}<md:NameIDFormat>${EMAIL_FORMAT}</md:NameIDFormat>${services}</md:IDPSSODescriptor></md:EntityDescriptor>`
  );
}

/** The AuthnRequest carried by an HTTP-Redirect login's Location. */
export function requestFromRedirect(location: string): { xml: string; id: string; acs: string; relayState: string | null; issuer: string } {
  const url = new URL(location);
  const xml = zlib.inflateRawSync(Buffer.from(url.searchParams.get('SAMLRequest') ?? '', 'base64')).toString('utf8');
  return { xml, ...fieldsOf(xml), relayState: url.searchParams.get('RelayState') };
}

export function fieldsOf(requestXml: string): { id: string; acs: string; issuer: string } {
  const pick = (re: RegExp) => re.exec(requestXml)?.[1] ?? '';
  return { id: pick(/ ID="([^"]+)"/), acs: pick(/AssertionConsumerServiceURL="([^"]+)"/), issuer: pick(/<saml:Issuer\b[^>]*>([^<]+)</) };
}

export interface ResponseSpec {
  issuer: string;
  audience: string;
  /** The Conditions' AudienceRestriction elements, each with its Audience values (default: one naming `audience`). */
  audienceRestrictions?: string[][];
  acs: string;
  inResponseTo: string | null;
  nameId: string;
  nameIdFormat?: string;
  attributes?: Record<string, string[]>;
  notBefore?: Date;
  notOnOrAfter?: Date;
  destination?: string;
  recipient?: string;
  responseId?: string;
  assertionId?: string;
  sessionIndex?: string;
  encrypted?: boolean;
  /** false: an assertion without an AuthnStatement (attributes only). */
  authnStatement?: boolean;
}

let counter = 0;
export const newId = (kind: string) => `_${kind}${Date.now().toString(16)}${(counter++).toString(16)}${Math.random().toString(16).slice(2, 10)}`;

export function assertionXml(s: ResponseSpec, id = s.assertionId ?? newId('a')): string {
  const now = Date.now();
  const notBefore = (s.notBefore ?? new Date(now - 30_000)).toISOString();
  const notOnOrAfter = (s.notOnOrAfter ?? new Date(now + 5 * 60_000)).toISOString();
  const irt = s.inResponseTo ? ` InResponseTo="${s.inResponseTo}"` : '';
  const restrictions = (s.audienceRestrictions ?? [[s.audience]])
    .map((r) => `<saml:AudienceRestriction>${r.map((a) => `<saml:Audience>${a}</saml:Audience>`).join('')}</saml:AudienceRestriction>`)
    .join('');
  const attrs = Object.entries(s.attributes ?? {})
    .map(([name, values]) => `<saml:Attribute Name="${name}">${values.map((v) => `<saml:AttributeValue>${v}</saml:AttributeValue>`).join('')}</saml:Attribute>`)
    .join('');
  return (
    `<saml:Assertion xmlns:saml="${SAML}" ID="${id}" Version="2.0" IssueInstant="${new Date(now).toISOString()}">` +
    `<saml:Issuer>${s.issuer}</saml:Issuer>` +
    `<saml:Subject><saml:NameID Format="${s.nameIdFormat ?? EMAIL_FORMAT}">${s.nameId}</saml:NameID>` +
    `<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData${irt} NotOnOrAfter="${notOnOrAfter}" Recipient="${s.recipient ?? s.acs}"/></saml:SubjectConfirmation></saml:Subject>` +
    `<saml:Conditions NotBefore="${notBefore}" NotOnOrAfter="${notOnOrAfter}">${restrictions}</saml:Conditions>` +
    (s.authnStatement === false
      ? ''
      : `<saml:AuthnStatement AuthnInstant="${new Date(now).toISOString()}" SessionIndex="${s.sessionIndex ?? '_session-1'}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:Password</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>`) +
    (attrs ? `<saml:AttributeStatement>${attrs}</saml:AttributeStatement>` : '') +
    '</saml:Assertion>'
  );
}

export function responseXml(s: ResponseSpec, assertion: string): string {
  const irt = s.inResponseTo ? ` InResponseTo="${s.inResponseTo}"` : '';
  const body = s.encrypted ? `<saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#"/></saml:EncryptedAssertion>` : assertion;
  return (
    `<samlp:Response xmlns:samlp="${SAMLP}" xmlns:saml="${SAML}" ID="${s.responseId ?? newId('r')}" Version="2.0" IssueInstant="${new Date().toISOString()}" Destination="${s.destination ?? s.acs}"${irt}>` +
    `<saml:Issuer>${s.issuer}</saml:Issuer>` +
    '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>' +
    body +
    '</samlp:Response>'
  );
}

/** Signs the element with `id` (enveloped, exclusive c14n, RSA-SHA256), the signature right after its Issuer. */
export function signElement(xml: string, id: string, by: Signer): string {
  return signEnveloped(xml, by, `//*[@ID='${id}']`, { reference: `//*[@ID='${id}']/*[local-name(.)='Issuer']`, action: 'after' });
}

/** A response whose assertion (default) or whole response is signed by `by`. */
export function signedResponse(s: ResponseSpec, by: Signer, what: 'assertion' | 'response' = 'assertion'): string {
  const assertionId = s.assertionId ?? newId('a');
  const responseId = s.responseId ?? newId('r');
  const spec = { ...s, assertionId, responseId };
  if (what === 'response') return signElement(responseXml(spec, assertionXml(spec, assertionId)), responseId, by);
  return responseXml(spec, signElement(assertionXml(spec, assertionId), assertionId, by));
}

export const b64 = (xml: string) => Buffer.from(xml, 'utf8').toString('base64');
