/**
 * Test isolation: every test file gets its own databases (one per region) and its own Redis key prefix,
 * and drops/deletes them at the end, so files run in parallel and leave nothing behind.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Config, ConfigFile, RegionConfig } from '../../src/config';
import { dropDatabase } from '../../src/db/migrate';
import { deleteKeysWithPrefix } from '../../src/redis';
import { EventAuth, parseReplicationKeys } from '../../src/replication/event-auth';

export const PG_BASE = process.env.TEST_PG_URL ?? 'postgresql://postgres@127.0.0.1:5432';
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
export const ADMIN_TOKEN = 'test-admin-token-0123456789';
/** TOKEN_SIGNING_SECRET of every test region (at least 32 bytes, as config validation requires). */
export const TEST_SIGNING_SECRET = 'test-signing-secret-0123456789abcdef';
/** REPLICATION_KEYS of every test region (kid:secret, secrets of at least 32 bytes). */
export const TEST_REPLICATION_KEYS = 'test-k1:test-replication-secret-0123456789abcdef';
/** Signs (and verifies) change events as the test regions do, for tests that publish events themselves. */
export const testEventAuth = (keys = TEST_REPLICATION_KEYS) => new EventAuth(parseReplicationKeys(keys));
/**
 * The change ids an inbox entry carries, in order (one for a single event, several for a pack), verified
 * with `auth`; a refused entry reads as `refused: <reason>`.
 */
export function entryChangeIds(auth: EventAuth, fields: string[]): string[] {
  const v = auth.verify(fields);
  if (!v.ok) return [`refused: ${v.reason}`];
  const body = JSON.parse(v.body) as { changeId: string } | { changeId: string }[];
  return (Array.isArray(body) ? body : [body]).map((e) => e.changeId);
}

/** An inbox's events in order: each with the id of the entry it is in (a pack's events share one). */
export function inboxEvents(auth: EventAuth, entries: [string, string[]][]): { id: string; changeId: string }[] {
  return entries.flatMap(([id, fields]) => entryChangeIds(auth, fields).map((changeId) => ({ id, changeId })));
}

/** The fixtures' MANIFEST judges certificates as of this date; tests pin the service's clock to it. */
export const FIXTURE_DATE = '2026-11-23T00:00:00.000Z';

export function uniqueName(label: string): string {
  return `t_${label.replace(/[^a-z0-9]/gi, '_').toLowerCase().slice(0, 20)}_${crypto.randomBytes(4).toString('hex')}`;
}

export interface TestDeployment {
  name: string;
  file: ConfigFile;
  configPath: string;
  /** Config for one region, as loadConfig would build it. */
  configFor(region: string): Config;
  cleanup(): Promise<void>;
}

/**
 * A deployment of `regions` regions on free ports, with fresh database names and a fresh key prefix.
 * `regionConfig`: extra fields of some regions' entries (e.g. a Redis of their own).
 */
export async function createDeployment(
  label: string,
  regions: string[],
  extra: Partial<ConfigFile> = {},
  regionConfig: Record<string, Partial<RegionConfig>> = {},
): Promise<TestDeployment> {
  const name = uniqueName(label);
  const ports = await freePorts(regions.length);
  const file: ConfigFile = {
    redisUrl: REDIS_URL,
    redisKeyPrefix: `${name}:`,
    regions: regions.map((id, i) => ({
      id,
      port: ports[i] ?? 0,
      databaseUrl: `${PG_BASE}/${name}_${id.replace(/-/g, '_')}`,
      ...regionConfig[id],
    })),
    ...extra,
  };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'saml-test-'));
  const configPath = path.join(dir, 'regions.config.json');
  fs.writeFileSync(configPath, JSON.stringify(file, null, 2));
  return {
    name,
    file,
    configPath,
    configFor(region: string): Config {
      const r = file.regions.find((x) => x.id === region);
      if (!r) throw new Error(`no region ${region}`);
      return {
        ...file,
        region: { ...r, host: '127.0.0.1' },
        adminToken: ADMIN_TOKEN,
        adminAcceptedTokens: [],
        tokenSigningSecret: TEST_SIGNING_SECRET,
        replicationKeys: parseReplicationKeys(TEST_REPLICATION_KEYS),
        logLevel: process.env.TEST_LOG_LEVEL ?? 'silent',
        configPath,
        metadataValidationTime: FIXTURE_DATE,
      };
    },
    async cleanup() {
      await Promise.all(file.regions.map((r) => dropDatabase(r.databaseUrl).catch(() => undefined)));
      await deleteKeys(file.redisKeyPrefix);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function deleteKeys(prefix: string): Promise<void> {
  return deleteKeysWithPrefix(REDIS_URL, prefix);
}

export async function freePorts(n: number): Promise<number[]> {
  const net = await import('node:net');
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<import('node:net').Server>((resolve) => {
      const s = net.createServer();
      s.listen(0, '127.0.0.1', () => resolve(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as import('node:net').AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}
