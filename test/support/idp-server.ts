/**
 * A local IdP metadata server for tests: serves the fixtures in test/fixtures/idp-metadata (and documents a test sets) on loopback.
 * Deployments under test allow-list its host:port, so the service may fetch from it over plain http.
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/paths';

export const FIXTURES_DIR = path.resolve(PROJECT_ROOT, 'test', 'fixtures', 'idp-metadata');

export function fixture(name: string): string {
  return fs.readFileSync(path.join(FIXTURES_DIR, name), 'utf8');
}

export interface IdpServer {
  /** host:port, for metadataAllowedHosts. */
  hostPort: string;
  url(file: string): string;
  /** Serve `body` at `/name` (overrides a fixture of the same name). */
  set(name: string, body: string): void;
  /** Answer `/name` with a 302 to `location`. */
  redirect(name: string, location: string): void;
  /** Answer `/name` with 404 from now on. */
  remove(name: string): void;
  /**
   * Hold the next answer to `/name` for `ms` milliseconds (a slow IdP). With a query (`okta.xml?x=1`) only
   * that URL is held: a background refresh of the bare name elsewhere does not use the delay up.
   */
  slow(name: string, ms: number): void;
  /**
   * Hold answers to `/name` until the returned function is called (a fetch under way for as long as a test
   * needs, whatever the machine's speed); requests for it meanwhile are answered then.
   */
  hold(name: string): () => void;
  /** Requests being held by a delay of slow() or by hold() right now. */
  held(): number;
  hits(name: string): number;
  close(): Promise<void>;
}

/** `text` with its %-escapes decoded, or undefined when one is malformed. */
function decoded(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}

/** Listens on `host`:`port`; port 0 (the tests' default) picks a free one. Rejects when the port is taken. */
export async function startIdpServer(host = '127.0.0.1', port = 0): Promise<IdpServer> {
  const docs = new Map<string, string>();
  const redirects = new Map<string, string>();
  const removed = new Set<string>();
  const delays = new Map<string, number>();
  const gates = new Map<string, Promise<void>>();
  const hits = new Map<string, number>();
  let holding = 0;
  const server = http.createServer((req, res) => {
    // A malformed %-escape (`/%zz`, `okta.xml?a=%zz`: a tenant's metadata URL can hold one) is a 400 for
    // its path and kept as sent in its query; decodeURIComponent's URIError ended the process.
    const name = decoded((req.url ?? '/').split('?')[0]?.slice(1) ?? '');
    if (name === undefined) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('malformed %-escape in the path');
      return;
    }
    // A delay set for a name with its query holds that URL alone; one set for the bare name, any query.
    const asked = decoded((req.url ?? '/').slice(1)) ?? (req.url ?? '/').slice(1);
    const held = delays.has(asked) ? asked : name;
    const wait = delays.get(held);
    const gate = gates.get(name);
    if (gate) {
      holding += 1;
      void gate.then(() => {
        holding -= 1;
        server.emit('request', req, res);
      });
      return;
    }
    if (wait) {
      delays.delete(held);
      holding += 1;
      setTimeout(() => {
        holding -= 1;
        server.emit('request', req, res);
      }, wait);
      return;
    }
    hits.set(name, (hits.get(name) ?? 0) + 1);
    const location = redirects.get(name);
    if (location) {
      res.writeHead(302, { location }).end();
      return;
    }
    let body = removed.has(name) ? undefined : docs.get(name);
    if (body === undefined && !removed.has(name) && /^[a-z0-9-]+\.xml$/.test(name) && fs.existsSync(path.join(FIXTURES_DIR, name))) body = fixture(name);
    if (body === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/samlmetadata+xml' }).end(body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const hostPort = `${host}:${(server.address() as AddressInfo).port}`;
  return {
    hostPort,
    url: (file) => `http://${hostPort}/${file}`,
    set: (name, body) => {
      removed.delete(name);
      docs.set(name, body);
    },
    redirect: (name, location) => void redirects.set(name, location),
    remove: (name) => void removed.add(name),
    slow: (name, ms) => void delays.set(name, ms),
    hold: (name) => {
      let open = () => undefined as void;
      gates.set(name, new Promise<void>((resolve) => (open = resolve)).then(() => void gates.delete(name)));
      return () => open();
    },
    held: () => holding,
    hits: (name) => hits.get(name) ?? 0,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}
