/**
 * End-to-end fetches against real servers on loopback. Each server serves valid metadata, so a
 * refusal the fetcher fails to make would show up as a success; `hits` proves refused URLs were
 * never requested. No test sends traffic anywhere but loopback.
 */
import http from 'node:http';
import net from 'node:net';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import zlib from 'node:zlib';
import { MetadataError, type MetadataErrorCode } from '../../src/metadata/errors';
import { Deadline, describeFailure } from '../../src/metadata/fetch-errors';
import { closeIdpConnections, fetchMetadata, type FetchOptions } from '../../src/metadata/fetch-metadata';
import { fetchAndParse } from '../../src/metadata';
import { canBind, OKTA_ENTITY_ID, OKTA_XML, servedBytes, startHttpServer, startHttpsServer, type LocalServer } from './support/local-servers';
import { REFERENCE_NOW } from './support/fixtures';

const HAS_127_0_0_2 = canBind('127.0.0.2');
const HAS_IPV6_LOOPBACK = canBind('::1');
if (!HAS_127_0_0_2) console.warn('Skipping 127.0.0.2 cases: this OS does not let a process bind 127.0.0.2.');
if (!HAS_IPV6_LOOPBACK) console.warn('Skipping [::1] cases: this OS does not let a process bind ::1.');

let main: LocalServer;
let other: LocalServer;
let alt: LocalServer | null = null;
let v6: LocalServer | null = null;
let tls: LocalServer;
const servers: LocalServer[] = [];

function required(server: LocalServer | null, what: string): LocalServer {
  if (server === null) throw new Error(`could not start the ${what} test server`);
  servers.push(server);
  return server;
}

beforeAll(async () => {
  main = required(await startHttpServer('127.0.0.1'), '127.0.0.1');
  other = required(await startHttpServer('127.0.0.1'), 'second 127.0.0.1');
  tls = required(await startHttpsServer('127.0.0.1'), 'https');
  // Same port as `main` where possible, so these really are other names for the same service.
  if (HAS_127_0_0_2) alt = required((await startHttpServer('127.0.0.2', main.port)) ?? (await startHttpServer('127.0.0.2')), '127.0.0.2');
  if (HAS_IPV6_LOOPBACK) v6 = required((await startHttpServer('::1', main.port)) ?? (await startHttpServer('::1')), '::1');
});

afterAll(async () => {
  await closeIdpConnections();
  await Promise.all(servers.map((s) => s.close()));
});

const allowMain = (): FetchOptions => ({ allowedHosts: [`127.0.0.1:${main.port}`] });

async function refusal(url: string, opts: FetchOptions): Promise<MetadataError> {
  try {
    await fetchMetadata(url, opts);
  } catch (err) {
    if (err instanceof MetadataError) return err;
    throw err;
  }
  throw new Error(`fetching ${url} succeeded`);
}

async function expectRefused(url: string, opts: FetchOptions, code: MetadataErrorCode, server: LocalServer): Promise<MetadataError> {
  const before = server.hits.length;
  const err = await refusal(url, opts);
  expect({ code: err.code, message: err.message }).toEqual({ code, message: expect.any(String) });
  expect(server.hits.length).toBe(before);
  return err;
}

describe('allow-listed hosts', () => {
  it('fetches http://127.0.0.1:<port> when that host:port is allow-listed', async () => {
    const result = await fetchMetadata(`${main.origin}/metadata.xml`, allowMain());
    expect(result.body).toBe(OKTA_XML);
    expect(result.finalUrl).toBe(`${main.origin}/metadata.xml`);
    expect(result.contentType).toBe('application/samlmetadata+xml');
    expect(result.fetchedAt).toBeInstanceOf(Date);
  });

  it('drops the fragment of the URL: the document is the URL\'s without it, and so is the URL stored', async () => {
    const result = await fetchMetadata(`${main.origin}/metadata.xml#idp`, allowMain());
    expect(result.finalUrl).toBe(`${main.origin}/metadata.xml`);
  });

  it('fetches and parses in one call', async () => {
    const { metadata, finalUrl } = await fetchAndParse(`${main.origin}/metadata.xml`, { ...allowMain(), now: REFERENCE_NOW });
    expect(metadata.entityId).toBe(OKTA_ENTITY_ID);
    expect(finalUrl).toBe(`${main.origin}/metadata.xml`);
  });

  describe('the document\'s encoding', () => {
    let served_ = 0;
    const served = (bytes: Buffer) => {
      const name = `doc${served_++}`;
      servedBytes.set(name, bytes);
      return `${main.origin}/bytes?name=${name}`;
    };
    const okta = Buffer.from(OKTA_XML, 'utf8');
    // The entityID's host with one byte changed: "www.okta.com" -> "www.<byte>kta.com".
    const withByte = (bytes: number[]) => {
      const at = okta.indexOf('www.okta.com') + 4;
      return Buffer.concat([okta.subarray(0, at), Buffer.from(bytes), okta.subarray(at + 1)]);
    };
    const declaring = (encoding: string, doc: Buffer) => Buffer.from(doc.toString('latin1').replace('encoding="UTF-8"', `encoding="${encoding}"`), 'latin1');

    it('refuses bytes that are not UTF-8 instead of storing U+FFFD in their place (the entityID changed)', async () => {
      expect(OKTA_XML).toContain('encoding="UTF-8"');
      const err = await refusal(served(withByte([0xc3, 0x28])), allowMain());
      expect({ code: err.code, message: err.message }).toEqual({ code: 'not_xml', message: expect.stringContaining('is not valid UTF-8 text') });
    });

    it('refuses a document declaring another encoding when it has bytes outside ASCII, and reads it when it has none', async () => {
      const err = await refusal(served(declaring('ISO-8859-1', withByte([0xe9]))), allowMain());
      expect({ code: err.code, message: err.message }).toEqual({ code: 'not_xml', message: expect.stringContaining('declares the encoding "iso-8859-1" and has bytes outside ASCII') });
      const ascii = await fetchAndParse(served(declaring('ISO-8859-1', okta)), { ...allowMain(), now: REFERENCE_NOW });
      expect(ascii.metadata.entityId).toBe(OKTA_ENTITY_ID);
    });

    it('reads UTF-8 after a byte-order mark, and UTF-16 after its byte-order mark', async () => {
      const bom8 = await fetchMetadata(served(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), okta])), allowMain());
      expect(bom8.body).toBe(OKTA_XML);
      const le = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(OKTA_XML, 'utf16le')]);
      expect((await fetchMetadata(served(le), allowMain())).body).toBe(OKTA_XML);
      const err = await refusal(served(Buffer.concat([le, Buffer.from([0x00, 0xd8])])), allowMain());
      expect(err.message).toContain('is not valid UTF-16 text');
    });
  });

  it('names the URL when the fetched document is an HTML page', async () => {
    await expect(fetchAndParse(`${main.origin}/html`, allowMain())).rejects.toMatchObject({
      code: 'not_xml',
      message: expect.stringMatching(new RegExp(`HTML page.*fetched from ${main.origin}/html`)),
    });
  });

  it('reaches the same service through each alternative name once that name is allow-listed', async () => {
    // Controls for the refusals below: these names really do lead to a live server.
    const names = [`0.0.0.0:${main.port}`, `localhost:${main.port}`];
    for (const hostPort of names) {
      const result = await fetchMetadata(`http://${hostPort}/metadata.xml`, { allowedHosts: [hostPort] });
      expect(result.body).toBe(OKTA_XML);
    }
  });
});

describe('refuses non-public addresses that are not allow-listed', () => {
  it.each([
    ['0.0.0.0', (p: number) => `http://0.0.0.0:${p}/metadata.xml`, /unspecified address 0\.0\.0\.0/],
    ['decimal 2130706433', (p: number) => `http://2130706433:${p}/metadata.xml`, /loopback address 127\.0\.0\.1/],
    ['hex 0x7f000001', (p: number) => `http://0x7f000001:${p}/metadata.xml`, /loopback address 127\.0\.0\.1/],
    ['short 127.1', (p: number) => `http://127.1:${p}/metadata.xml`, /loopback address 127\.0\.0\.1/],
    ['IPv4-mapped [::ffff:127.0.0.1]', (p: number) => `http://[::ffff:127.0.0.1]:${p}/metadata.xml`, /IPv4-mapped form of loopback/],
    ['localhost', (p: number) => `http://localhost:${p}/metadata.xml`, /the host "localhost" does not resolve to a public address .*not shown\)\. /],
  ])('%s', async (_name, url, reason) => {
    const err = await expectRefused(url(main.port), allowMain(), 'blocked_address', main);
    expect(err.message).toMatch(reason);
  });

  it('does not let an odd spelling of an allow-listed IPv4 address use the allow-list entry', async () => {
    // The written form is not the one the message's URL shows (normalized), so the message says so.
    const short = await expectRefused(`http://127.1:${main.port}/metadata.xml`, allowMain(), 'blocked_address', main);
    expect(short.message).toMatch(/applies only when the address is written as 127\.0\.0\.1, and the URL wrote it in another form/);
    const err = await expectRefused(`http://2130706433:${main.port}/metadata.xml`, allowMain(), 'blocked_address', main);
    expect(err.message).toMatch(/applies only when the address is written as 127\.0\.0\.1/);
  });

  (HAS_127_0_0_2 ? it : it.skip)('http://127.0.0.2:<port>, which is reachable when allow-listed', async () => {
    const server = required(alt, '127.0.0.2');
    await expectRefused(`${server.origin}/metadata.xml`, allowMain(), 'blocked_address', server);
    const control = await fetchMetadata(`${server.origin}/metadata.xml`, { allowedHosts: [`127.0.0.2:${server.port}`] });
    expect(control.body).toBe(OKTA_XML);
  });

  (HAS_IPV6_LOOPBACK ? it : it.skip)('http://[::1]:<port>, which is reachable when allow-listed', async () => {
    const server = required(v6, '::1');
    const err = await expectRefused(`${server.origin}/metadata.xml`, allowMain(), 'blocked_address', server);
    expect(err.message).toMatch(/loopback address ::1/);
    const control = await fetchMetadata(`${server.origin}/metadata.xml`, { allowedHosts: [`[::1]:${server.port}`] });
    expect(control.body).toBe(OKTA_XML);
  });

  it('applies the address rule to https too', async () => {
    const err = await expectRefused(`https://127.0.0.1:${tls.port}/metadata.xml`, allowMain(), 'blocked_address', tls);
    expect(err.message).toContain(`"127.0.0.1:${tls.port}" to metadataAllowedHosts`);
  });
});

describe('redirects', () => {
  it('checks the target of every redirect', async () => {
    const target = `${other.origin}/metadata.xml`;
    const err = await expectRefused(`${main.origin}/redirect?target=${encodeURIComponent(target)}`, allowMain(), 'blocked_address', other);
    expect(err.message).toContain(`redirected from ${main.origin}/redirect`);
  });

  it('follows a redirect to another allow-listed host', async () => {
    const target = `${other.origin}/metadata.xml`;
    const opts = { allowedHosts: [`127.0.0.1:${main.port}`, `127.0.0.1:${other.port}`] };
    const result = await fetchMetadata(`${main.origin}/redirect?target=${encodeURIComponent(target)}`, opts);
    expect(result.finalUrl).toBe(target);
    expect(result.body).toBe(OKTA_XML);
  });

  it('does not let a redirect to an odd spelling of an allow-listed address use the allow-list entry', async () => {
    const target = `http://2130706433:${main.port}/metadata.xml`;
    const before = main.hits.length;
    const err = await refusal(`${main.origin}/redirect?target=${encodeURIComponent(target)}`, allowMain());
    expect(err.code).toBe('blocked_address');
    expect(err.message).toMatch(/applies only when the address is written as 127\.0\.0\.1/);
    // The redirect was fetched; its target was not.
    expect(main.hits.length).toBe(before + 1);
  });

  it('refuses a redirect to a non-http scheme', async () => {
    const err = await refusal(`${main.origin}/redirect?target=${encodeURIComponent('file:///etc/passwd')}`, allowMain());
    expect(err.code).toBe('scheme_not_allowed');
  });

  it('follows up to maxRedirects redirects and refuses one more', async () => {
    const ok = await fetchMetadata(`${main.origin}/chain?n=3`, { ...allowMain(), maxRedirects: 3 });
    expect(ok.finalUrl).toBe(`${main.origin}/metadata.xml`);
    const err = await refusal(`${main.origin}/chain?n=4`, { ...allowMain(), maxRedirects: 3 });
    expect(err.code).toBe('too_many_redirects');
  });

  it.each([301, 303, 307, 308])('follows a %i redirect (a moved metadata URL, an upgrade to https)', async (status) => {
    const ok = await fetchMetadata(`${main.origin}/redirect?status=${status}`, allowMain());
    expect(ok.finalUrl).toBe(`${main.origin}/metadata.xml`);
    expect(ok.body).toContain('EntityDescriptor');
  });

  it('stops a redirect loop', async () => {
    const err = await refusal(`${main.origin}/loop`, allowMain());
    expect(err.code).toBe('too_many_redirects');
    expect(err.message).toMatch(/more than 3 times/);
  });

  it('follows a redirect to a URL of 4,096 characters and refuses one of 4,097 without requesting it', async () => {
    // The target's URL ends up in the stored document (fetched_from) and in refusals stored as a refresh's
    // last error: a redirect must not make either as long as an IdP likes. /<n> answers a redirect to main's
    // metadata with a URL of n characters (the URL asked for stays short: the limit applies to it as well).
    const target = (length: number) => {
      const base = `${main.origin}/metadata.xml?`;
      return `${base}${'q'.repeat(length - base.length)}`;
    };
    const redirecting = http.createServer((req, res) => res.writeHead(302, { location: target(Number(req.url?.slice(1))) }).end());
    await new Promise<void>((resolve) => redirecting.listen(0, '127.0.0.1', resolve));
    const origin = `http://127.0.0.1:${(redirecting.address() as net.AddressInfo).port}`;
    const opts = { allowedHosts: [`127.0.0.1:${main.port}`, origin.slice('http://'.length)] };
    try {
      const ok = await fetchMetadata(`${origin}/4096`, opts);
      expect(ok.finalUrl).toBe(target(4096));
      const before = main.hits.length;
      const err = await refusal(`${origin}/4097`, opts);
      expect({ code: err.code, message: err.message }).toEqual({ code: 'invalid_url', message: expect.stringMatching(/is not a valid URL \(redirect from /) });
      expect(err.message.length).toBeLessThan(1000);
      expect(main.hits.length).toBe(before);
    } finally {
      redirecting.closeAllConnections();
      await new Promise((resolve) => redirecting.close(resolve));
    }
  });

  it('reports a redirect without a Location header', async () => {
    expect((await refusal(`${main.origin}/redirect-without-location`, allowMain())).code).toBe('http_status');
  });

  it('reports a redirect with an empty Location header as such, without following it to itself', async () => {
    let hits = 0;
    const raw = net.createServer((socket) => socket.once('data', () => {
      hits += 1;
      socket.end('HTTP/1.1 302 Found\r\nLocation: \r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    }));
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
    const port = (raw.address() as net.AddressInfo).port;
    try {
      const err = await refusal(`http://127.0.0.1:${port}/md.xml`, { allowedHosts: [`127.0.0.1:${port}`] });
      expect({ code: err.code, message: err.message }).toEqual({ code: 'http_status', message: `http://127.0.0.1:${port}/md.xml answered HTTP 302 with an empty Location header.` });
      expect(hits).toBe(1);
    } finally {
      await new Promise((resolve) => raw.close(resolve));
    }
  });
});

describe('limits and failures', () => {
  it('times out on a server that never answers', async () => {
    const started = Date.now();
    const err = await refusal(`${main.origin}/hang`, { ...allowMain(), timeoutMs: 300 });
    expect(err.code).toBe('timeout');
    expect(err.message).toMatch(/within 300 ms/);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('times out on a body that stops arriving', async () => {
    const err = await refusal(`${main.origin}/stall-body`, { ...allowMain(), timeoutMs: 300 });
    expect(err.code).toBe('timeout');
  });

  it('times out connecting when the TLS handshake never completes', async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((socket) => sockets.push(socket)); // accepts, never speaks TLS
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const address = silent.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    try {
      const err = await refusal(`https://127.0.0.1:${port}/`, { allowedHosts: [`127.0.0.1:${port}`], connectTimeoutMs: 200, timeoutMs: 5000 });
      expect(err.code).toBe('timeout');
      expect(err.message).toMatch(/connecting to 127\.0\.0\.1:\d+: no connection within 200 ms/);
    } finally {
      sockets.forEach((socket) => socket.destroy());
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('stops reading a body larger than maxBytes', async () => {
    const err = await refusal(`${main.origin}/huge`, { ...allowMain(), maxBytes: 256 * 1024 });
    expect(err.code).toBe('too_large');
    expect(err.message).toMatch(/256 KiB/);
  });

  it('takes a document of exactly maxBytes and refuses one byte more, streamed or declared', async () => {
    const okta = Buffer.from(OKTA_XML, 'utf8');
    servedBytes.set('exact-size', okta);
    for (const declare of ['', '&declare']) {
      const url = `${main.origin}/bytes?name=exact-size${declare}`;
      expect((await fetchMetadata(url, { ...allowMain(), maxBytes: okta.length })).body).toBe(OKTA_XML);
      const err = await refusal(url, { ...allowMain(), maxBytes: okta.length - 1 });
      expect({ declare, code: err.code }).toEqual({ declare, code: 'too_large' });
    }
  });

  it('refuses a body whose Content-Length is over maxBytes without reading it', async () => {
    const err = await refusal(`${main.origin}/huge-declared`, allowMain());
    expect(err.code).toBe('too_large');
    expect(err.message).toMatch(/announces 50 MiB/);
  });

  it("answers a name the system's resolver does not know as one that is not public, whatever realm its error comes from", async () => {
    const err = await refusal('https://no-such-host.invalid/metadata.xml', { allowedHosts: [] });
    expect({ code: err.code, message: err.message }).toEqual({ code: 'blocked_address', message: expect.stringMatching(/the host "no-such-host\.invalid" does not resolve to a public address/) });
  });

  it('reports a 404 as http_status', async () => {
    const err = await refusal(`${main.origin}/nope.xml`, allowMain());
    expect(err.code).toBe('http_status');
    expect(err.message).toMatch(/HTTP 404/);
  });

  it('reads the document of a 200 or a 203 only: a 202, a 206 (no range was asked) or a 204 is an http_status refusal', async () => {
    for (const code of [200, 203]) {
      expect((await fetchMetadata(`${main.origin}/status?code=${code}`, allowMain())).body).toBe(OKTA_XML);
    }
    for (const code of [201, 202, 204, 206, 226]) {
      const err = await refusal(`${main.origin}/status?code=${code}`, allowMain());
      expect({ code: err.code, message: err.message }).toEqual({ code: 'http_status', message: expect.stringContaining(`answered HTTP ${code}; expected 200 with the metadata XML`) });
    }
  });

  it('reports a refused connection as unreachable', async () => {
    const closed = required(await startHttpServer('127.0.0.1'), 'closed-port');
    await closed.close();
    const err = await refusal(`${closed.origin}/metadata.xml`, { allowedHosts: [`127.0.0.1:${closed.port}`] });
    expect(err.code).toBe('unreachable');
  });

  it('verifies TLS certificates, also for allow-listed hosts', async () => {
    const err = await refusal(`https://localhost:${tls.port}/metadata.xml`, { allowedHosts: [`localhost:${tls.port}`] });
    expect(err.code).toBe('tls_error');
    expect(err.message).toMatch(/self[- ]signed certificate.*The IdP needs a valid certificate for this host name\.$/);
    expect(tls.hits).toHaveLength(0);
  });

  // Node's own reason for a certificate of another name reads "IP: 1.2.3.4 is not in the cert's list: " (an
  // empty list as nothing) or "Host: a. is not cert's CN: b": the errors here are Node's, from its own check.
  it.each([
    ['idp.example.com', { subject: { CN: 'other.example' }, subjectaltname: 'DNS:other.example, DNS:www.other.example' }, 'its certificate is not for the host name idp.example.com but for other.example, www.other.example'],
    ['idp.example.com', { subject: { CN: 'other.example' } }, 'its certificate is not for the host name idp.example.com but for other.example'],
    ['203.0.113.9', { subject: { CN: 'x.example' }, subjectaltname: 'IP Address:198.51.100.7' }, 'its certificate is not for the host name 203.0.113.9 but for 198.51.100.7'],
    ['idp.example.com', { subject: {} }, 'its certificate names no host, so not the host name idp.example.com'],
  ])('says which names a certificate for another host is for (%s, %j)', (host, cert, reason) => {
    const err = checkServerIdentity(host, cert as unknown as PeerCertificate);
    const deadline = new Deadline(10_000);
    const described = describeFailure(new TypeError('fetch failed', { cause: err }), new URL(`https://${host}/metadata.xml`), { connectTimeoutMs: 1000 }, deadline);
    deadline.clear();
    expect(described.code).toBe('tls_error');
    expect(described.message).toBe(`Could not establish a trusted https connection to ${host}: ${reason}. The IdP needs a valid certificate for this host name.`);
  });

  // A helper's review: these quoted undici's own wording ("Response does not match the HTTP/1.1 protocol
  // (Expected HTTP/, RTSP/ or ICE/)", "UND_ERR_HEADERS_OVERFLOW"), shown to the tenant and stored as last_error.
  it.each([
    ['a status line that is not HTTP', 'HTP/9 what\r\n\r\n', /^The answer of 127\.0\.0\.1:\d+ is not valid HTTP\/1\.1 \(a malformed status line or header/],
    ['a control character in a header', 'HTTP/1.1 302 Found\r\nLocation: http://x/\x01y\r\nContent-Length: 0\r\n\r\n', /is not valid HTTP\/1\.1/],
    ['two different Content-Lengths', 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd', /is not valid HTTP\/1\.1/],
    ['headers over the limit', `HTTP/1.1 200 OK\r\nX-A: ${'a'.repeat(20_000)}\r\n\r\n`, /^The answer of 127\.0\.0\.1:\d+ has more header data than a fetch reads \(16 KiB\)\.$/],
  ])('says in its own words when the server answers with %s', async (_what, reply, message) => {
    const raw = net.createServer((socket) => socket.once('data', () => socket.end(reply)));
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
    const port = (raw.address() as net.AddressInfo).port;
    try {
      const err = await refusal(`http://127.0.0.1:${port}/md.xml`, { allowedHosts: [`127.0.0.1:${port}`] });
      expect(err.code).toBe('unreachable');
      expect(err.message).toMatch(message);
      expect(err.message).not.toMatch(/UND_ERR|RTSP|ICE\/|Invalid header value char|content-length header/);
    } finally {
      await new Promise((resolve) => raw.close(resolve));
    }
  });

  it.each([
    ['gzip data it was not asked for', zlib.gzipSync(Buffer.from(OKTA_XML)), /is gzip-compressed data without a Content-Encoding saying so/],
    ['UTF-16 without a byte-order mark', Buffer.from(OKTA_XML, 'utf16le'), /looks like UTF-16 text without a byte-order mark/],
  ])('names %s for what it is', async (_what, body, message) => {
    const raw = net.createServer((socket) => socket.once('data', () => {
      socket.end(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: ${body.length}\r\n\r\n`), body]));
    }));
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
    const port = (raw.address() as net.AddressInfo).port;
    try {
      const err = await refusal(`http://127.0.0.1:${port}/md.xml`, { allowedHosts: [`127.0.0.1:${port}`] });
      expect({ code: err.code, message: err.message }).toEqual({ code: 'not_xml', message: expect.stringMatching(message) });
    } finally {
      await new Promise((resolve) => raw.close(resolve));
    }
  });

  it('says an https URL whose port speaks plain http is that, without OpenSSL\'s thread id and source path', async () => {
    const err = await refusal(`https://127.0.0.1:${main.port}/metadata.xml`, allowMain());
    expect(err.code).toBe('tls_error');
    expect(err.message).toBe(`Could not establish a trusted https connection to 127.0.0.1:${main.port}: wrong version number. The host did not answer with TLS on this port: is the URL http, or the port another service's?`);
  });
});


test('fetches of one IdP in flight at once do not queue behind each other: each has its whole time limit', async () => {
  // Sixteen fetches (the region's default bound, fetch-limiter.ts) of an IdP that answers in 600 ms, each
  // allowed 1,000 ms: with fewer connections per IdP than that (8 until 2026-12-06) the rest waited for a
  // free one on their own clock and timed out.
  const opts = { ...allowMain(), timeoutMs: 1000 };
  const results = await Promise.allSettled(Array.from({ length: 16 }, (_, i) => fetchMetadata(`${main.origin}/slow?ms=600&n=${i}`, opts)));
  expect(results.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as Error).message))).toEqual(Array.from({ length: 16 }, () => 'ok'));
});
