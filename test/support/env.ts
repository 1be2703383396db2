/**
 * Test isolation: every test file gets its own databases (one per region) and its own Redis key prefix,
 * and drops/deletes them at the end, so files run in parallel and leave nothing behind.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Config } from '../../src/config';
import type { ConfigFile, RegionConfig } from '../../src/config-schema';
import { dropDatabase } from '../../src/db/migrate';
import { deleteKeysWithPrefix } from '../../src/redis';
import { EventAuth, parseReplicationKeys } from '../../src/replication/event-auth';
import { copyTemplate, usableTemplate } from './template-db';
import { alive } from './process-alive';

export const PG_BASE = process.env.TEST_PG_URL ?? 'postgresql://postgres@127.0.0.1:5432';
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
export const ADMIN_TOKEN = 'test-admin-token-0123456789';
/** TOKEN_SIGNING_SECRET of every test region (at least 32 bytes, as config validation requires). */
export const TEST_SIGNING_SECRET = 'test-signing-secret-0123456789abcdef';
/** REPLICATION_KEYS of every test region (kid:secret, secrets of at least 32 bytes). */
export const TEST_REPLICATION_KEYS = 'test-k1:test-replication-secret-0123456789abcdef';
/** Signs (and verifies) change events as the test regions do, for tests that publish events themselves. */
export const testEventAuth = (keys = TEST_REPLICATION_KEYS) => new EventAuth(parseReplicationKeys(keys));
/** An attacker's signer: the regions' key id under another secret (a guess of the key). */
export const forgerOf = (auth: EventAuth) => new EventAuth(parseReplicationKeys(`${auth.signingKid}:${'f'.repeat(40)}`));
/** An attacker's signer under a key id nobody has. */
export const strangerAuth = () => new EventAuth(parseReplicationKeys(`k9:${'e'.repeat(40)}`));
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

export interface DeploymentOptions {
  /**
   * Regions whose databases are not made in advance (true: every region's): absent until the region's start
   * (or the test) creates and migrates them. By default each region's database is made a copy of the run's
   * migrated template (template-db.ts), so the region's start finds it with nothing to migrate; a test of
   * what a start does to a missing, empty or older database (migrations, "no database created") opts out.
   */
  absentDatabases?: boolean | readonly string[];
}

/**
 * A deployment of `regions` regions on free ports, with fresh databases (migrated copies of the run's
 * template, unless `opts.absentDatabases`) and a fresh key prefix.
 * `regionConfig`: extra fields of some regions' entries (e.g. a Redis of their own).
 */
export async function createDeployment(
  label: string,
  regions: string[],
  extra: Partial<ConfigFile> = {},
  regionConfig: Record<string, Partial<RegionConfig>> = {},
  opts: DeploymentOptions = {},
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
  const template = opts.absentDatabases === true ? null : usableTemplate();
  if (template) {
    const absent = new Set(Array.isArray(opts.absentDatabases) ? opts.absentDatabases : []);
    // Only the databases named here: a region configured with another database (a shared one, say) keeps it.
    const own = (id: string) => `${PG_BASE}/${name}_${id.replace(/-/g, '_')}`;
    const copies = file.regions.filter((r) => !absent.has(r.id) && r.databaseUrl === own(r.id)).map((r) => r.databaseUrl);
    await copyTemplate(PG_BASE, template, copies).catch(async (err: unknown) => {
      await Promise.all(copies.map((u) => dropDatabase(u).catch(() => undefined)));
      throw err;
    });
  }
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

/** The first port of the kernel's ephemeral range, which outgoing connections take their local ports from. */
function ephemeralLow(): number {
  try {
    const low = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 0 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

const LOWEST_TEST_PORT = 20_000;

/** Where the test processes of this machine reserve the ports they chose: one file per port, holding the pid. */
export const PORT_RESERVATIONS = path.join(os.tmpdir(), 'saml-credentials-test-ports');

/**
 * Reserve `port` for this process, across every process of the machine (jest's workers, the fault schedule):
 * false when another living process holds it. A reservation lasts as long as the process that made it, because
 * a test stops and starts its servers again on their ports, and a port free while its region is down must not
 * go to another test file (CI: a region failed to start, its port in use).
 */
export function reservePort(port: number): boolean {
  fs.mkdirSync(PORT_RESERVATIONS, { recursive: true });
  const file = path.join(PORT_RESERVATIONS, String(port));
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = Number(fs.readFileSync(file, 'utf8'));
    if (holder === process.pid || (Number.isInteger(holder) && holder > 0 && alive(holder))) return false;
    fs.rmSync(file, { force: true }); // its process ended: the port is free to reserve again
  }
  return false;
}

const reserved = new Set<number>();
process.once('exit', () => {
  for (const port of reserved) fs.rmSync(path.join(PORT_RESERVATIONS, String(port)), { force: true });
});

/**
 * `n` ports free now, for servers a test starts later (a region of a config file, a Redis it stops and starts
 * again on the same port). Chosen below the kernel's ephemeral range: a port of that range (what listening on
 * port 0 gives) can be taken meanwhile as the local port of any process's outgoing connection, and a
 * region then failed to start with EADDRINUSE (CI, under load). Each port is checked free by listening on
 * it and reserved for this process (`reservePort`), so two test files running at once never choose the same one.
 * Where the ephemeral range starts lower than that, the kernel's choice (port 0) is taken as before.
 */
export async function freePorts(n: number): Promise<number[]> {
  const net = await import('node:net');
  const canListen = (port: number) =>
    new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
  const top = ephemeralLow();
  const chosen: number[] = [];
  for (let tries = 0; chosen.length < n && top > LOWEST_TEST_PORT + 1000 && tries < 1000; tries++) {
    const port = LOWEST_TEST_PORT + crypto.randomInt(top - LOWEST_TEST_PORT);
    if (reserved.has(port) || !reservePort(port)) continue;
    reserved.add(port);
    if (await canListen(port)) chosen.push(port);
  }
  while (chosen.length < n) {
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer();
      s.listen(0, '127.0.0.1', () => {
        const { port: got } = s.address() as import('node:net').AddressInfo;
        s.close(() => resolve(got));
      });
    });
    if (!chosen.includes(port)) chosen.push(port);
  }
  return chosen;
}
