/**
 * Reads SAML 2.0 IdP metadata and decides whether it can be used to trust an identity provider:
 * exactly one IdP, a usable SSO endpoint, at least one current signing certificate, not stale,
 * and, when the document is signed, a signature that verifies.
 */
import type { Element } from '@xmldom/xmldom';
import { CONTROL_CHARACTER } from '../control-characters';
import { hasPlainHost } from '../http/url';
import { excerpt, MetadataError } from './errors';
import { cacheDurationMs } from './iso-duration';
import { pastValidUntil } from './valid-until';
import { certificateLabel, parseCertificate, type CertificateInfo } from './x509';
import { attr, childElements, descendantElements, DS_NS, htmlPageError, is, MD_NS, parseXml } from './xml-dom';
import { verifyRootSignature } from './xml-signature';

export { cacheDurationMs } from './iso-duration';

export interface ParsedMetadata {
  entityId: string;
  ssoServices: { binding: string; location: string }[];
  signingCertificates: (CertificateInfo & { expired: boolean })[];
  validUntil: string | null;
  /** raw ISO-8601 duration */
  cacheDuration: string | null;
  signed: boolean;
  /**
   * SHA-256 fingerprint of the certificate the document's signature verified with (null when unsigned).
   * A signature proves nothing by itself: it counts only when this certificate is trusted for the credential.
   */
  signedBy: string | null;
}

export const BINDING_REDIRECT = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect';
export const BINDING_POST = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST';
const USABLE_BINDINGS = new Set([BINDING_REDIRECT, BINDING_POST]);

function shortBinding(binding: string): string {
  return binding.replace(/^urn:oasis:names:tc:SAML:2\.0:bindings:/, '');
}

function checkRoot(root: Element): void {
  if (is(root, MD_NS, 'EntityDescriptor') || is(root, MD_NS, 'EntitiesDescriptor')) return;
  if (root.localName?.toLowerCase() === 'html') throw htmlPageError(root.toString());
  const ns = root.namespaceURI ? ` in namespace ${excerpt(root.namespaceURI, 100)}` : ' without a namespace';
  throw new MetadataError(
    'not_metadata',
    `The document is XML but not SAML metadata: its root element is <${excerpt(root.localName ?? '', 60)}>${ns}, ` +
      `expected an EntityDescriptor or EntitiesDescriptor in namespace ${MD_NS}.`,
  );
}

// ---- validUntil / cacheDuration -------------------------------------------------------------

function parseDateTime(text: string): Date | null {
  const trimmed = text.trim();
  if (trimmed.length > 40) return null;
  // xs:dateTime without a zone is local time of an unknown zone; UTC is the only sane reading.
  const zoned = /(Z|[+-]\d{2}:\d{2})$/.test(trimmed) ? trimmed : `${trimmed}Z`;
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}/.test(zoned)) return null;
  const date = new Date(zoned);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** Checks validUntil on each element (pastValidUntil) and returns the earliest one, as ISO. */
function checkValidUntil(elements: Element[], now: Date, skewMs: number): string | null {
  let earliest: Date | null = null;
  for (const el of elements) {
    const raw = attr(el, 'validUntil');
    if (raw === null) continue;
    const date = parseDateTime(raw);
    if (date === null) {
      throw new MetadataError('not_metadata', `The metadata's validUntil "${excerpt(raw, 40)}" is not a valid date and time.`);
    }
    if (pastValidUntil(date.getTime(), now, skewMs)) {
      const beyond = skewMs > 0 ? ` (beyond the ${skewMs / 1000} s clock skew allowed)` : '';
      throw new MetadataError(
        'metadata_expired',
        `The metadata expired: its validUntil is ${date.toISOString()}, which has passed${beyond}. ` +
          'Ask the IdP for current metadata (a stale copy may list revoked certificates).',
      );
    }
    if (earliest === null || date < earliest) earliest = date;
  }
  return earliest === null ? null : earliest.toISOString();
}

function shortestCacheDuration(elements: Element[]): string | null {
  let best: { raw: string; ms: number } | null = null;
  for (const el of elements) {
    const raw = attr(el, 'cacheDuration');
    const ms = raw === null ? null : cacheDurationMs(raw);
    if (raw !== null && ms !== null && (best === null || ms < best.ms)) best = { raw: raw.trim(), ms };
  }
  return best === null ? null : best.raw;
}

// ---- picking the IdP entity -----------------------------------------------------------------

interface EntityInContext {
  entity: Element;
  /** EntitiesDescriptors enclosing the entity, outermost first */
  groups: Element[];
}

// Real aggregates nest EntitiesDescriptor two or three deep; a hostile document could nest thousands.
const MAX_ENTITIES_NESTING = 8;

function collectEntities(el: Element, groups: Element[], out: EntityInContext[]): void {
  if (is(el, MD_NS, 'EntityDescriptor')) {
    out.push({ entity: el, groups });
    return;
  }
  if (groups.length >= MAX_ENTITIES_NESTING) {
    throw new MetadataError('not_metadata', `EntitiesDescriptor elements are nested more than ${MAX_ENTITIES_NESTING} deep; this is not usable IdP metadata.`);
  }
  for (const child of childElements(el, MD_NS, 'EntityDescriptor')) collectEntities(child, [...groups, el], out);
  for (const child of childElements(el, MD_NS, 'EntitiesDescriptor')) collectEntities(child, [...groups, el], out);
}

function entityId(entity: Element): string {
  return attr(entity, 'entityID')?.trim() ?? '';
}

/** SAML 2.0 metadata (section 2.3.2) limits an entityID to 1024 characters. */
export const MAX_ENTITY_ID_CHARS = 1024;

function selectIdp(root: Element): EntityInContext {
  const entities: EntityInContext[] = [];
  collectEntities(root, [], entities);
  const idps = entities.filter((e) => childElements(e.entity, MD_NS, 'IDPSSODescriptor').length > 0);
  if (idps.length === 1) {
    if (entityId(idps[0].entity) === '') {
      throw new MetadataError('not_metadata', 'The IdP EntityDescriptor has no entityID.');
    }
    if (entityId(idps[0].entity).length > MAX_ENTITY_ID_CHARS) {
      throw new MetadataError('not_metadata', `The IdP's entityID is longer than the ${MAX_ENTITY_ID_CHARS} characters SAML allows.`);
    }
    return idps[0];
  }
  if (idps.length > 1) {
    const ids = idps.slice(0, 6).map((e) => excerpt(entityId(e.entity), 100) || '(no entityID)');
    const listed = ids.slice(0, 5).join(', ') + (ids.length > 5 ? ', …' : '');
    throw new MetadataError(
      'multiple_idps',
      `The document describes ${idps.length} identity providers (${listed}); ` +
        'use the metadata URL of the single IdP you want to connect.',
    );
  }
  const sp = entities.find((e) => childElements(e.entity, MD_NS, 'SPSSODescriptor').length > 0);
  if (sp !== undefined) {
    throw new MetadataError(
      'sp_metadata',
      `This is service-provider (SP) metadata for "${excerpt(entityId(sp.entity), 100)}", not identity-provider metadata: ` +
        "it has an SPSSODescriptor and no IDPSSODescriptor. Use your IdP's metadata URL.",
    );
  }
  if (entities.length === 0) {
    throw new MetadataError('not_metadata', 'The EntitiesDescriptor contains no EntityDescriptor.');
  }
  throw new MetadataError(
    'no_idp_descriptor',
    `The entity "${excerpt(entityId(entities[0].entity), 100)}" has no IDPSSODescriptor, so it does not describe a SAML identity provider.`,
  );
}

// ---- SSO endpoints --------------------------------------------------------------------------

/**
 * An http(s) URL whose host is plain (hasPlainHost): a sign-on endpoint the service may send users to. Not one
 * with a control character: the URL parser drops a tab or line break (`https://idp.exa&#10;mple.com`), so the
 * URL users were sent to was not the one stored and shown, nor the AuthnRequest's Destination.
 */
export function isHttpUrl(text: string): boolean {
  if (CONTROL_CHARACTER.test(text)) return false;
  try {
    const url = new URL(text);
    return (url.protocol === 'https:' || url.protocol === 'http:') && hasPlainHost(url);
  } catch {
    return false;
  }
}

/**
 * What is stored of the endpoints (SSO uses one): the first usable ones, each once, of a bounded length,
 * the https ones before the plain http ones (sign-on-policy.ts keeps plain http only at an allowed host:
 * an https endpoint listed after MAX_STORED_SSO_SERVICES plain http ones was cut, and the document refused
 * as offering plain http only).
 */
export const MAX_STORED_SSO_SERVICES = 8;
const MAX_LOCATION_CHARS = 2048;

function ssoServices(descriptors: Element[], entity: string): { binding: string; location: string }[] {
  const all = descriptors.flatMap((d) => childElements(d, MD_NS, 'SingleSignOnService'));
  const https: { binding: string; location: string }[] = [];
  const plain: { binding: string; location: string }[] = [];
  for (const el of all) {
    const s = { binding: attr(el, 'Binding')?.trim() ?? '', location: attr(el, 'Location')?.trim() ?? '' };
    if (!USABLE_BINDINGS.has(s.binding) || s.location.length > MAX_LOCATION_CHARS || !isHttpUrl(s.location)) continue;
    const kept = new URL(s.location).protocol === 'https:' ? https : plain;
    if (kept.length >= MAX_STORED_SSO_SERVICES || kept.some((u) => u.binding === s.binding && u.location === s.location)) continue;
    kept.push(s);
    if (https.length >= MAX_STORED_SSO_SERVICES) break;
  }
  const usable = [...https, ...plain].slice(0, MAX_STORED_SSO_SERVICES);
  if (usable.length > 0) return usable;
  const others = [...new Set(all.slice(0, 20).map((el) => excerpt(shortBinding(attr(el, 'Binding') ?? '(none)'), 60)))].slice(0, 5);
  const detail =
    all.length === 0
      ? 'it has no SingleSignOnService at all'
      : `its SingleSignOnService endpoints (${others.join(', ')}) have no HTTP-Redirect or HTTP-POST binding with an http(s) Location`;
  throw new MetadataError(
    'no_sso_service',
    `The IdP "${entity}" has no usable single sign-on endpoint: ${detail}. ` +
      'An HTTP-Redirect or HTTP-POST SingleSignOnService is required.',
  );
}

// ---- signing certificates -------------------------------------------------------------------

function signingKeyDescriptors(descriptors: Element[]): { signing: Element[]; encryptionOnly: number } {
  const keys = descriptors.flatMap((d) => childElements(d, MD_NS, 'KeyDescriptor'));
  const signing = keys.filter((k) => {
    const use = attr(k, 'use');
    return use === null || use.trim() === '' || use.trim() === 'signing';
  });
  return { signing, encryptionOnly: keys.length - signing.length };
}

/** Each certificate is parsed (X.509, hashing); this bounds that work per document. */
const MAX_SIGNING_CERTIFICATES = 20;
/** The PEM text of all signing certificates together. */
export const MAX_SIGNING_CERTIFICATES_CHARS = 64 * 1024;

function signingCertificates(descriptors: Element[], entity: string, now: Date): (CertificateInfo & { expired: boolean })[] {
  const { signing, encryptionOnly } = signingKeyDescriptors(descriptors);
  const texts = signing.flatMap((k) => descendantElements(k, DS_NS, 'X509Certificate')).map((el) => el.textContent ?? '');
  if (texts.length > MAX_SIGNING_CERTIFICATES) {
    throw new MetadataError(
      'no_signing_certificate',
      `The IdP "${entity}" lists ${texts.length} signing certificates; at most ${MAX_SIGNING_CERTIFICATES} are accepted (an IdP publishes one to three).`,
    );
  }
  if (texts.length === 0) {
    const hint = encryptionOnly > 0 ? ' (it only has encryption keys)' : '';
    throw new MetadataError(
      'no_signing_certificate',
      `The IdP "${entity}" publishes no signing certificate${hint}: ` +
        'a KeyDescriptor with use="signing" (or no use) holding an X509Certificate is required.',
    );
  }
  const certs: (CertificateInfo & { expired: boolean })[] = [];
  const problems: string[] = [];
  for (const text of texts) {
    try {
      const info = parseCertificate(text);
      if (certs.some((c) => c.fingerprintSha256 === info.fingerprintSha256)) continue;
      certs.push({ ...info, expired: new Date(info.notAfter).getTime() <= now.getTime() });
    } catch (err) {
      problems.push(err instanceof Error ? err.message : 'unreadable');
    }
  }
  if (certs.length === 0) {
    throw new MetadataError(
      'no_signing_certificate',
      `The IdP "${entity}" has no usable signing certificate: ${problems[0] ?? 'none could be read'}`,
    );
  }
  // The certificates are stored (SSO checks responses with them) and replicated: their bulk is bounded.
  const total = certs.reduce((n, c) => n + c.pem.length, 0);
  if (total > MAX_SIGNING_CERTIFICATES_CHARS) {
    throw new MetadataError(
      'no_signing_certificate',
      `The IdP "${entity}" lists signing certificates of ${Math.ceil(total / 1024)} KiB in all; at most ${MAX_SIGNING_CERTIFICATES_CHARS / 1024} KiB are accepted (a certificate is 1 to 2 KiB).`,
    );
  }
  if (certs.every((c) => c.expired)) throw expiredError(certs, entity);
  return certs;
}

function expiredError(certs: CertificateInfo[], entity: string): MetadataError {
  const day = (iso: string): string => iso.replace('T', ' ').replace(/\.\d{3}Z$/, ' UTC');
  if (certs.length === 1) {
    return new MetadataError(
      'certificate_expired',
      `The IdP "${entity}" has only one signing certificate (${certificateLabel(certs[0])}) and it expired on ` +
        `${day(certs[0].notAfter)}. Ask the IdP administrator to rotate it and publish the new certificate.`,
    );
  }
  const list = certs.map((c) => `${certificateLabel(c)} expired ${day(c.notAfter)}`).join('; ');
  return new MetadataError(
    'certificate_expired',
    `All ${certs.length} signing certificates of the IdP "${entity}" have expired (${list}). ` +
      'Ask the IdP administrator to publish a current certificate.',
  );
}

// ---- entry point ----------------------------------------------------------------------------

export interface ParseOptions {
  /** The time certificates and validUntil are judged at. */
  now: Date;
  /** The clock skew allowed on validUntil (pastValidUntil); default 0. */
  skewMs?: number;
}

/** Parses and validates IdP metadata. Throws MetadataError with an admin-readable message. */
export function parseIdpMetadata(xml: string, opts: ParseOptions): ParsedMetadata {
  const skewMs = opts.skewMs ?? 0;
  const parsed = parseXml(xml);
  checkRoot(parsed.root);

  let signature = verifyRootSignature(parsed.text, parsed.root);
  // From here on, read only what the signature covered.
  const root = signature === null ? parsed.root : parseXml(signature.xml).root;
  checkRoot(root);

  // Staleness first: an expired aggregate is refused as such, whatever it contains.
  checkValidUntil([root], opts.now, skewMs);
  const selected = selectIdp(root);
  const { groups } = selected;
  let { entity } = selected;
  if (signature === null && entity !== root) {
    // An unsigned aggregate around an EntityDescriptor signed on its own (by its ID): that signature must
    // verify as well, and what it covered is what is read.
    const own = verifyRootSignature(parsed.text, entity);
    if (own !== null) {
      signature = own;
      entity = parseXml(own.xml).root;
    }
  }
  const id = entityId(entity);
  const descriptors = childElements(entity, MD_NS, 'IDPSSODescriptor');
  const scope = [...groups, entity, ...descriptors];
  const validUntil = checkValidUntil(scope, opts.now, skewMs);
  // The entity id as quoted in messages: the document chose it.
  const shown = excerpt(id, 100);

  return {
    entityId: id,
    ssoServices: ssoServices(descriptors, shown),
    signingCertificates: signingCertificates(descriptors, shown, opts.now),
    validUntil,
    cacheDuration: shortestCacheDuration(scope),
    signed: signature !== null,
    signedBy: signature?.signer?.fingerprintSha256 ?? null,
  };
}
