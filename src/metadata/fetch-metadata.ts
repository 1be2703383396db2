/**
 * Server-side fetch of a user-supplied IdP metadata URL that cannot be turned against our own
 * network (SSRF). For every hop, redirects included:
 *   1. only http(s) URLs without credentials;
 *   2. the host is resolved once and every address is checked against the address policy
 *      (skipped for hosts an operator allow-listed);
 *   3. plain http only for allow-listed hosts;
 *   4. the connection is pinned to the checked addresses through an undici Agent whose `lookup` answers
 *      with them, so a second DNS answer (rebinding) is never used. Agents are kept per origin and set of
 *      checked addresses (agentFor): a later fetch whose host resolves to the same checked addresses
 *      reuses an idle connection (keep-alive); one that resolves differently gets an agent of its own.
 * Time (connect and total) and size are bounded, and each limit has its own error.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import type { LookupAddress } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import { Agent, request } from 'undici';
import { blockedReason, isAllowListed } from './address-policy';
import { excerpt, MetadataError } from './errors';
import { formatBytes } from '../format-bytes';
import { decodeContentEncoding } from './content-encoding';
import { Deadline, describeFailure } from './fetch-errors';

export interface FetchOptions {
  /** "host:port" entries from config `metadataAllowedHosts` */
  allowedHosts: readonly string[];
  /** total time for all hops and the body; default 10000 */
  timeoutMs?: number;
  /** per connection, including the TLS handshake; default 5000 */
  connectTimeoutMs?: number;
  /** default 1 MiB */
  maxBytes?: number;
  /** default 3 */
  maxRedirects?: number;
  /** Ends the fetch early when it aborts (the request it was for has been answered). */
  signal?: AbortSignal;
}

export interface FetchResult {
  body: string;
  finalUrl: string;
  fetchedAt: Date;
  contentType: string | null;
}

/** Resolves a host name to all its addresses; replaceable so tests need no real DNS. */
export type ResolveHost = (hostname: string) => Promise<LookupAddress[]>;

export interface Limits {
  timeoutMs: number;
  connectTimeoutMs: number;
  maxBytes: number;
  maxRedirects: number;
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const MAX_URL_LENGTH = 4096;

const systemResolve: ResolveHost = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

function limitsFrom(opts: FetchOptions): Limits {
  return {
    timeoutMs: opts.timeoutMs ?? 10_000,
    connectTimeoutMs: opts.connectTimeoutMs ?? 5_000,
    maxBytes: opts.maxBytes ?? 1024 * 1024,
    maxRedirects: opts.maxRedirects ?? 3,
  };
}

function parseTargetUrl(text: string, base?: URL): URL {
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
function allowListEligible(text: string, url: URL, inherited: boolean): boolean {
  if (isIP(url.hostname) !== 4) return true;
  const written = writtenHost(text);
  return written === null ? inherited : written === url.hostname;
}

function hostPort(url: URL): string {
  return `${url.hostname}:${url.port || (url.protocol === 'https:' ? '443' : '80')}`;
}

function bareHost(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1');
}

async function resolveAddresses(hop: Hop, listed: boolean, resolveHost: ResolveHost, deadline: Deadline): Promise<LookupAddress[]> {
  const { url } = hop;
  const host = bareHost(url);
  const family = isIP(host);
  if (family !== 0) return [{ address: host, family }];
  let addresses: LookupAddress[];
  try {
    addresses = await deadline.race(resolveHost(host));
  } catch (err) {
    if (deadline.expired) throw deadline.error(url);
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

interface Hop {
  url: URL;
  /** false when the URL spells an IPv4 host in a non-standard form */
  allowListEligible: boolean;
  from: URL | null;
}

function viaText(from: URL | null): string {
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
    ? `The allow-list entry "${hostPort(url)}" applies only when the address is written as ${url.hostname}.`
    : reason.includes('cloud metadata address') ? 'Metadata URLs must reach a public host.' : allowListRemedy(url);
  return new MetadataError('blocked_address', `Refusing to fetch ${url.href}${viaText(hop.from)}: it points at ${reason}, which is not a public address. ${remedy}`);
}

/**
 * Checks one hop and returns the addresses to connect to. The address rule is applied before the
 * scheme rule so that e.g. http://127.0.0.2 is reported as the blocked address it is.
 */
async function checkHop(
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

/** A lookup that answers only with the addresses that were checked, for the one expected host. */
function pinnedLookup(expectedHost: string, addresses: LookupAddress[]): LookupFunction {
  return (hostname, options, callback) => {
    if (hostname.toLowerCase() !== expectedHost.toLowerCase()) {
      callback(new Error(`unexpected host ${hostname}`), []);
      return;
    }
    const family: unknown = options.family;
    const wanted = family === 4 || family === 'IPv4' ? 4 : family === 6 || family === 'IPv6' ? 6 : 0;
    const usable = wanted === 0 ? addresses : addresses.filter((a) => a.family === wanted);
    if (usable.length === 0) {
      callback(Object.assign(new Error(`no IPv${wanted} address for ${hostname}`), { code: 'ENOTFOUND' }), []);
    } else if (options.all === true) {
      callback(null, usable);
    } else {
      callback(null, usable[0].address, usable[0].family);
    }
  };
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | null {
  const value = headers[name];
  if (Array.isArray(value)) return value[0] ?? null;
  return value ?? null;
}

/** Drops a body we will not read; the stream reports its own abort, which is expected here. */
function discard(body: { on(event: 'error', listener: () => void): unknown; destroy(): unknown }): void {
  body.on('error', () => undefined);
  body.destroy();
}

/** The encoding an XML declaration names (`<?xml version="1.0" encoding="…"?>`), lower case, or null. */
const DECLARED_ENCODING = /^(?:\uFEFF|\u00EF\u00BB\u00BF)?\s*<\?xml\s[^>]*?\bencoding\s*=\s*["']([A-Za-z][A-Za-z0-9._-]*)["']/;

/**
 * The document's text. UTF-8 (a byte-order mark is dropped), or UTF-16 after its byte-order mark: the two
 * encodings every XML processor reads. Bytes that are not valid in it are refused, as XML makes them a fatal
 * error: replaced by U+FFFD they changed the entityID that was stored (a review found it). A document that
 * declares another encoding is read only when all its bytes are ASCII, which every ASCII-based encoding
 * reads alike; otherwise it is refused rather than read as UTF-8.
 */
function decodeBody(bytes: Buffer, url: URL): string {
  const utf16 = bytes[0] === 0xff && bytes[1] === 0xfe ? 'utf-16le' : bytes[0] === 0xfe && bytes[1] === 0xff ? 'utf-16be' : null;
  // Two shapes whose generic refusal (a NUL character, not XML) said nothing useful: said for what they are.
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
    throw new MetadataError(
      'not_xml',
      `The document at ${excerpt(url.href, 200)} is gzip-compressed data without a Content-Encoding saying so (it was not asked for compressed). Ask the IdP for plain XML.`,
    );
  }
  if (!utf16 && ((bytes[0] === 0x3c && bytes[1] === 0x00) || (bytes[0] === 0x00 && bytes[1] === 0x3c))) {
    throw new MetadataError(
      'not_xml',
      `The document at ${excerpt(url.href, 200)} looks like UTF-16 text without a byte-order mark; metadata is read as UTF-8, or UTF-16 with a byte-order mark. Ask the IdP for its metadata in UTF-8.`,
    );
  }
  if (!utf16) {
    const declared = DECLARED_ENCODING.exec(bytes.subarray(0, 256).toString('latin1'))?.[1]?.toLowerCase();
    if (declared !== undefined && declared !== 'utf-8' && declared !== 'utf8' && bytes.some((b) => b > 0x7f)) {
      throw new MetadataError(
        'not_xml',
        `The document at ${excerpt(url.href, 200)} declares the encoding "${excerpt(declared, 40)}" and has bytes outside ASCII; metadata is read as UTF-8 (or UTF-16 with a byte-order mark) only. Ask the IdP for its metadata in UTF-8.`,
      );
    }
  }
  try {
    return new TextDecoder(utf16 ?? 'utf-8', { fatal: true }).decode(utf16 ? bytes.subarray(2) : bytes);
  } catch {
    throw new MetadataError(
      'not_xml',
      `The document at ${excerpt(url.href, 200)} is not valid ${utf16 ? 'UTF-16' : 'UTF-8'} text (bytes that encode no character), which XML does not allow; it was not read.`,
    );
  }
}

function tooLarge(url: URL, maxBytes: number, declared: number | null): MetadataError {
  const said = declared === null ? '' : ` (it announces ${formatBytes(declared)})`;
  return new MetadataError(
    'too_large',
    `The document at ${url.href} is larger than the ${formatBytes(maxBytes)} allowed for metadata${said}.`,
  );
}

async function readLimited(body: AsyncIterable<unknown>, url: URL, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const data = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += data.length;
    if (size > maxBytes) throw tooLarge(url, maxBytes, null);
    chunks.push(data);
  }
  return Buffer.concat(chunks);
}

function statusError(url: URL, status: number, via: string): MetadataError {
  const hint =
    status === 404
      ? ' Check the URL.'
      : status === 401 || status === 403
        ? ' The metadata URL must be readable without logging in.'
        : '';
  return new MetadataError(
    'http_status',
    `${url.href}${via} answered HTTP ${status}; expected 200 with the metadata XML.${hint}`,
  );
}

type HopResult = { kind: 'redirect'; location: string } | { kind: 'body'; body: string; contentType: string | null };

/** Agents kept for reuse (least recently used first); beyond MAX_AGENTS the oldest is closed. */
const agents = new Map<string, Agent>();
const MAX_AGENTS = 64;
/** Connections per agent (per IdP origin and address set): concurrent fetches of one IdP need not queue. */
const CONNECTIONS_PER_AGENT = 8;
/** An idle connection to an IdP is closed after this long (undici's default is 4 s). */
const KEEP_ALIVE_MS = 10_000;

/**
 * The agent for `url` pinned to `addresses`, kept alive across fetches. Every fetch still resolves the host
 * and checks each address first (checkHop): the key holds the checked addresses, so an agent only ever
 * connects to addresses that passed the check for this very origin.
 */
function agentFor(url: URL, addresses: LookupAddress[], limits: Limits): Agent {
  const key = [url.origin, addresses.map((a) => `${a.family}/${a.address}`).sort().join(','), limits.connectTimeoutMs, limits.timeoutMs].join('|');
  const kept = agents.get(key);
  if (kept) {
    agents.delete(key);
    agents.set(key, kept);
    return kept;
  }
  const agent = new Agent({
    connect: { lookup: pinnedLookup(bareHost(url), addresses), timeout: limits.connectTimeoutMs },
    connections: CONNECTIONS_PER_AGENT,
    keepAliveTimeout: KEEP_ALIVE_MS,
    keepAliveMaxTimeout: KEEP_ALIVE_MS,
    headersTimeout: limits.timeoutMs,
    bodyTimeout: limits.timeoutMs,
  });
  agents.set(key, agent);
  for (const [oldKey, old] of agents) {
    if (agents.size <= MAX_AGENTS) break;
    agents.delete(oldKey);
    void old.close().catch(() => undefined); // after the fetches it is serving
  }
  return agent;
}

/** Closes every kept connection to IdPs (at shutdown; fetches after it open new ones). */
export async function closeIdpConnections(): Promise<void> {
  const all = [...agents.values()];
  agents.clear();
  await Promise.all(all.map((a) => a.close().catch(() => undefined)));
}

async function fetchHop(url: URL, addresses: LookupAddress[], limits: Limits, deadline: Deadline, via: string): Promise<HopResult> {
  const agent = agentFor(url, addresses, limits);
  try {
    const res = await request(url, {
      dispatcher: agent,
      method: 'GET',
      signal: deadline.signal,
      headers: {
        accept: 'application/samlmetadata+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1',
        'accept-encoding': 'identity',
        'user-agent': 'saml-credential-service metadata fetcher',
      },
    });
    if (REDIRECT_STATUSES.has(res.statusCode)) {
      discard(res.body);
      const location = header(res.headers, 'location');
      // An empty Location resolves to the URL itself: followed, it asked again until the redirect limit and
      // then blamed "more than 3" redirects to nowhere.
      if (location === null || location.trim() === '') {
        const what = location === null ? 'without a Location header' : 'with an empty Location header';
        throw new MetadataError('http_status', `${url.href}${via} answered HTTP ${res.statusCode} ${what}.`);
      }
      return { kind: 'redirect', location };
    }
    if (res.statusCode < 200 || res.statusCode >= 300) {
      discard(res.body);
      throw statusError(url, res.statusCode, via);
    }
    const declared = Number(header(res.headers, 'content-length') ?? NaN);
    if (Number.isFinite(declared) && declared > limits.maxBytes) {
      discard(res.body);
      throw tooLarge(url, limits.maxBytes, declared);
    }
    const bytes = decodeContentEncoding(await readLimited(res.body, url, limits.maxBytes), header(res.headers, 'content-encoding'), url, limits.maxBytes);
    return { kind: 'body', body: decodeBody(bytes, url), contentType: header(res.headers, 'content-type') };
  } catch (err) {
    throw describeFailure(err, url, limits, deadline);
  }
}

/** fetchMetadata with a replaceable resolver (tests use it to run without real DNS). */
export async function fetchMetadataWithResolver(
  url: string,
  opts: FetchOptions,
  resolveHost: ResolveHost,
): Promise<FetchResult> {
  const limits = limitsFrom(opts);
  const deadline = new Deadline(limits.timeoutMs, opts.signal);
  try {
    const first = parseTargetUrl(url.trim());
    let hop: Hop = { url: first, allowListEligible: allowListEligible(url, first, true), from: null };
    for (let redirects = 0; ; redirects++) {
      const addresses = await checkHop(hop, opts.allowedHosts, resolveHost, deadline);
      const via = viaText(hop.from);
      const result = await fetchHop(hop.url, addresses, limits, deadline, via);
      if (result.kind === 'body') {
        return { body: result.body, finalUrl: hop.url.href, fetchedAt: new Date(), contentType: result.contentType };
      }
      if (redirects >= limits.maxRedirects) {
        throw new MetadataError(
          'too_many_redirects',
          `${first.href} redirected more than ${limits.maxRedirects} times (the last hop, ${hop.url.href}, ` +
            `points to ${excerpt(result.location, 200)}); give the final metadata URL instead.`,
        );
      }
      const next = parseTargetUrl(result.location, hop.url);
      hop = { url: next, allowListEligible: allowListEligible(result.location, next, hop.allowListEligible), from: hop.url };
    }
  } finally {
    deadline.clear();
  }
}

export async function fetchMetadata(url: string, opts: FetchOptions): Promise<FetchResult> {
  return fetchMetadataWithResolver(url, opts, systemResolve);
}
