/**
 * A re-seeded region holds what its peer held, so its lag figures take the peer's: GET /admin/replication's
 * `applied` names each origin's newest change the copy brought (the peer's own too), and the console's lag
 * matrix reads it caught up. Before, a region re-seeded after its database was lost read "behind" every
 * origin (no figure) until that origin wrote again, its digests equal to the others' all along.
 */
import { Client } from 'pg';
import { dropDatabase } from '../../src/db/migrate';
import { startRegion, type RunningRegion } from '../../src/region';
import { createDeployment, type TestDeployment } from '../support/env';
import { adminHeaders, call, createOrg, eventually, reseedSeen, runReseed } from '../support/harness';

const REGIONS = ['us-iowa', 'europe-belgium', 'asia-japan'];
let dep: TestDeployment;
const running = new Map<string, RunningRegion>();

beforeAll(async () => {
  dep = await createDeployment('reseed-progress', REGIONS);
  // At their configured ports: the console's gathering calls them there.
  for (const id of REGIONS) running.set(id, await startRegion(dep.configFor(id), { drainTimeoutMs: 5000 }));
}, 60_000);
afterAll(async () => {
  for (const r of running.values()) await r.stop();
  await dep?.cleanup();
});

const url = (id: string) => (running.get(id) as RunningRegion).url;
const allRegions = { headers: { 'SlashID-Required-Consistency': 'all_regions' } };
const applied = async (id: string) =>
  (await call(url(id), 'GET', '/admin/replication', { headers: adminHeaders })).body.applied as { origin_region: string; last_change_id: string; events_applied: number }[];

test('a region re-seeded after its database was lost reads caught up with every origin the copy brought', async () => {
  const write = (id: string, name: string) => call(url(id), 'POST', '/admin/organizations', { body: { name }, headers: { ...adminHeaders, ...allRegions.headers } });
  const fromUs = await write('us-iowa', 'us');
  const fromEu = await write('europe-belgium', 'eu');
  const usChange = fromUs.headers.get('x-change-id');
  const euChange = fromEu.headers.get('x-change-id');
  // Counted in europe-belgium (about a second after the apply).
  expect(await eventually(async () => (await applied('europe-belgium')).some((a) => a.last_change_id === usChange))).toBe(true);

  await running.get('asia-japan')?.stop();
  await dropDatabase(dep.file.regions.find((r) => r.id === 'asia-japan')?.databaseUrl as string);
  running.set('asia-japan', await startRegion(dep.configFor('asia-japan'), { drainTimeoutMs: 5000 }));
  const run = await runReseed({ deployment: dep } as Parameters<typeof runReseed>[0], 'europe-belgium', 'asia-japan');
  expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 0, stderr: '' });

  // With no count: nothing was applied there.
  const progress = await applied('asia-japan');
  expect(progress.find((a) => a.origin_region === 'us-iowa')).toMatchObject({ last_change_id: usChange, events_applied: 0 });
  expect(progress.find((a) => a.origin_region === 'europe-belgium')).toMatchObject({ last_change_id: euChange, events_applied: 0 });
  const deployment = (await call(url('us-iowa'), 'GET', '/admin/deployment', { headers: adminHeaders })).body;
  const cells = (deployment.lag as { origin: string; region: string; state: string }[]).filter((c) => c.region === 'asia-japan');
  expect(cells.map((c) => `${c.origin}:${c.state}`).sort()).toEqual(['europe-belgium:caught-up', 'us-iowa:caught-up']);

  // Later writes count on top.
  await createOrg(url('us-iowa'), 'after', allRegions);
  expect(await eventually(async () => (await applied('asia-japan')).find((a) => a.origin_region === 'us-iowa')?.events_applied === 1)).toBe(true);
}, 120_000);

/**
 * A write counted in asia-japan (and so marked in its Redis: its next database must not be judged by that mark),
 * then asia-japan stopped and its database dropped.
 */
async function loseAsiaDatabase(label: string): Promise<void> {
  await createOrg(url('us-iowa'), label, allRegions);
  expect(await eventually(async () => ((await applied('asia-japan')).find((a) => a.origin_region === 'us-iowa')?.events_applied ?? 0) >= 1)).toBe(true);
  await running.get('asia-japan')?.stop();
  await dropDatabase(dep.file.regions.find((r) => r.id === 'asia-japan')?.databaseUrl as string);
}

test('a region whose database was lost while it was down, re-seeded before it starts again, is not marked behind at its start', async () => {
  await loseAsiaDatabase('before the loss');
  // The re-seed creates the database and fills it.
  const run = await runReseed({ deployment: dep } as Parameters<typeof runReseed>[0], 'europe-belgium', 'asia-japan');
  expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 0, stderr: '' });
  running.set('asia-japan', await startRegion(dep.configFor('asia-japan'), { drainTimeoutMs: 5000 }));
  // The start's check runs before the applier's first read: a change written now reaches it only after.
  await createOrg(url('us-iowa'), 'after the start', allRegions);
  const status = (await call(url('us-iowa'), 'GET', '/admin/replication', { headers: adminHeaders })).body;
  expect(status.needs_reseed).toEqual([]);
  expect(status.members.find((m: { region: string }) => m.region === 'asia-japan').state).toBe('active');
}, 120_000);

test('a region whose database was lost, started again while its re-seed copies, lets that re-seed finish', async () => {
  await loseAsiaDatabase('before the second loss');

  // The copy waits on a lock of the peer's last table (one the peer itself does not touch here): the region starts
  // (as its supervisor restarts it) meanwhile.
  const peerUrl = dep.file.regions.find((r) => r.id === 'europe-belgium')?.databaseUrl;
  const peer = new Client({ connectionString: peerUrl });
  // Another session: pg_stat_activity is read once per transaction, and the lock's stays open.
  const watch = new Client({ connectionString: peerUrl });
  await Promise.all([peer.connect(), watch.connect()]);
  try {
    await peer.query('BEGIN');
    await peer.query('LOCK TABLE saml_sso_settings IN ACCESS EXCLUSIVE MODE');
    const reseed = runReseed({ deployment: dep } as Parameters<typeof runReseed>[0], 'europe-belgium', 'asia-japan');
    const copying = async () =>
      (await watch.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FROM "saml_sso_settings" x%'`)).rows[0]?.n === 1;
    expect(await eventually(copying, 90_000)).toBe(true);
    running.set('asia-japan', await startRegion(dep.configFor('asia-japan'), { drainTimeoutMs: 5000 }));
    // Its start's check (before the applier's first read) runs on the database the re-seed is filling.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    await peer.query('COMMIT');
    const run = await reseed;
    expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 0, stderr: '' });
  } finally {
    await Promise.all([peer.end(), watch.end()]);
  }
  // The region's own view follows the re-seed a moment later (reseedSeen).
  expect(await reseedSeen(url('us-iowa'))).toBe(true);
  const status = (await call(url('us-iowa'), 'GET', '/admin/replication', { headers: adminHeaders })).body;
  expect(status.needs_reseed).toEqual([]);
  expect(status.members.find((m: { region: string }) => m.region === 'asia-japan').state).toBe('active');
}, 180_000);
