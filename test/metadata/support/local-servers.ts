/**
 * Real HTTP(S) servers on loopback addresses for the fetch tests. They serve a valid metadata
 * document, so a refusal the fetcher fails to make shows up as a successful fetch.
 * Tests never send traffic anywhere but loopback.
 */
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { fixture } from './fixtures';
import { TEST_TLS_CERT, TEST_TLS_KEY } from './tls-material';

export const OKTA_XML = fixture('okta.xml');
export const OKTA_ENTITY_ID = 'http://www.okta.com/exk9u78i8aMSxvkV70h7';

export interface LocalServer {
  host: string;
  port: number;
  /** "http://127.0.0.1:1234" or "http://[::1]:1234" */
  origin: string;
  /** requests seen, by path, so tests can prove a refused URL was never requested */
  hits: string[];
  close(): Promise<void>;
}

function streamForever(res: http.ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/xml' });
  const chunk = Buffer.alloc(64 * 1024, 'a');
  const pump = (): void => {
    while (!res.destroyed && res.write(chunk)) {
      // keep writing until the socket pushes back
    }
    if (!res.destroyed) res.once('drain', pump);
  };
  res.write('<?xml version="1.0"?><md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"><!--');
  pump();
}

/** What the route /bytes?name=<name> answers, by name. */
export const servedBytes = new Map<string, Buffer>();

/** The routes every test server answers; `target` query parameters are absolute URLs. */
export function metadataRoutes(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://local');
  switch (url.pathname) {
    case '/metadata.xml':
      res.writeHead(200, { 'content-type': 'application/samlmetadata+xml' });
      res.end(OKTA_XML);
      return;
    case '/status': {
      // /status?code=…: the metadata under that status (none under 204 and 205, which carry no body)
      const code = Number(url.searchParams.get('code') ?? '200');
      res.writeHead(code, { 'content-type': 'application/samlmetadata+xml' });
      res.end(code === 204 || code === 205 ? undefined : OKTA_XML);
      return;
    }
    case '/html':
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(fixture('html-error-page.xml'));
      return;
    case '/redirect': {
      res.writeHead(Number(url.searchParams.get('status') ?? '302'), { location: url.searchParams.get('target') ?? '/metadata.xml' });
      res.end();
      return;
    }
    case '/chain': {
      // /chain?n=3 -> /chain?n=2 -> ... -> /metadata.xml, i.e. n redirects in all
      const n = Number(url.searchParams.get('n') ?? '0');
      res.writeHead(302, { location: n <= 1 ? '/metadata.xml' : `/chain?n=${n - 1}` });
      res.end();
      return;
    }
    case '/loop':
      res.writeHead(302, { location: '/loop' });
      res.end();
      return;
    case '/redirect-without-location':
      res.writeHead(302);
      res.end();
      return;
    case '/slow': {
      // /slow?ms=…: the metadata after that long (an IdP that takes its time; fetches of it overlap)
      const timer = setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/samlmetadata+xml' });
        res.end(OKTA_XML);
      }, Number(url.searchParams.get('ms') ?? '0'));
      res.on('close', () => clearTimeout(timer));
      return;
    }
    case '/hang':
      return; // never answers
    case '/stall-body':
      res.writeHead(200, { 'content-type': 'application/xml' });
      res.write('<?xml version="1.0"?>');
      return; // headers and a few bytes, then nothing
    case '/huge':
      streamForever(res);
      return;
    case '/bytes': {
      // /bytes?name=…: exactly the bytes a test put in servedBytes (other encodings, bytes no encoding allows)
      // With &declare, the answer carries its Content-Length; without, it is sent chunked.
      const bytes = servedBytes.get(url.searchParams.get('name') ?? '') ?? Buffer.alloc(0);
      res.writeHead(200, { 'content-type': 'application/xml', ...(url.searchParams.has('declare') ? { 'content-length': String(bytes.length) } : {}) });
      res.end(bytes);
      return;
    }
    case '/huge-declared':
      res.writeHead(200, { 'content-type': 'application/xml', 'content-length': String(50 * 1024 * 1024) });
      res.write('<');
      return;
    default:
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
  }
}

function listen(server: http.Server | https.Server, host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, host, () => resolve(true));
  });
}

async function start(server: http.Server | https.Server, scheme: 'http' | 'https', host: string, port: number): Promise<LocalServer | null> {
  const hits: string[] = [];
  server.prependListener('request', (req: http.IncomingMessage) => hits.push(req.url ?? ''));
  if (!(await listen(server, host, port))) return null;
  const address: AddressInfo | string | null = server.address();
  const bound = typeof address === 'object' && address !== null ? address.port : port;
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    host,
    port: bound,
    origin: `${scheme}://${shown}:${bound}`,
    hits,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Starts a metadata server on host:port (0 = any port); null when the OS refuses the address. */
export function startHttpServer(host: string, port = 0): Promise<LocalServer | null> {
  return start(http.createServer(metadataRoutes), 'http', host, port);
}

/** Same routes over https with a self-signed certificate that no client trusts. */
export function startHttpsServer(host: string, port = 0): Promise<LocalServer | null> {
  return start(https.createServer({ key: TEST_TLS_KEY, cert: TEST_TLS_CERT }, metadataRoutes), 'https', host, port);
}

/**
 * Whether this machine lets a process bind `host`, probed synchronously so tests can be marked
 * skipped at definition time instead of passing vacuously.
 */
export function canBind(host: string): boolean {
  const probe = `require('net').createServer().once('error',()=>process.exit(1)).listen(0,${JSON.stringify(host)},function(){this.close()})`;
  return spawnSync(process.execPath, ['-e', probe], { timeout: 5000 }).status === 0;
}
