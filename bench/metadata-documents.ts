/**
 * IdP metadata documents at the edge of what the service accepts, and hostile ones it must refuse cheaply.
 * Used by `npm run bench -- stall` and by the tests of the parser's limits.
 * The signing key in bench/fixtures is a throwaway made for this (openssl req -x509 -newkey rsa:2048).
 */
import fs from 'node:fs';
import path from 'node:path';
import { SignedXml } from 'xml-crypto';
import { PROJECT_ROOT } from '../src/paths';
import { XML_LIMITS } from '../src/metadata/xml-limits';

const FIXTURES = path.join(PROJECT_ROOT, 'test', 'fixtures', 'idp-metadata');
const SIGNER_DIR = path.join(PROJECT_ROOT, 'bench', 'fixtures');
const MiB = 1024 * 1024;

export const okta = (): string => fs.readFileSync(path.join(FIXTURES, 'okta.xml'), 'utf8');

/**
 * Okta's metadata padded with an extension element to the limits: `elements` elements in all, two attributes
 * each, and text up to about `chars` characters. The parser ignores the extension, so the document is accepted.
 */
export function padded(opts: { elements?: number; chars?: number; id?: string } = {}): string {
  const base = okta().replace(/^<\?xml[^>]*\?>/, '');
  const baseElements = (base.match(/<[A-Za-z]/g) ?? []).length;
  // The extension adds two elements of its own.
  const pads = (opts.elements ?? XML_LIMITS.maxElements) - baseElements - 2;
  const room = (opts.chars ?? MiB - 4096) - base.length - 200;
  const filler = 'x'.repeat(Math.max(0, Math.floor(room / pads) - 40));
  const body = Array.from({ length: pads }, (_, i) => `<p:e a="${i}" b="y">${filler}</p:e>`).join('');
  const root = `<md:EntityDescriptor ${opts.id ? `ID="${opts.id}" ` : ''}`;
  return base
    .replace('<md:EntityDescriptor ', root)
    .replace('</md:IDPSSODescriptor>', `</md:IDPSSODescriptor><md:Extensions><p:pad xmlns:p="urn:bench:pad">${body}</p:pad></md:Extensions>`);
}

/** `xml` with an enveloped RSA-SHA256 signature over its root (which must carry an ID), as IdPs sign metadata. */
export function signed(xml: string): string {
  return signRoot(xml, { key: fs.readFileSync(path.join(SIGNER_DIR, 'bench-signing-key.pem')), cert: fs.readFileSync(path.join(SIGNER_DIR, 'bench-signing-cert.pem')) });
}

/** `xml` signed over its root by `by` (its certificate in the KeyInfo): enveloped, exclusive c14n, RSA-SHA256. */
export function signRoot(xml: string, by: Signing): string {
  return signEnveloped(xml, by, '/*', { reference: '/*', action: 'prepend' });
}

export interface Signing {
  key: string | Buffer;
  cert: string | Buffer;
}

/** An enveloped RSA-SHA256, exclusive-c14n signature by `by` over the element at `xpath`, placed at `location`. */
export function signEnveloped(xml: string, by: Signing, xpath: string, location: { reference: string; action: 'prepend' | 'after' }): string {
  const sig = new SignedXml({
    privateKey: by.key,
    publicCert: by.cert,
    signatureAlgorithm: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
    canonicalizationAlgorithm: 'http://www.w3.org/2001/10/xml-exc-c14n#',
  });
  sig.addReference({
    xpath,
    digestAlgorithm: 'http://www.w3.org/2001/04/xmlenc#sha256',
    transforms: ['http://www.w3.org/2000/09/xmldsig#enveloped-signature', 'http://www.w3.org/2001/10/xml-exc-c14n#'],
  });
  sig.computeSignature(xml, { location });
  return sig.getSignedXml();
}

/** Nested `depth` deep inside the IdP descriptor's extension: the deepest document that is still accepted. */
export function deep(depth = XML_LIMITS.maxDepth - 3): string {
  return okta().replace('</md:IDPSSODescriptor>', `<md:Extensions>${'<p:d xmlns:p="urn:bench:pad">'.repeat(depth)}${'</p:d>'.repeat(depth)}</md:Extensions></md:IDPSSODescriptor>`);
}

/** The largest documents the service accepts: every limit reached at once, unsigned and signed. */
export function largestAccepted(): Record<string, string> {
  return {
    'max elements, attributes and size': padded(),
    // The signature adds 14 elements of its own.
    'max elements, size, signed': signed(padded({ id: '_bench', elements: XML_LIMITS.maxElements - 14, chars: MiB - 8192 })),
    'max depth': deep(),
  };
}

/** Documents an attacker would serve; each must be refused, quickly. `size` in characters (default 1 MiB). */
export function hostile(size = MiB - 1024): Record<string, string> {
  const repeat = (unit: string, prefix = '', suffix = '') => prefix + unit.repeat(Math.floor((size - prefix.length - suffix.length) / unit.length)) + suffix;
  const cert = (text: string) => okta().replace(/<ds:X509Certificate>[^<]*<\/ds:X509Certificate>/, `<ds:X509Certificate>${text}</ds:X509Certificate>`);
  return {
    '<title repeated (HTML)': repeat('<title', '<html>'),
    '<title repeated (no HTML)': repeat('<title'),
    '-----BEGIN A----- repeated in a certificate': cert(repeat('-----BEGIN A-----', '', '').slice(0, size - 4096)),
    'elements nested without end': repeat('<a>'),
    'empty elements': repeat('<a/>', '<r>', '</r>'),
    'attributes on one element': repeat(' a="1"', '<r', '/>'),
    'NUL character reference': okta().replace('entityID="', 'entityID="&#0;'),
    'lone surrogate reference': okta().replace('entityID="', 'entityID="&#xD800;'),
  };
}
