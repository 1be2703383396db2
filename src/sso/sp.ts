/**
 * This service as the SAML service provider (SP) of one credential: its entity ID (the same in every
 * region, so the IdP is configured once), each region's assertion consumer service (ACS) URL, the SP
 * metadata document (ours: it lists every region's ACS URL, which @node-saml/node-saml's cannot), and the
 * node-saml SP that writes the AuthnRequests and validates the responses. Requests are not signed: the SP
 * has no key, and IdPs do not require signed requests by default.
 */
import type { CacheProvider, SAML } from '@node-saml/node-saml';
import { nodeSaml } from '../on-first-use';
import type { RegionConfig } from '../config-schema';
import { regionUrl } from '../console/deployment';
import { BINDING_POST, BINDING_REDIRECT } from '../metadata/parse-metadata';
import { REQUEST_TTL_SECONDS } from './store';

export const SAMLP_NS = 'urn:oasis:names:tc:SAML:2.0:protocol';
export const SAML_NS = 'urn:oasis:names:tc:SAML:2.0:assertion';
export const NAMEID_EMAIL = 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress';
export const NAMEID_UNSPECIFIED = 'urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified';
const NAMEID_PERSISTENT = 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent';

export const SSO_PATH = '/sso/saml';

/** Region-independent, so one registration at the IdP serves every region. */
export function spEntityId(credentialId: string): string {
  return `urn:saml-credential-service:sp:${credentialId}`;
}

export function acsUrl(region: RegionConfig, credentialId: string): string {
  return `${regionUrl(region)}${SSO_PATH}/${credentialId}/acs`;
}

export function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/**
 * SP metadata as served by `region`: its own ACS is the default (index 0); the other regions' ACS URLs follow,
 * so an IdP that takes one metadata upload accepts logins started in any region. WantAssertionsSigned is
 * "false" because that is what is enforced: a response signed on the Response alone is accepted (its
 * signature covers the assertion inside it), as is one signed on the Assertion alone (serviceProvider below;
 * one of the two must verify, response.ts). Saying "true" promised a check that is not made; metadata has no
 * way to say "the Response or the Assertion".
 */
export function spMetadataXml(credentialId: string, region: RegionConfig, regions: readonly RegionConfig[]): string {
  const others = regions.filter((r) => r.id !== region.id);
  const acs = [region, ...others]
    .map((r, i) => `    <md:AssertionConsumerService Binding="${BINDING_POST}" Location="${xmlEscape(acsUrl(r, credentialId))}" index="${i}"${i === 0 ? ' isDefault="true"' : ''}/>`)
    .join('\n');
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="${xmlEscape(spEntityId(credentialId))}">`,
    `  <md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="false" protocolSupportEnumeration="${SAMLP_NS}">`,
    ...[NAMEID_EMAIL, NAMEID_PERSISTENT, NAMEID_UNSPECIFIED].map((f) => `    <md:NameIDFormat>${f}</md:NameIDFormat>`),
    acs,
    '  </md:SPSSODescriptor>',
    '</md:EntityDescriptor>',
    '',
  ].join('\n');
}

/** What node-saml needs to be the SP of one credential in one region. */
export interface SpOptions {
  /** spEntityId() of the credential. */
  entityId: string;
  acsUrl: string;
  /** The PEM certificates a response may be signed with: the credential's IdP metadata, never the message. */
  idpCertificates: readonly string[];
  /** The outstanding login requests of this region (store.ts). */
  requests: CacheProvider;
  /** Logins: the id of the AuthnRequest (store.ts RequestIds: it carries what the login has to remember). */
  requestId?: () => string;
  /** Logins: the IdP's sign-on URL and whether it takes HTTP-POST (no deflate) rather than HTTP-Redirect. */
  ssoUrl?: string;
  postBinding?: boolean;
  /** Responses: the tolerated clock difference. */
  skewMs?: number;
}

export function serviceProvider(o: SpOptions): SAML {
  const saml = nodeSaml();
  return new saml.SAML({
    issuer: o.entityId,
    audience: o.entityId,
    callbackUrl: o.acsUrl,
    idpCert: [...o.idpCertificates],
    entryPoint: o.ssoUrl,
    skipRequestCompression: o.postBinding === true,
    // Let the IdP send the NameID format its application is configured with, and ask for no particular
    // authentication method (node-saml's default would demand a password over TLS).
    identifierFormat: NAMEID_UNSPECIFIED,
    disableRequestedAuthnContext: true,
    // The signature may cover the Response or its Assertion (IdPs differ); one of them must verify.
    wantAuthnResponseSigned: false,
    wantAssertionsSigned: false,
    acceptedClockSkewMs: o.skewMs ?? 0,
    // A response without InResponseTo is IdP-initiated, which service.ts accepts only when enabled.
    validateInResponseTo: saml.ValidateInResponseTo.ifPresent,
    requestIdExpirationPeriodMs: REQUEST_TTL_SECONDS * 1000,
    cacheProvider: o.requests,
    ...(o.requestId ? { generateUniqueId: o.requestId } : {}),
  });
}

export interface SsoService {
  binding: string;
  location: string;
}

/** HTTP-Redirect when the IdP offers it (no page of ours in between), else HTTP-POST. */
export function pickSsoService(services: readonly SsoService[]): SsoService | null {
  return services.find((s) => s.binding === BINDING_REDIRECT) ?? services.find((s) => s.binding === BINDING_POST) ?? null;
}

/**
 * HTTP-POST binding: a page whose form posts node-saml's message (SAMLRequest, RelayState) to the IdP as soon
 * as it loads. Ours rather than node-saml's page, whose inline handlers a Content-Security-Policy would block.
 */
export function postForm(location: string, fields: Record<string, string>, nonce: string): string {
  const field = (name: string, value: string) => `<input type="hidden" name="${xmlEscape(name)}" value="${xmlEscape(value)}">`;
  return [
    '<!DOCTYPE html>',
    '<html><head><meta charset="utf-8"><title>Signing in…</title></head><body>',
    `<form method="post" action="${xmlEscape(location)}">`,
    ...Object.entries(fields).map(([name, value]) => field(name, value)),
    '<noscript><p>JavaScript is off: press the button to continue to your identity provider.</p><button type="submit">Continue</button></noscript>',
    '</form>',
    `<script nonce="${nonce}">document.forms[0].submit();</script>`,
    '</body></html>',
  ].join('\n');
}
