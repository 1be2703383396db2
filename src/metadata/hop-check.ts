/**
 * The SSRF guard for one hop of a metadata fetch (fetch-metadata.ts): the URL is http(s) without credentials,
 * the host resolves to addresses the address policy allows (or is allow-listed, as written), and plain http
 * only for allow-listed hosts. Each refusal says what to change without revealing the internal network.
 */
import type { LookupAddress } from 'node:dns';
import { isIP } from 'node:net';
import { blockedReason, isAllowListed } from './address-policy';
import { excerpt, MetadataError } from './errors';
import type { Deadline } from './fetch-errors';
import type { ResolveHost } from './fetch-metadata';
import { LookupsBusyError } from './lookup-gate';

const MAX_URL_LENGTH = 4096;

export function parseTargetUrl(text: string, base?: URL): URL {
  let url: URL;
  try {
    if (text.length > MAX_URL_LENGTH) throw new Error('too long');
    url = new URL(text, base);
  } catch {
    const where = base ? ` (redirect from ${base.href})` : '';
    throw new MetadataError('invalid_url', `"${excerpt(text, 200)}" is not a valid URL${where}.`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new MetadataError(
      'scheme_not_allowed',
      `Metadata can only be fetched over https; "${url.protocol.replace(/:$/, '')}" URLs are not allowed (${url.href}).`,
    );
  }
  if (url.username !== '' || url.password !== '') {
    throw new MetadataError('invalid_url', 'Metadata URLs must not contain a user name or password.');
  }
  if (url.hostname === '') throw new MetadataError('invalid_url', `"${url.href}" has no host.`);
  url.hash = '';
  return url;
}

/** The host as written in a URL or Location value, or null when the reference has no authority. */
function writtenHost(text: string): string | null {
  const cleaned = text.replace(/[\t\n\r]/g, '').trim();
  const m = /^[a-z][a-z0-9+.-]*:[\\/]*([^\\/?#]*)/i.exec(cleaned) ?? /^[\\/]{2,}([^\\/?#]*)/.exec(cleaned);
  if (!m) return null;
  const authority = m[1].slice(m[1].lastIndexOf('@') + 1);
  const host = authority.startsWith('[') ? authority.slice(0, authority.indexOf(']') + 1) : authority.split(':')[0];
  return host.toLowerCase();
}

/**
 * The allow-list names addresses the way operators write them. An IPv4 host spelled any other way
 * ("2130706433", "0x7f000001", "127.1") is an obfuscation, not a reference to a trusted IdP, so
 * it never benefits from an allow-list entry even though it denotes the same address.
 */
export function allowListEligible(text: string, url: URL, inherited: boolean): boolean {
  if (isIP(url.hostname) !== 4) return true;
  const written = writtenHost(text);
  return written === null ? inherited : written === url.hostname;
}

function hostPort(url: URL): string {
  return `${url.hostname}:${url.port || (url.protocol === 'https:' ? '443' : '80')}`;
}

export function bareHost(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1');
}

async function resolveAddresses(hop: Hop, listed: boolean, resolveHost: ResolveHost, deadline: Deadline): Promise<LookupAddress[]> {
  const { url } = hop;
  const host = bareHost(url);
  const family = isIP(host);
  if (family !== 0) return [{ address: host, family }];
  let addresses: LookupAddress[];
  try {
    addresses = await deadline.race(resolveHost(host, deadline.signal));
  } catch (err) {
    if (deadline.expired) throw deadline.error(url);
    // The lookup gate's refusals (lookup-gate.ts) say it all; LookupsBusyError is the region's state, not the URL's.
    if (err instanceof MetadataError || err instanceof LookupsBusyError) throw err;
    // Not `instanceof Error`: Node's resolver errors can come from another realm (jest's), and were then taken
    // for no code at all (helper-131).
    const code = typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : 'lookup failed';
    const missing = code === 'ENOTFOUND' || code === 'ENODATA';
    // An allow-listed host is the operator's own: it may be told plainly that the name does not resolve.
    if (missing && !listed) throw noPublicAddress(hop);
    throw new MetadataError('unreachable', `Could not resolve the host "${host}" of ${url.href} (${missing ? 'no such host' : code}).`);
  }
  if (addresses.length === 0) throw listed ? new MetadataError('unreachable', `The host "${host}" of ${url.href} has no addresses.`) : noPublicAddress(hop);
  return addresses;
}

export interface Hop {
  url: URL;
  /** false when the URL spells an IPv4 host in a non-standard form */
  allowListEligible: boolean;
  from: URL | null;
}

export function viaText(from: URL | null): string {
  return from === null ? '' : ` (redirected from ${from.href})`;
}

function allowListRemedy(url: URL): string {
  return `Metadata URLs must reach a public host; an operator can allow an internal IdP by adding "${hostPort(url)}" to metadataAllowedHosts.`;
}

/**
 * A host name that has no address and one whose addresses are not all public get the same refusal: which
 * internal names exist, and what they resolve to, is not the caller's to learn (any organization's user
 * can try URLs, and the answer is also stored as the refresh job's last error).
 */
function noPublicAddress(hop: Hop): MetadataError {
  const { url } = hop;
  return new MetadataError(
    'blocked_address',
    `Refusing to fetch ${url.href}${viaText(hop.from)}: the host "${url.hostname}" does not resolve to a public address ` +
      `(it has no address, or one that is not public; which of the two is not shown). Check the host name. ${allowListRemedy(url)}`,
  );
}

/** An address the caller wrote itself is named, with its kind. */
function blockedError(hop: Hop, reason: string, listed: boolean): MetadataError {
  const { url } = hop;
  if (isIP(bareHost(url)) === 0) return noPublicAddress(hop); // a name: listed names are not checked
  // No allow-list hint for the cloud metadata endpoint: it is never an IdP, and the one address the guard is most for.
  const remedy = listed
    ? `The allow-list entry "${hostPort(url)}" applies only when the address is written as ${url.hostname}, and the URL wrote it in another form (127.1 or 2130706433 for 127.0.0.1, say; the URL above is shown normalized).`
    : reason.includes('cloud metadata address') ? 'Metadata URLs must reach a public host.' : allowListRemedy(url);
  return new MetadataError('blocked_address', `Refusing to fetch ${url.href}${viaText(hop.from)}: it points at ${reason}, which is not a public address. ${remedy}`);
}

/**
 * Checks one hop and returns the addresses to connect to. The address rule is applied before the
 * scheme rule so that e.g. http://127.0.0.2 is reported as the blocked address it is.
 */
export async function checkHop(
  hop: Hop,
  allowedHosts: readonly string[],
  resolveHost: ResolveHost,
  deadline: Deadline,
): Promise<LookupAddress[]> {
  const { url } = hop;
  const listed = isAllowListed(url, allowedHosts);
  const addresses = await resolveAddresses(hop, listed, resolveHost, deadline);
  if (listed && hop.allowListEligible) return addresses;
  for (const { address } of addresses) {
    const reason = blockedReason(address);
    if (reason !== null) throw blockedError(hop, reason, listed);
  }
  if (url.protocol === 'http:') {
    const via = viaText(hop.from);
    throw new MetadataError(
      'scheme_not_allowed',
      `Refusing to fetch ${url.href}${via} over plain http; use https. ` +
        `(Plain http is allowed only for hosts listed in metadataAllowedHosts.)`,
    );
  }
  return addresses;
}
