/**
 * The local deployment the benchmarks run against: an IdP metadata server serving okta.xml on loopback,
 * three regions with fresh databases and a fresh Redis key prefix, each as its own process (created here,
 * started by the caller), and a clean-up that drops what it made.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { RegionProcess } from '../src/cluster/region-process';
import type { ConfigFile } from '../src/config-schema';
import { dropDatabase } from '../src/db/migrate';
import { deleteKeysWithPrefix } from '../src/redis';
import { PROJECT_ROOT } from '../src/paths';

export const BENCH_REGIONS = ['us-iowa', 'europe-belgium', 'asia-japan'];

export interface BenchDeployment {
  file: ConfigFile;
  procs: RegionProcess[];
  /** Each region's operator listener (null without `operatorPorts`). */
  operatorUrls: (string | null)[];
  adminToken: string;
  /** host:port of the IdP metadata server. */
  idpHost: string;
  cleanup(): Promise<void>;
}

async function freePort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

/** `operatorPorts`: give each region an operator port (src/operator/listener.ts), at `operatorUrls[i]`. */
export async function benchDeployment(opts: { extra?: Partial<ConfigFile>; onLine?: (line: string) => void; operatorPorts?: boolean } = {}): Promise<BenchDeployment> {
  if (!fs.existsSync(path.join(PROJECT_ROOT, 'dist', 'src', 'main.js'))) throw new Error('run npm run build first');
  const okta = fs.readFileSync(path.resolve(PROJECT_ROOT, 'test', 'fixtures', 'idp-metadata', 'okta.xml'), 'utf8');
  const idp = http.createServer((_q, s) => s.writeHead(200, { 'content-type': 'application/xml' }).end(okta));
  await new Promise<void>((r) => idp.listen(0, '127.0.0.1', () => r()));
  const idpHost = `127.0.0.1:${(idp.address() as AddressInfo).port}`;

  const name = `bench_${crypto.randomBytes(3).toString('hex')}`;
  const file: ConfigFile = {
    redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    redisKeyPrefix: `${name}:`,
    regions: await Promise.all(
      BENCH_REGIONS.map(async (id) => ({
        id, port: await freePort(), databaseUrl: `postgresql://postgres@127.0.0.1:5432/${name}_${id.replace(/-/g, '_')}`,
        ...(opts.operatorPorts ? { operatorPort: await freePort() } : {}),
      })),
    ),
    metadataAllowedHosts: [idpHost],
    ...opts.extra,
  };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'saml-bench-'));
  const configPath = path.join(dir, 'regions.config.json');
  fs.writeFileSync(configPath, JSON.stringify(file));
  const adminToken = crypto.randomBytes(18).toString('base64url');
  const env = {
    REGIONS_CONFIG: configPath, ADMIN_TOKEN: adminToken, TOKEN_SIGNING_SECRET: crypto.randomBytes(32).toString('base64url'),
    REPLICATION_KEYS: `bench:${crypto.randomBytes(32).toString('base64url')}`, LOG_LEVEL: 'warn',
  };
  const procs = file.regions.map((r) => new RegionProcess({ region: r.id, url: `http://127.0.0.1:${r.port}`, env, onLine: opts.onLine }));
  return {
    file,
    procs,
    operatorUrls: file.regions.map((r) => (r.operatorPort ? `http://127.0.0.1:${r.operatorPort}` : null)),
    adminToken,
    idpHost,
    async cleanup() {
      await Promise.all(procs.map((p) => p.stop()));
      await Promise.all(file.regions.map((r) => dropDatabase(r.databaseUrl).catch(() => undefined)));
      // The bench's streams and ack records (a backlog run leaves hundreds of MB otherwise).
      await deleteKeysWithPrefix(file.redisUrl, file.redisKeyPrefix).catch(() => undefined);
      fs.rmSync(dir, { recursive: true, force: true });
      idp.close();
    },
  };
}
