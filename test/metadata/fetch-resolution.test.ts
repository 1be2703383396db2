/**
 * DNS-dependent rules, with a stand-in resolver so no real DNS is needed. Where a test involves a
 * public address, outgoing connections are stubbed to fail, so even a regression could not send
 * traffic off this machine.
 */
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import type { LookupAddress } from 'node:dns';
import { MetadataError } from '../../src/metadata/errors';
import { closeIdpConnections, fetchMetadataWithResolver, type FetchOptions, type ResolveHost } from '../../src/metadata/fetch-metadata';
import { canBind, OKTA_XML, startHttpServer, type LocalServer } from './support/local-servers';

let server: LocalServer;

beforeAll(async () => {
  const started = await startHttpServer('127.0.0.1');
  if (started === null) throw new Error('could not start the 127.0.0.1 test server');
  server = started;
});

afterAll(() => server.close());

function resolverFor(answers: Record<string, string[]>): ResolveHost & { calls: string[] } {
  const calls: string[] = [];
  const resolve = async (hostname: string): Promise<LookupAddress[]> => {
    calls.push(hostname);
    const found = answers[hostname];
    if (found === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
    return found.map((address) => ({ address, family: net.isIP(address) }));
  };
  return Object.assign(resolve, { calls });
}

async function refusal(url: string, opts: FetchOptions, resolve: ResolveHost): Promise<MetadataError> {
  try {
    await fetchMetadataWithResolver(url, opts, resolve);
  } catch (err) {
    if (err instanceof MetadataError) return err;
    throw err;
  }
  throw new Error(`fetching ${url} succeeded`);
}

/** Makes every outgoing connection attempt fail before a packet is sent, and records it. */
function forbidConnections(): { attempts: () => number; restore: () => void } {
  const refuse = (): never => {
    throw new Error('test tried to open a connection');
  };
  const netSpy = jest.spyOn(net, 'connect').mockImplementation(refuse);
  const tlsSpy = jest.spyOn(tls, 'connect').mockImplementation(refuse);
  return {
    attempts: () => netSpy.mock.calls.length + tlsSpy.mock.calls.length,
    restore: () => {
      netSpy.mockRestore();
      tlsSpy.mockRestore();
    },
  };
}

describe('resolution and pinning', () => {
  it('connects to the address it checked instead of resolving the name again', async () => {
    // "rebind.test" exists only in this resolver: the fetch can only succeed if the connection
    // used the checked answer rather than a second (system) lookup.
    const resolve = resolverFor({ 'rebind.test': ['127.0.0.1'] });
    const result = await fetchMetadataWithResolver(
      `http://rebind.test:${server.port}/metadata.xml`,
      { allowedHosts: [`rebind.test:${server.port}`] },
      resolve,
    );
    expect(result.body).toBe(OKTA_XML);
    expect(resolve.calls).toEqual(['rebind.test']);
  });

  it('resolves each redirect hop afresh', async () => {
    const resolve = resolverFor({ 'a.test': ['127.0.0.1'], 'b.test': ['127.0.0.1'] });
    const target = `http://b.test:${server.port}/metadata.xml`;
    const result = await fetchMetadataWithResolver(
      `http://a.test:${server.port}/redirect?target=${encodeURIComponent(target)}`,
      { allowedHosts: [`a.test:${server.port}`, `b.test:${server.port}`] },
      resolve,
    );
    expect(result.finalUrl).toBe(target);
    expect(resolve.calls).toEqual(['a.test', 'b.test']);
  });

  it('refuses a redirect to a name that resolves to a private address', async () => {
    const resolve = resolverFor({ 'a.test': ['127.0.0.1'], 'internal.test': ['10.1.2.3'] });
    const target = `https://internal.test/metadata.xml`;
    const err = await refusal(
      `http://a.test:${server.port}/redirect?target=${encodeURIComponent(target)}`,
      { allowedHosts: [`a.test:${server.port}`] },
      resolve,
    );
    expect(err.code).toBe('blocked_address');
    expect(err.message).toMatch(/the host "internal\.test" does not resolve to a public address .*not shown/);
    // The internal answer itself is not told to the caller.
    expect(err.message).not.toContain('10.1.2.3');
  });
});

describe('the connection guard used below', () => {
  it('really stops a connection attempt (otherwise the tests below would prove nothing)', async () => {
    const guard = forbidConnections();
    try {
      const before = server.hits.length;
      const err = await refusal(`http://127.0.0.1:${server.port}/metadata.xml`, { allowedHosts: [`127.0.0.1:${server.port}`] }, resolverFor({}));
      expect(err.code).toBe('unreachable');
      expect(guard.attempts()).toBeGreaterThan(0);
      expect(server.hits.length).toBe(before);
    } finally {
      guard.restore();
    }
  });
});

describe('with connections forbidden', () => {
  let guard: ReturnType<typeof forbidConnections>;
  beforeEach(() => {
    guard = forbidConnections();
  });
  afterEach(() => {
    expect(guard.attempts()).toBe(0);
    guard.restore();
  });

  it('refuses a name when any of its addresses is private, even if another is public', async () => {
    const resolve = resolverFor({ 'mixed.test': ['93.184.215.14', '10.0.0.1'] });
    const err = await refusal('https://mixed.test/metadata.xml', { allowedHosts: [] }, resolve);
    expect(err.code).toBe('blocked_address');
    expect(err.message).toMatch(/does not resolve to a public address .*not shown/);
    expect(err.message).not.toMatch(/10\.0\.0\.1|93\.184/);
  });

  it('refuses a name that resolves to the cloud metadata address', async () => {
    const resolve = resolverFor({ 'metadata.test': ['169.254.169.254'] });
    const err = await refusal('https://metadata.test/latest/meta-data/', { allowedHosts: [] }, resolve);
    expect(err.code).toBe('blocked_address');
    expect(err.message).toMatch(/the host "metadata\.test" does not resolve to a public address/);
    expect(err.message).not.toContain('169.254');
  });

  it('refuses the cloud metadata address written in the URL without suggesting to allow-list it', async () => {
    const err = await refusal('http://169.254.169.254/latest/meta-data/', { allowedHosts: [] }, resolverFor({}));
    expect(err.code).toBe('blocked_address');
    expect(err.message).toMatch(/it points at cloud metadata address 169\.254\.169\.254, which is not a public address\. Metadata URLs must reach a public host\.$/);
    expect(err.message).not.toContain('metadataAllowedHosts');
    // Another internal address still gets the hint.
    const privateOne = await refusal('http://10.1.2.3/md.xml', { allowedHosts: [] }, resolverFor({}));
    expect(privateOne.message).toContain('adding "10.1.2.3:80" to metadataAllowedHosts');
  });

  it('refuses a name that resolves to an IPv6 unique-local address', async () => {
    const resolve = resolverFor({ 'v6.test': ['fd00:ec2::254'] });
    expect((await refusal('https://v6.test/', { allowedHosts: [] }, resolve)).code).toBe('blocked_address');
  });

  it('refuses plain http to a public host that is not allow-listed', async () => {
    const resolve = resolverFor({ 'public.test': ['93.184.215.14'] });
    const err = await refusal('http://public.test/metadata.xml', { allowedHosts: [] }, resolve);
    expect(err.code).toBe('scheme_not_allowed');
    expect(err.message).toMatch(/over plain http; use https/);
  });

  it('answers a name that does not resolve exactly as one that resolves to an internal address (which internal names exist is not told)', async () => {
    const resolve = resolverFor({ 'internal.test': ['10.1.2.3'], 'loopback.test': ['127.0.0.1'] });
    const missing = await refusal('https://missing.test/metadata.xml', { allowedHosts: [] }, resolve);
    const answers = await Promise.all(['internal.test', 'loopback.test'].map((h) => refusal(`https://${h}/metadata.xml`, { allowedHosts: [] }, resolve)));
    for (const [h, err] of answers.map((e, i) => [['internal.test', 'loopback.test'][i] as string, e] as const)) {
      expect({ code: err.code, message: err.message.replaceAll(h, 'missing.test') }).toEqual({ code: missing.code, message: missing.message });
    }
    expect(missing.message).toMatch(/"missing\.test" does not resolve to a public address.*Check the host name/);
  });

  it('tells an operator plainly that an allow-listed name does not resolve', async () => {
    const err = await refusal('https://missing.test/metadata.xml', { allowedHosts: ['missing.test:443'] }, resolverFor({}));
    expect(err.code).toBe('unreachable');
    expect(err.message).toMatch(/"missing\.test".*no such host/);
  });

  it('times out a resolver that never answers', async () => {
    const never: ResolveHost = () => new Promise<LookupAddress[]>(() => undefined);
    const err = await refusal('https://slow-dns.test/', { allowedHosts: [], timeoutMs: 200 }, never);
    expect(err.code).toBe('timeout');
  });

  it.each([
    ['ftp://idp.example.test/metadata.xml', 'scheme_not_allowed'],
    ['file:///etc/passwd', 'scheme_not_allowed'],
    ['javascript:alert(1)', 'scheme_not_allowed'],
    ['not a url', 'invalid_url'],
    ['https://user:secret@idp.example.test/metadata.xml', 'invalid_url'],
  ])('refuses %s before resolving anything', async (url, code) => {
    const resolve = resolverFor({});
    const err = await refusal(url, { allowedHosts: [] }, resolve);
    expect(err.code).toBe(code);
    expect(resolve.calls).toEqual([]);
  });
});

describe('kept-alive connections', () => {
  /** A server on 0.0.0.0 (so 127.0.0.1 and 127.0.0.2 both reach it) that records the address of each connection. */
  async function countingServer(): Promise<{ port: number; connections: string[]; close(): Promise<void> }> {
    const connections: string[] = [];
    const srv = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/xml' }).end(OKTA_XML));
    srv.on('connection', (socket) => connections.push(socket.localAddress ?? '?'));
    await new Promise<void>((resolve) => srv.listen(0, '0.0.0.0', () => resolve()));
    const { port } = srv.address() as AddressInfo;
    return {
      port,
      connections,
      close: () => new Promise<void>((resolve) => {
        srv.closeAllConnections();
        srv.close(() => resolve());
      }),
    };
  }

  afterAll(() => closeIdpConnections());

  it('reuses a connection while the host resolves to the same checked addresses, and opens one to a new answer', async () => {
    const srv = await countingServer();
    try {
      const opts = { allowedHosts: [`idp.test:${srv.port}`] };
      const url = `http://idp.test:${srv.port}/metadata.xml`;
      const first = resolverFor({ 'idp.test': ['127.0.0.1'] });
      for (let i = 0; i < 3; i++) {
        expect((await fetchMetadataWithResolver(url, opts, first)).body).toBe(OKTA_XML);
        // undici hands a finished connection back to its pool on a later turn of the event loop.
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      // Each fetch resolved and checked the host again; one connection served all three.
      expect(first.calls).toEqual(['idp.test', 'idp.test', 'idp.test']);
      expect(srv.connections).toEqual(['127.0.0.1']);
      if (!canBind('127.0.0.2')) return;
      // The name now resolves elsewhere: the kept connection (to the old address) is not used for it.
      const moved = resolverFor({ 'idp.test': ['127.0.0.2'] });
      expect((await fetchMetadataWithResolver(url, opts, moved)).body).toBe(OKTA_XML);
      expect(srv.connections).toEqual(['127.0.0.1', '127.0.0.2']);
    } finally {
      await srv.close();
    }
  });
});
