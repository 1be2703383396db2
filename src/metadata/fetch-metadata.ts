/**
 * Server-side fetch of a user-supplied IdP metadata URL that cannot be turned against our own
 * network (SSRF). For every hop, redirects included:
 *   1. only http(s) URLs without credentials;
 *   2. the host is resolved once (through lookup-gate.ts, which bounds lookups that do not answer) and every
 *      address is checked against the address policy
 *      (skipped for hosts an operator allow-listed);
 *   3. plain http only for allow-listed hosts;
 *   4. the connection is pinned to the checked addresses through an undici Agent whose `lookup` answers
 *      with them, so a second DNS answer (rebinding) is never used. Agents are kept per origin and set of
 *      checked addresses (agentFor): a later fetch whose host resolves to the same checked addresses
 *      reuses an idle connection (keep-alive); one that resolves differently gets an agent of its own.
 * Time (connect and total) and size are bounded, and each limit has its own error.
 * Steps 1–3 are hop-check.ts's; reading and decoding the body is read-body.ts's.
 */
import type { LookupAddress } from 'node:dns';
import type { LookupFunction } from 'node:net';
import type { Agent } from 'undici';
import { undici } from '../on-first-use';
import { excerpt, MetadataError } from './errors';
import { decodeContentEncoding } from './content-encoding';
import { Deadline, describeFailure } from './fetch-errors';
import { allowListEligible, bareHost, checkHop, parseTargetUrl, viaText, type Hop } from './hop-check';
import { sharedLookupGate } from './lookup-gate';
import { decodeBody, readLimited, tooLarge } from './read-body';

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
  /**
   * The organization the fetch is for: its host-name lookups take that organization's share of the lookup
   * lanes (lookup-gate.ts). Every fetch made for an organization passes it; without one (tools, tests) only
   * the lanes bound them.
   */
  organization?: string;
}

export interface FetchResult {
  body: string;
  finalUrl: string;
  fetchedAt: Date;
  contentType: string | null;
}

/**
 * Resolves a host name to all its addresses; replaceable so tests need no real DNS. `signal`: the fetch gave
 * up (a resolver that waits before it looks up stops waiting; a lookup under way cannot be stopped).
 */
export type ResolveHost = (hostname: string, signal?: AbortSignal) => Promise<LookupAddress[]>;

export interface Limits {
  timeoutMs: number;
  connectTimeoutMs: number;
  maxBytes: number;
  maxRedirects: number;
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
/**
 * The answers whose body is the document asked for: 200, and 203 (the same, passed on by a transforming
 * proxy). Until 2026-12-07 every 2xx was read as the metadata: a 206's part of a document (no range was asked),
 * a 202's report on work still under way, a 204's nothing (refused as "the document is empty").
 */
const DOCUMENT_STATUSES = new Set([200, 203]);

function limitsFrom(opts: FetchOptions): Limits {
  return {
    timeoutMs: opts.timeoutMs ?? 10_000,
    connectTimeoutMs: opts.connectTimeoutMs ?? 5_000,
    maxBytes: opts.maxBytes ?? 1024 * 1024,
    maxRedirects: opts.maxRedirects ?? 3,
  };
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

/**
 * A list-valued header (Content-Encoding) as one list: HTTP reads several lines of it as their values joined
 * by commas. Its first line alone left a body sent with `gzip` and `br` on two lines half decoded, refused as
 * "not compressed that way".
 */
function headerList(headers: Record<string, string | string[] | undefined>, name: string): string | null {
  const value = headers[name];
  return Array.isArray(value) ? value.join(', ') : (value ?? null);
}

/** Drops a body we will not read; the stream reports its own abort, which is expected here. */
function discard(body: { on(event: 'error', listener: () => void): unknown; destroy(): unknown }): void {
  body.on('error', () => undefined);
  body.destroy();
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
  const agent = new (undici().Agent)({
    connect: { lookup: pinnedLookup(bareHost(url), addresses), timeout: limits.connectTimeoutMs },
    // No bound per IdP: the region's fetch limiter (provider-credentials/fetch-limiter.ts) bounds the fetches
    // in flight, so no more connections than that open to one IdP. A bound here below it (8, until a review
    // on 2026-12-06) queued the fetches above it, waiting on the fetch's own clock: twelve creates of one IdP
    // answering in 7 s got four "timed out" at 10 s.
    connections: null,
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
    const res = await undici().request(url, {
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
    if (!DOCUMENT_STATUSES.has(res.statusCode)) {
      discard(res.body);
      throw statusError(url, res.statusCode, via);
    }
    const declared = Number(header(res.headers, 'content-length') ?? NaN);
    if (Number.isFinite(declared) && declared > limits.maxBytes) {
      discard(res.body);
      throw tooLarge(url, limits.maxBytes, declared);
    }
    const bytes = decodeContentEncoding(await readLimited(res.body, url, limits.maxBytes), headerList(res.headers, 'content-encoding'), url, limits.maxBytes);
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

/** Host names are looked up through the process's lookup gate (lookup-gate.ts), which bounds lookups that do not answer. */
export async function fetchMetadata(url: string, opts: FetchOptions): Promise<FetchResult> {
  return fetchMetadataWithResolver(url, opts, (hostname, signal) => sharedLookupGate().lookup(hostname, opts.organization ?? null, signal));
}
