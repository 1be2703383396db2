/**
 * The IdP metadata server of a harness run: serves the IdP fixture documents (test/fixtures/idp-metadata) from the root namespace,
 * reachable by the region hosts on the bridge address (which the generated config allow-lists). Like every
 * other host it sits behind a DelayProxy, so a region's fetch pays that region's delay.
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/paths';
import { DelayProxy, type DelayTable } from './delay-proxy';

const FIXTURES_DIR = path.resolve(PROJECT_ROOT, 'test', 'fixtures', 'idp-metadata');

export interface IdpServer {
  /** host:port for metadataAllowedHosts. */
  hostPort: string;
  url(file: string): string;
  close(): Promise<void>;
}

export async function startIdpServer(listenHost: string, delays: () => DelayTable): Promise<IdpServer> {
  if (!fs.existsSync(path.join(FIXTURES_DIR, 'okta.xml'))) throw new Error(`IdP metadata fixtures not found in ${FIXTURES_DIR}`);
  const docs = new Map<string, string>();
  const server = http.createServer((req, res) => {
    const name = decodeURIComponent((req.url ?? '/').split('?')[0]?.slice(1) ?? '');
    if (!/^[a-z0-9-]+\.xml$/.test(name) || !fs.existsSync(path.join(FIXTURES_DIR, name))) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    let body = docs.get(name);
    if (body === undefined) docs.set(name, (body = fs.readFileSync(path.join(FIXTURES_DIR, name), 'utf8')));
    res.writeHead(200, { 'content-type': 'application/samlmetadata+xml' }).end(body);
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const local = (server.address() as AddressInfo).port;
  const proxy = new DelayProxy({ listenHost, listenPort: 0, targetHost: '127.0.0.1', targetPort: local, delays });
  await proxy.listen();
  const hostPort = `${listenHost}:${proxy.port}`;
  return {
    hostPort,
    url: (file) => `http://${hostPort}/${file}`,
    async close() {
      await proxy.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
