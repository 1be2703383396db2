/**
 * The start-up line of a region added to a running deployment: it is up, but not ready (/readyz 503, joining)
 * until it is re-seeded, so its line says that, with the re-seed command, instead of `region ready` (which
 * scripts and tests wait for as "takes traffic"). The command it prints seeds it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { RegionProcess } from '../../src/cluster/region-process';
import { dropDatabase } from '../../src/db/migrate';
import { PROJECT_ROOT } from '../../src/paths';
import { addedRegionProcess, adminHeaders, call, eventually, startCluster, type Cluster } from '../support/harness';

let cluster: Cluster;
let added: RegionProcess | null = null;
let addedDb = '';
let viaCluster: ChildProcess | null = null;
let viaClusterDb = '';
beforeAll(async () => {
  cluster = await startCluster('joining-line', ['us-iowa', 'europe-belgium']);
}, 120_000);
afterAll(async () => {
  viaCluster?.kill('SIGKILL');
  await Promise.all([added?.stop(0), cluster?.stop(0)]);
  for (const db of [addedDb, viaClusterDb]) if (db) await dropDatabase(db).catch(() => undefined);
});

function reseed(args: string[], env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(PROJECT_ROOT, 'dist', 'scripts', 'reseed.js'), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code, stderr }));
  });
}

test('a joining region says it is up but takes no traffic until re-seeded, with the command, not "region ready"; the command seeds it', async () => {
  // A running deployment: a change delivered, so a region added now has missed it.
  const org = await call(cluster.url('us-iowa'), 'POST', '/admin/organizations', { body: { name: 'before-join' }, headers: { ...adminHeaders, 'SlashID-Required-Consistency': 'all_regions' } });
  expect(org.status).toBe(201);

  const lines: Record<string, unknown>[] = [];
  const level = process.env.TEST_LOG_LEVEL;
  process.env.TEST_LOG_LEVEL = 'info'; // regionProcessEnv reads it: the info lines too
  let region;
  try {
    region = await addedRegionProcess(cluster, 'south-brazil', {
      configName: 'regions.3.config.json',
      onLine: (line) => {
        if (line.startsWith('{')) lines.push(JSON.parse(line) as Record<string, unknown>);
      },
    });
  } finally {
    if (level === undefined) delete process.env.TEST_LOG_LEVEL;
    else process.env.TEST_LOG_LEVEL = level;
  }
  added = region.process;
  addedDb = region.databaseUrl;
  added.start();
  await added.waitReady(60_000);
  const started = () => lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('region up, not taking traffic until re-seeded'));
  expect(await eventually(async () => started() !== undefined, 10_000, 50)).toBe(true);
  const command = `REGIONS_CONFIG=${region.configPath} npm run reseed -- --from us-iowa --to south-brazil`;
  expect(started()).toMatchObject({ level: 40, url: added.url, joining: true, reseed: command });
  expect(started()?.msg).toContain(`run ${command}`);
  expect(lines.filter((l) => l.msg === 'region ready')).toEqual([]);
  const readiness = await call(added.url, 'GET', '/readyz');
  expect({ status: readiness.status, joining: readiness.body.joining }).toEqual({ status: 503, joining: true });

  // The command as printed (npm's `--` and what follows are the script's arguments).
  const [, env, args] = /^REGIONS_CONFIG=(\S+) npm run reseed -- (.*)$/.exec(command) ?? [];
  const seeded = await reseed((args ?? '').split(' '), { REGIONS_CONFIG: env ?? '' });
  expect(seeded).toEqual({ code: 0, stderr: '' });
  expect(await eventually(async () => (await call(added?.url ?? '', 'GET', '/readyz')).status === 200, 15_000, 200)).toBe(true);
  expect((await call(added.url, 'GET', `/admin/organizations/${org.body.id}`, { headers: adminHeaders })).status).toBe(200);

  // Restarted once seeded (active): its line is `region ready` again.
  lines.length = 0;
  await added.restart();
  expect(await eventually(async () => lines.some((l) => l.msg === 'region ready'), 10_000, 50)).toBe(true);
  expect(started()).toBeUndefined();
}, 120_000);

test('npm run cluster says a joining region is up but not ready (UP, not READY), and the cluster "up, not ready", not "cluster ready"', async () => {
  const region = await addedRegionProcess(cluster, 'east-india', { configName: 'regions.4.config.json' });
  viaClusterDb = region.databaseUrl;
  const child = spawn(process.execPath, [path.join(PROJECT_ROOT, 'dist', 'scripts', 'cluster.js'), 'east-india'], {
    env: { ...process.env, ...region.process.opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  viaCluster = child;
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  expect(await eventually(async () => /^cluster (ready|up)/m.test(out), 60_000, 50)).toBe(true);
  expect(out).toContain(`UP east-india ${region.process.url}, not ready: joining: it takes no traffic until it is re-seeded`);
  expect(out).not.toMatch(/^READY /m);
  expect(out).toMatch(new RegExp(`^cluster up, not ready: east-india=${region.process.url.replace(/[.]/g, '\\.')}; east-india takes no traffic yet`, 'm'));
  expect(out).not.toContain('cluster ready');
  child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
  viaCluster = null;
}, 90_000);
