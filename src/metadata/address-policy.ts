/**
 * Which network destinations a server-side fetch of a user-supplied metadata URL may reach.
 * Only globally routable unicast addresses are allowed; everything that could land inside our
 * own network (loopback, private ranges, link-local and cloud metadata endpoints, tunnels that
 * embed such an address) is refused unless an operator allow-listed the host explicitly.
 */
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

interface BlockedRange {
  cidr: string;
  reason: string;
}

// Order matters: the first match gives the message, so narrow ranges come before wide ones.
const BLOCKED_V4: readonly BlockedRange[] = [
  { cidr: '0.0.0.0/32', reason: 'unspecified address' },
  { cidr: '0.0.0.0/8', reason: '"this network" address' },
  { cidr: '10.0.0.0/8', reason: 'private address' },
  { cidr: '100.64.0.0/10', reason: 'carrier-grade NAT address' },
  { cidr: '127.0.0.0/8', reason: 'loopback address' },
  { cidr: '169.254.169.254/32', reason: 'cloud metadata address' },
  { cidr: '169.254.0.0/16', reason: 'link-local address' },
  { cidr: '172.16.0.0/12', reason: 'private address' },
  { cidr: '192.0.0.0/24', reason: 'IETF protocol-assignment address' },
  { cidr: '192.0.2.0/24', reason: 'documentation address' },
  { cidr: '192.88.99.0/24', reason: '6to4 relay address' },
  { cidr: '192.168.0.0/16', reason: 'private address' },
  { cidr: '198.18.0.0/15', reason: 'benchmarking address' },
  { cidr: '198.51.100.0/24', reason: 'documentation address' },
  { cidr: '203.0.113.0/24', reason: 'documentation address' },
  { cidr: '224.0.0.0/4', reason: 'multicast address' },
  { cidr: '255.255.255.255/32', reason: 'broadcast address' },
  { cidr: '240.0.0.0/4', reason: 'reserved address' },
];

const BLOCKED_V6: readonly BlockedRange[] = [
  { cidr: '::/128', reason: 'unspecified address' },
  { cidr: '::1/128', reason: 'loopback address' },
  // IPv4-compatible addresses are deprecated and never legitimately used by a web server.
  { cidr: '::/96', reason: 'IPv4-compatible IPv6 address' },
  { cidr: '64:ff9b:1::/48', reason: 'local-use NAT64 address' },
  { cidr: '100::/64', reason: 'discard-only address' },
  { cidr: '2001:db8::/32', reason: 'documentation address' },
  // Teredo hides the real destination behind an obfuscated client address; refuse the whole range.
  { cidr: '2001::/32', reason: 'Teredo tunnel address' },
  { cidr: '2001::/23', reason: 'IETF protocol-assignment address' },
  { cidr: '3fff::/20', reason: 'documentation address' },
  { cidr: 'fc00::/7', reason: 'unique-local address' },
  { cidr: 'fe80::/10', reason: 'link-local address' },
  { cidr: 'fec0::/10', reason: 'site-local address' },
  { cidr: 'ff00::/8', reason: 'multicast address' },
];

type Compiled<T> = { range: [T, number]; reason: string }[];

const V4: Compiled<ipaddr.IPv4> = BLOCKED_V4.map((r) => ({ range: ipaddr.IPv4.parseCIDR(r.cidr), reason: r.reason }));
const V6: Compiled<ipaddr.IPv6> = BLOCKED_V6.map((r) => ({ range: ipaddr.IPv6.parseCIDR(r.cidr), reason: r.reason }));
const GLOBAL_UNICAST_V6 = ipaddr.IPv6.parseCIDR('2000::/3');
const MAPPED_V4 = ipaddr.IPv6.parseCIDR('::ffff:0:0/96');
const NAT64 = ipaddr.IPv6.parseCIDR('64:ff9b::/96');
const SIX_TO_FOUR = ipaddr.IPv6.parseCIDR('2002::/16');

function firstMatch<T extends ipaddr.IPv4 | ipaddr.IPv6>(addr: T, table: Compiled<T>): string | null {
  for (const { range, reason } of table) {
    if (addr.match(range)) return reason;
  }
  return null;
}

function v4Reason(addr: ipaddr.IPv4): string | null {
  const reason = firstMatch(addr, V4);
  return reason === null ? null : `${reason} ${addr.toString()}`;
}

function embeddedV4(bytes: number[], offset: number): ipaddr.IPv4 {
  return new ipaddr.IPv4(bytes.slice(offset, offset + 4));
}

function v6Reason(addr: ipaddr.IPv6, shown: string): string | null {
  const bytes = addr.toByteArray();
  // Tunnelling and translation prefixes carry an IPv4 destination; judge that destination.
  const embedded: [[ipaddr.IPv6, number], number, string][] = [
    [MAPPED_V4, 12, 'IPv4-mapped'],
    [NAT64, 12, 'NAT64'],
    [SIX_TO_FOUR, 2, '6to4'],
  ];
  for (const [range, offset, kind] of embedded) {
    if (addr.match(range)) {
      const inner = v4Reason(embeddedV4(bytes, offset));
      return inner === null ? null : `${kind} form of ${inner} (${shown})`;
    }
  }
  const reason = firstMatch(addr, V6);
  if (reason !== null) return `${reason} ${shown}`;
  if (!addr.match(GLOBAL_UNICAST_V6)) return `reserved IPv6 address ${shown}`;
  return null;
}

/**
 * Why `ip` must not be fetched from, or null when it is a public unicast address.
 * Only canonical literals are accepted (dotted-quad IPv4 or IPv6); anything else is refused
 * rather than guessed at, since inet_aton-style forms like "127.1" mean different things to
 * different parsers.
 */
export function blockedReason(ip: string): string | null {
  const literal = ip.startsWith('[') && ip.endsWith(']') ? ip.slice(1, -1) : ip;
  const family = isIP(literal);
  if (family === 0) return `"${ip}", which is not an IP address`;
  if (family === 4) return v4Reason(ipaddr.IPv4.parse(literal));
  // A zone id ties the address to one interface, which only makes sense for local addresses.
  if (literal.includes('%')) return `scoped IPv6 address ${literal}`;
  const parsed = ipaddr.IPv6.parse(hexTail(literal));
  return v6Reason(parsed, parsed.toString());
}

/**
 * Rewrites a dotted IPv4 tail as two hex groups ("::127.0.0.1" -> "::7f00:1"). ipaddr.js reads
 * "::a.b.c.d" as IPv4-mapped (::ffff:a.b.c.d), which is not the address the kernel would use.
 */
function hexTail(v6: string): string {
  const m = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(v6);
  if (!m) return v6;
  const [a, b, c, d] = [m[2], m[3], m[4], m[5]].map(Number);
  return `${m[1]}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
}

function defaultPort(protocol: string): string | null {
  if (protocol === 'https:') return '443';
  if (protocol === 'http:') return '80';
  return null;
}

interface HostPort {
  host: string;
  port: string | null;
}

function splitEntry(entry: string): HostPort | null {
  const text = entry.trim();
  const bracketed = /^(\[[^\]]+\])(?::(\d+))?$/.exec(text);
  if (bracketed) return normaliseEntry(bracketed[1], bracketed[2] ?? null);
  const plain = /^([^:/\s]+)(?::(\d+))?$/.exec(text);
  if (plain) return normaliseEntry(plain[1], plain[2] ?? null);
  return null;
}

function normaliseEntry(host: string, port: string | null): HostPort | null {
  try {
    // Run the host through the same WHATWG parser as the URL, so both sides compare alike
    // (lower case, IPv6 compression, IDN to punycode).
    const parsed = new URL(`http://${host}/`);
    return { host: parsed.hostname, port: port === null ? null : String(Number(port)) };
  } catch {
    return null;
  }
}

/**
 * True when an operator listed this URL's host and port in `metadataAllowedHosts`.
 * Entries are "host:port" ("[v6]:port" for IPv6); an entry without a port stands for the
 * scheme's default port. Matching is on the parsed host, so "2130706433" and "127.0.0.1" are the
 * same destination, as they are on the wire.
 */
export function isAllowListed(url: URL, allowedHosts: readonly string[]): boolean {
  const port = url.port === '' ? defaultPort(url.protocol) : url.port;
  if (port === null) return false;
  const host = url.hostname.toLowerCase();
  return allowedHosts.some((entry) => {
    const parsed = splitEntry(entry);
    if (parsed === null) return false;
    const entryPort = parsed.port ?? defaultPort(url.protocol);
    return parsed.host === host && entryPort === port;
  });
}
