/**
 * This service as the SAML service provider (SP) of one credential: its entity ID (the same in every
 * region, so the IdP is configured once), each region's assertion consumer service (ACS) URL, the SP
 * metadata document, and the AuthnRequest that starts a login (HTTP-Redirect or HTTP-POST binding).
 * Requests are not signed: the SP has no key, and IdPs do not require signed requests by default.
 */
import crypto from 'node:crypto';
import zlib from 'node:zlib';
import type { RegionConfig } from '../config';
import { regionUrl } from '../console/deployment';
import { BINDING_POST, BINDING_REDIRECT } from '../metadata/parse-metadata';

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
 * so an IdP that takes one metadata upload accepts logins started in any region.
 */
export function spMetadataXml(credentialId: string, region: RegionConfig, regions: readonly RegionConfig[]): string {
  const others = regions.filter((r) => r.id !== region.id);
  const acs = [region, ...others]
    .map((r, i) => `    <md:AssertionConsumerService Binding="${BINDING_POST}" Location="${xmlEscape(acsUrl(r, credentialId))}" index="${i}"${i === 0 ? ' isDefault="true"' : ''}/>`)
    .join('\n');
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="${xmlEscape(spEntityId(credentialId))}">`,
    `  <md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="true" protocolSupportEnumeration="${SAMLP_NS}">`,
    ...[NAMEID_EMAIL, NAMEID_PERSISTENT, NAMEID_UNSPECIFIED].map((f) => `    <md:NameIDFormat>${f}</md:NameIDFormat>`),
    acs,
    '  </md:SPSSODescriptor>',
    '</md:EntityDescriptor>',
    '',
  ].join('\n');
}

/** An xs:ID: starts with a letter or underscore; 160 random bits. */
export function newRequestId(): string {
  return `_${crypto.randomBytes(20).toString('hex')}`;
}

export function authnRequestXml(o: { id: string; credentialId: string; destination: string; acs: string; now: Date }): string {
  return (
    `<samlp:AuthnRequest xmlns:samlp="${SAMLP_NS}" xmlns:saml="${SAML_NS}" ID="${o.id}" Version="2.0" ` +
    `IssueInstant="${o.now.toISOString()}" Destination="${xmlEscape(o.destination)}" ` +
    `AssertionConsumerServiceURL="${xmlEscape(o.acs)}" ProtocolBinding="${BINDING_POST}">` +
    `<saml:Issuer>${xmlEscape(spEntityId(o.credentialId))}</saml:Issuer>` +
    `<samlp:NameIDPolicy Format="${NAMEID_UNSPECIFIED}" AllowCreate="true"/>` +
    '</samlp:AuthnRequest>'
  );
}

export interface SsoService {
  binding: string;
  location: string;
}

/** HTTP-Redirect when the IdP offers it (no page of ours in between), else HTTP-POST. */
export function pickSsoService(services: readonly SsoService[]): SsoService | null {
  return services.find((s) => s.binding === BINDING_REDIRECT) ?? services.find((s) => s.binding === BINDING_POST) ?? null;
}

/** HTTP-Redirect binding: the request deflated (raw DEFLATE), base64, as query parameters of the SSO URL. */
export function redirectUrl(location: string, requestXml: string, relayState: string | null): string {
  const url = new URL(location);
  url.searchParams.append('SAMLRequest', zlib.deflateRawSync(Buffer.from(requestXml, 'utf8')).toString('base64'));
  if (relayState !== null) url.searchParams.append('RelayState', relayState);
  return url.toString();
}

/** HTTP-POST binding: a page whose form posts the request (plain base64) to the IdP as soon as it loads. */
export function postForm(location: string, requestXml: string, relayState: string | null, nonce: string): string {
  const field = (name: string, value: string) => `<input type="hidden" name="${name}" value="${xmlEscape(value)}">`;
  return [
    '<!DOCTYPE html>',
    '<html><head><meta charset="utf-8"><title>Signing in…</title></head><body>',
    `<form method="post" action="${xmlEscape(location)}">`,
    field('SAMLRequest', Buffer.from(requestXml, 'utf8').toString('base64')),
    relayState !== null ? field('RelayState', relayState) : '',
    '<noscript><p>JavaScript is off: press the button to continue to your identity provider.</p><button type="submit">Continue</button></noscript>',
    '</form>',
    `<script nonce="${nonce}">document.forms[0].submit();</script>`,
    '</body></html>',
  ].join('\n');
}
