/**
 * The user's email address from a validated assertion: an attribute the credential names in email_claims,
 * else an email-format NameID; when there is none, a message that says what to change.
 */
import { quote } from './refusal';
import type { ValidatedAssertion } from './response';
import { NAMEID_EMAIL, NAMEID_UNSPECIFIED } from './sp';

/**
 * An address a mail system would deliver to, as a sign-in's identity: a local part of 1–64 characters without
 * spaces, controls (C0, DEL, C1), invisible format characters (bidi overrides, zero-width joiners: an address
 * that reads like another) or the characters RFC 5322 reserves; a domain of dot-separated labels of letters,
 * digits and hyphens (not at either end of a label), at most 63 each and 253 in all.
 */
const LOCAL_PART = /^[^\s\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Co}\p{Cn}@<>()[\]\\,;:"]{1,64}$/u;
const DOMAIN_LABEL = /^[\p{L}\p{M}\p{N}](?:[\p{L}\p{M}\p{N}-]{0,61}[\p{L}\p{M}\p{N}])?$/u;

/** The address with its domain in lower case (domains are case-insensitive), or null when it is none. */
export function emailAddress(value: string): string | null {
  const at = value.lastIndexOf('@');
  if (at < 1) return null;
  const local = value.slice(0, at);
  const domain = value.slice(at + 1);
  if (!LOCAL_PART.test(local) || local.startsWith('.') || local.endsWith('.') || local.includes('..')) return null;
  if (domain.length === 0 || domain.length > 253 || !domain.split('.').every((label) => DOMAIN_LABEL.test(label))) return null;
  return `${local}@${domain.toLowerCase()}`;
}

export type EmailOutcome = { email: string } | { problem: string };

/** The first of `claims` present among the attributes (by Name or FriendlyName), else an email-format NameID. */
export function emailOf(a: ValidatedAssertion, claims: readonly string[]): EmailOutcome {
  for (const claim of claims) {
    // Own properties only: the IdP names the attributes ("constructor" is a name like any other).
    const name = Object.hasOwn(a.attributes, claim) ? claim : Object.hasOwn(a.friendlyNames, claim) ? a.friendlyNames[claim] : undefined;
    const value = name !== undefined && Object.hasOwn(a.attributes, name) ? a.attributes[name]?.find((v) => v !== '') : undefined;
    if (value === undefined) continue;
    const email = emailAddress(value);
    if (email !== null) return { email };
    return { problem: `the attribute "${quote(claim, 100)}" (the first of the credential's email_claims the IdP sent) holds "${quote(value, 100)}", which is not an email address. Map the user's email to it in the IdP, or change email_claims.` };
  }
  const format = a.nameIdFormat;
  const fromNameId = format === null || format === NAMEID_EMAIL || format === NAMEID_UNSPECIFIED ? emailAddress(a.nameId) : null;
  if (fromNameId !== null) return { email: fromNameId };
  const listed = claims.length ? `none of the credential's email_claims (${claims.map((c) => `"${quote(c, 60)}"`).join(', ')}) is among its attributes` : 'the credential has no email_claims';
  // A transient or persistent NameID may look like an address, but the IdP does not say it is the user's email.
  const nameIdProblem =
    format !== null && emailAddress(a.nameId) !== null
      ? `the NameID's format is ${quote(format.replace(/^urn:oasis:names:tc:SAML:\d\.\d:nameid-format:/, ''), 100)}, not emailAddress (or unspecified), so it is not taken as the email`
      : 'the NameID is not an email address';
  return {
    problem:
      `the IdP sent no email address for the user: ${listed}, and ${nameIdProblem}. ` +
      "Send the email as an attribute named in email_claims (or add that attribute's name to email_claims), or use the emailAddress NameID format.",
  };
}
