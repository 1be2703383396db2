/**
 * A region started with DATABASE_URL over its entry of the regions file quotes an `npm run reseed` command that
 * re-seeds the database it runs on. The command read the file alone: run as quoted (the start line of a region
 * joining), it created the file's database for the region, copied the peer's rows into it, recorded it as the
 * region's and marked the region active, exit 0, while the region served on its own database without those rows
 * (the organization written before it joined answered 404 there). The command now takes --to-database-url for its
 * --to region, and a region quotes its DATABASE_URL so (a URL with a password as a placeholder). The command reads no
 * DATABASE_URL of its own environment: one exported for another tool would have it re-seed that tool's database.
 * A DATABASE_URL that is the entry's own is not quoted (it asked for a password typed in for nothing). The quoted
 * commands run in bash, as pasted.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RegionProcess } from '../../src/cluster/region-process';
import { dropDatabase } from '../../src/db/migrate';
import { PROJECT_ROOT } from '../../src/paths';
import { addedRegionProcess, adminHeaders, call, eventually, outboxConfirmed, reseedSeen, startCluster, type Cluster } from '../support/harness';
import { PG_BASE } from '../support/env';
import { databaseExists } from '../support/region-databases';

const [PEER, OTHER, ADDED] = ['us-iowa', 'europe-belgium', 'south-brazil'];
/** A database nothing may create: the DATABASE_URL of the shell the quoted commands run in. */
let STRAY_DATABASE_URL = '';
let cluster: Cluster;
let added: RegionProcess | null = null;
const databases: string[] = [];
const lines: string[] = [];
/** The database the regions file names for ADDED (the region ran on others until the last test). */
let entryDatabaseUrl = '';

beforeAll(async () => {
  cluster = await startCluster('reseed-db-env', [PEER, OTHER]);
  STRAY_DATABASE_URL = `${PG_BASE}/${cluster.deployment.name}_stray`;
  databases.push(STRAY_DATABASE_URL);
}, 120_000);
afterAll(async () => {
  await Promise.all([added?.stop(0), cluster?.stop(0)]);
  for (const url of databases) await dropDatabase(url).catch(() => undefined);
});

/** A database of this test's own, on the test Postgres (dropped in afterAll), with `password` and `search` in its URL if given. */
function ownDatabase(suffix: string, password?: string, search?: string): string {
  const url = new URL(`${PG_BASE}/${cluster.deployment.name}_${suffix}`);
  if (password) url.password = password;
  if (search) url.search = search;
  databases.push(url.toString());
  return url.toString();
}

/** The database the regions file names for `region`. */
const databaseOf = (region: string) => cluster.deployment.file.regions.find((r) => r.id === region)?.databaseUrl ?? '';

/** The message of a region's JSON log line that starts with `start`, if it printed one. */
function logged(start: string): string | undefined {
  return lines.map((l) => (l.startsWith('{') ? String((JSON.parse(l) as { msg?: unknown }).msg) : '')).find((m) => m.startsWith(start));
}

/**
 * Runs a command as a region quoted it (`NAME=value … npm run reseed -- <args>`) in a shell, as an operator pastes
 * it (its quoting read by bash: a URL with `?` and `&`), `npm run reseed --` being dist/scripts/reseed.js; from an
 * empty directory, with nothing else to find the deployment by.
 */
function runQuoted(command: string): Promise<{ status: number; stderr: string }> {
  const script = path.join(PROJECT_ROOT, 'dist', 'scripts', 'reseed.js');
  const line = command.replace(/^((?:[A-Z_]+=\S+ )*)npm run reseed -- /, `$1'${process.execPath}' '${script}' `);
  expect(line).not.toBe(command);
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of ['REGIONS_CONFIG', 'REDIS_URL', 'REDIS_KEY_PREFIX', 'INIT_CWD']) delete env[name];
  // An operator's shell with a DATABASE_URL exported for another tool: the command must not take it.
  env.DATABASE_URL = STRAY_DATABASE_URL;
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'reseed-db-env-'));
  return new Promise((resolve) => {
    execFile('/bin/bash', ['-c', line], { env, cwd, encoding: 'utf8', timeout: 60_000 }, (err, _stdout, stderr) => {
      fs.rmSync(cwd, { recursive: true, force: true });
      const code = (err as { code?: unknown } | null)?.code;
      resolve({ status: typeof code === 'number' ? code : err ? -1 : 0, stderr });
    });
  });
}

/**
 * Writes an organization every region confirms (only a copy brings it to the added region), then restarts the added
 * region on `databaseUrl`: returns the organization's id and the re-seed command the region's start check quotes.
 */
async function restartedOn(databaseUrl: string, orgName: string): Promise<{ orgId: string; command: string; region: RegionProcess }> {
  expect(added).not.toBeNull();
  const org = await call(cluster.url(PEER), 'POST', '/admin/organizations', { body: { name: orgName }, headers: { ...adminHeaders, 'SlashID-Required-Consistency': 'all_regions' } });
  expect(org.status).toBe(201);
  expect(await outboxConfirmed(databaseOf(PEER))).toBe(true);
  await added?.stop();
  const region = new RegionProcess({ ...(added as RegionProcess).opts, env: { ...(added as RegionProcess).opts.env, DATABASE_URL: databaseUrl } });
  added = region;
  lines.length = 0;
  region.start();
  await region.waitReady(60_000);
  const refusal = () => logged("this region's database is not the one it ran on before");
  expect(await eventually(async () => refusal() !== undefined, 10_000, 100)).toBe(true);
  const command = /marked as needing a re-seed: run (.*?) \(if no region is caught up/.exec(refusal() ?? '')?.[1] ?? '';
  return { orgId: String(org.body.id), command, region };
}

test('a region joining on DATABASE_URL quotes a re-seed command that seeds the database it runs on, not its entry\'s', async () => {
  const org = await call(cluster.url(PEER), 'POST', '/admin/organizations', { body: { name: 'before-join' }, headers: { ...adminHeaders, 'SlashID-Required-Consistency': 'all_regions' } });
  expect(org.status).toBe(201);
  // Confirmed by every region before the new one registers: only the copy brings it there, not its inbox.
  expect(await outboxConfirmed(databaseOf(PEER))).toBe(true);
  const region = await addedRegionProcess(cluster, ADDED, { configName: 'regions.3.config.json', onLine: (line) => lines.push(line) });
  databases.push(region.databaseUrl);
  entryDatabaseUrl = region.databaseUrl;
  // With options whose `?` and `&` the shell would read: the command quotes the URL.
  const own = ownDatabase('brazil_own', undefined, '?application_name=reseed-override&connect_timeout=10');
  added = new RegionProcess({ ...region.process.opts, env: { ...region.process.opts.env, DATABASE_URL: own } });
  added.start();
  await added.waitReady(60_000);
  const startLine = () => logged('region up, not taking traffic until re-seeded');
  expect(await eventually(async () => startLine() !== undefined, 10_000, 50)).toBe(true);
  const command = /: run (.*)$/.exec(startLine() ?? '')?.[1] ?? '';

  // Run as quoted (it exited 0 before too, having seeded the file's database).
  expect(await runQuoted(command)).toEqual({ status: 0, stderr: '' });
  expect(await reseedSeen(cluster.url(PEER))).toBe(true);
  // The region has the row written before it joined, and the database its entry names was never made.
  expect((await call(added.url, 'GET', `/admin/organizations/${String(org.body.id)}`, { headers: adminHeaders })).status).toBe(200);
  expect(await databaseExists(new URL(region.databaseUrl).pathname.slice(1))).toBe(false);
  expect(await databaseExists(new URL(STRAY_DATABASE_URL).pathname.slice(1))).toBe(false);
  expect(command).toBe(`REGIONS_CONFIG=${region.configPath} npm run reseed -- --from ${PEER} --to ${ADDED} --to-database-url '${own}'`);
}, 120_000);

test('a region restarted on another DATABASE_URL with a password quotes it as a placeholder, and the command with the URL put in seeds that database', async () => {
  // Trust authentication: the password is never asked for, only carried in the URL.
  const replaced = ownDatabase('brazil_replaced', 'not-to-be-logged');
  const { orgId, command, region } = await restartedOn(replaced, 'before-replace');
  expect(lines.join('\n')).not.toContain('not-to-be-logged');
  const configPath = path.join(path.dirname(cluster.deployment.configPath), 'regions.3.config.json');
  expect(command).toBe(`REGIONS_CONFIG=${configPath} npm run reseed -- --from '<a caught-up region>' --to ${ADDED} --to-database-url '<the DATABASE_URL this region runs with>'`);
  // Pasted unchanged, the command names what to put in (exit 2); bare, bash read `<a` as a redirect from a file.
  const unchanged = await runQuoted(command);
  expect({ status: unchanged.status, stderr: unchanged.stderr }).toEqual({ status: 2, stderr: 'reseed failed: --to-database-url must start with postgresql://\n' });

  // The URL typed in between the quotes, the peer's name over the other placeholder, quotes and all.
  const filled = command.replace('<the DATABASE_URL this region runs with>', replaced).replace("'<a caught-up region>'", PEER);
  expect(await runQuoted(filled)).toEqual({ status: 0, stderr: '' });
  expect(await reseedSeen(cluster.url(PEER))).toBe(true);
  expect((await call(region.url, 'GET', `/admin/organizations/${orgId}`, { headers: adminHeaders })).status).toBe(200);
  expect(await databaseExists(new URL(STRAY_DATABASE_URL).pathname.slice(1))).toBe(false);
}, 120_000);

test('a region started with a DATABASE_URL that is its entry\'s quotes no --to-database-url, and the command seeds that database', async () => {
  // The entry's database, never created so far: another database than the one the region ran on.
  const { orgId, command, region } = await restartedOn(entryDatabaseUrl, 'before-entry');
  const configPath = path.join(path.dirname(cluster.deployment.configPath), 'regions.3.config.json');
  // It quoted `--to-database-url <the entry's URL>`: the command's own database already, to be typed in for nothing.
  expect(command).toBe(`REGIONS_CONFIG=${configPath} npm run reseed -- --from '<a caught-up region>' --to ${ADDED}`);
  // Pasted unchanged, the command names the peer it was given as unknown (exit 2).
  const unchanged = await runQuoted(command);
  expect({ status: unchanged.status, stderr: unchanged.stderr }).toEqual({ status: 2, stderr: expect.stringMatching(/^reseed failed: unknown region: <a caught-up region> \(known: /) as unknown as string });

  expect(await runQuoted(command.replace("'<a caught-up region>'", PEER))).toEqual({ status: 0, stderr: '' });
  expect(await reseedSeen(cluster.url(PEER))).toBe(true);
  expect((await call(region.url, 'GET', `/admin/organizations/${orgId}`, { headers: adminHeaders })).status).toBe(200);
  expect(await databaseExists(new URL(STRAY_DATABASE_URL).pathname.slice(1))).toBe(false);
}, 120_000);
