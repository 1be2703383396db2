/**
 * A region whose database is restored from a backup lacks every change it applied since the backup: its
 * inbox entries were acked and their origins confirmed them, so nothing delivers them again. At start it
 * finds its database's applied counts below the mark its Redis holds, and marks itself as needing a re-seed
 * (docs/operations.md, "Restoring a region's database from a backup"). A plain restart marks nothing. A
 * database dropped and created again holds no counts at all; its identity gives it away. A database set back to
 * before changes its region made itself (and applied nothing since) holds its counts: its outbox mark gives it away.
 */
import { Client } from 'pg';
import { dropDatabase } from '../../src/db/migrate';
import { createRedis, replicationKeys } from '../../src/redis';
import { updateMember } from '../../src/replication/member-record';
import { startRegion, type RunningRegion } from '../../src/region';
import { createDeployment, REDIS_URL, type TestDeployment } from '../support/env';
import { adminHeaders, call, createOrg, eventually } from '../support/harness';

let dep: TestDeployment;
const running = new Map<string, RunningRegion>();
const redis = createRedis(REDIS_URL, 'restored-database-test');

beforeAll(async () => {
  dep = await createDeployment('restored-database', ['us-iowa', 'europe-belgium']);
  for (const id of ['us-iowa', 'europe-belgium']) running.set(id, await startRegion(dep.configFor(id), { drainTimeoutMs: 5000 }));
});
afterAll(async () => {
  for (const r of running.values()) await r.stop();
  // The last test's copy of a database, should it have stopped before dropping it.
  if (dep) await onServer(`DROP DATABASE IF EXISTS "${usIowaDb()}_bak"`).catch(() => undefined);
  redis.disconnect();
  await dep?.cleanup();
});

const url = (id: string) => (running.get(id) as RunningRegion).url;
const usIowaDb = () => new URL(dep.file.regions.find((r) => r.id === 'us-iowa')?.databaseUrl as string).pathname.slice(1);
const keys = () => replicationKeys(dep.file.redisKeyPrefix);

async function restart(id: string): Promise<void> {
  await running.get(id)?.stop();
  running.set(id, await startRegion(dep.configFor(id), { drainTimeoutMs: 5000 }));
}

/** Runs `text` on the server's maintenance database (CREATE and DROP DATABASE). */
async function onServer(text: string): Promise<void> {
  const u = new URL(dep.file.regions[0]?.databaseUrl as string);
  u.pathname = '/postgres';
  const c = new Client({ connectionString: u.toString() });
  await c.connect();
  try {
    await c.query(text);
  } finally {
    await c.end();
  }
}

async function sql(id: string, text: string): Promise<unknown[]> {
  const c = new Client({ connectionString: dep.file.regions.find((r) => r.id === id)?.databaseUrl });
  await c.connect();
  try {
    return (await c.query(text)).rows;
  } finally {
    await c.end();
  }
}

/** `id`'s state as `by` (default us-iowa) sees it. */
async function stateOf(id: string, by = 'us-iowa'): Promise<string | undefined> {
  const s = (await call(url(by), 'GET', '/admin/replication', { headers: adminHeaders })).body;
  return (s.members as { region: string; state: string }[]).find((m) => m.region === id)?.state;
}

test('a plain restart marks nothing; a database set back to an older state is marked as needing a re-seed, once', async () => {
  // Two changes from us-iowa applied in europe-belgium, and counted there (the count is written about a second later).
  await createOrg(url('us-iowa'), 'one', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });
  await createOrg(url('us-iowa'), 'two', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });
  expect(await eventually(async () => Number(await redis.zscore(keys().appliedMark('europe-belgium'), 'us-iowa')) === 2)).toBe(true);

  await restart('europe-belgium');
  await createOrg(url('us-iowa'), 'three', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });
  const applied = async () => (await call(url('europe-belgium'), 'GET', '/admin/replication', { headers: adminHeaders })).body.applied as { origin_region: string; events_applied: number }[];
  expect(await eventually(async () => (await applied()).find((a) => a.origin_region === 'us-iowa')?.events_applied === 3)).toBe(true);
  expect(await stateOf('europe-belgium')).toBe('active');

  // "Restore a backup" taken after the first change: europe-belgium's database forgets the other two.
  await running.get('europe-belgium')?.stop();
  await sql('europe-belgium', "DELETE FROM organizations WHERE name <> 'one'");
  await sql('europe-belgium', "UPDATE replication_progress SET applied_count = 1 WHERE origin_region = 'us-iowa'");
  running.set('europe-belgium', await startRegion(dep.configFor('europe-belgium'), { drainTimeoutMs: 5000 }));
  // Marked before it serves: its own first answer says so (restore-check-start.test.ts has it with processes).
  expect(await stateOf('europe-belgium', 'europe-belgium')).toBe('joining');
  expect(await eventually(async () => (await stateOf('europe-belgium')) === 'joining')).toBe(true);
  const status = (await call(url('us-iowa'), 'GET', '/admin/replication', { headers: adminHeaders })).body;
  expect(status.needs_reseed).toEqual(['europe-belgium']);
  // The mark now follows the database: the next start does not find it again.
  expect(Number(await redis.zscore(keys().appliedMark('europe-belgium'), 'us-iowa'))).toBe(1);
});

test('a region started on its database dropped and created again is marked as needing a re-seed, though it applied nothing from others', async () => {
  // us-iowa originates its writes: it applied no change of another region, so it has no applied mark.
  await createOrg(url('us-iowa'), 'four', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });
  expect(await redis.zcard(keys().appliedMark('us-iowa'))).toBe(0);
  await restart('us-iowa');
  expect(await stateOf('us-iowa')).toBe('active');

  // The database is lost; the region starts on an empty one (it creates and migrates it).
  await running.get('us-iowa')?.stop();
  await dropDatabase(dep.file.regions.find((r) => r.id === 'us-iowa')?.databaseUrl as string);
  running.set('us-iowa', await startRegion(dep.configFor('us-iowa'), { drainTimeoutMs: 5000 }));
  expect(await stateOf('us-iowa', 'us-iowa')).toBe('joining');
  expect(await sql('us-iowa', 'SELECT id FROM organizations')).toEqual([]);
  expect(await eventually(async () => (await stateOf('us-iowa')) === 'joining')).toBe(true);
  const status = (await call(url('europe-belgium'), 'GET', '/admin/replication', { headers: adminHeaders })).body;
  expect(status.needs_reseed).toContain('us-iowa');

  // The record follows the new database: once re-seeded (here: marked active), a plain restart marks nothing.
  await updateMember(redis, keys(), 'us-iowa', { state: 'active' });
  await restart('us-iowa');
  await new Promise((resolve) => setTimeout(resolve, 1500));
  expect(await stateOf('us-iowa')).toBe('active');
});

test('a database set back to before changes its region made itself is marked as needing a re-seed, though it applied nothing from others', async () => {
  // us-iowa originates every change here (europe-belgium writes nothing): its applied counts never move.
  const ALL = { 'SlashID-Required-Consistency': 'all_regions' };
  const doomed = await createOrg(url('us-iowa'), 'five', { headers: ALL });
  const dbName = usIowaDb();
  // Its backup: a copy of its database as it is now, taken while the region is stopped.
  await running.get('us-iowa')?.stop();
  await onServer(`CREATE DATABASE "${dbName}_bak" TEMPLATE "${dbName}"`);
  running.set('us-iowa', await startRegion(dep.configFor('us-iowa'), { drainTimeoutMs: 5000 }));

  // Then it deletes the organization: every region applies the delete (and collects its tombstone later).
  const del = await call(url('us-iowa'), 'DELETE', `/admin/organizations/${doomed.id}`, { headers: { ...adminHeaders, ...ALL } });
  expect(del.status).toBe(204);
  const changeId = String(del.headers.get('x-change-id'));
  const confirmedId = async () =>
    Number(((await sql('us-iowa', `SELECT id FROM replication_outbox WHERE change_id = '${changeId}' AND confirmed_at IS NOT NULL`))[0] as { id?: string } | undefined)?.id ?? 0);
  expect(await eventually(async () => (await confirmedId()) > 0)).toBe(true);
  const id = await confirmedId();
  // Its relay records how far its own changes got, in its database and then in its Redis.
  expect(await eventually(async () => Number(await redis.zscore(keys().outboxMark('us-iowa'), 'committed')) >= id)).toBe(true);

  // The backup is restored: the organization is live in the database again, and the applied counts are the same.
  await running.get('us-iowa')?.stop();
  await onServer(`DROP DATABASE "${dbName}" WITH (FORCE)`);
  await onServer(`CREATE DATABASE "${dbName}" TEMPLATE "${dbName}_bak"`);
  await onServer(`DROP DATABASE "${dbName}_bak"`);
  running.set('us-iowa', await startRegion(dep.configFor('us-iowa'), { drainTimeoutMs: 5000 }));
  expect(await sql('us-iowa', `SELECT deleted_at FROM organizations WHERE id = '${doomed.id}'`)).toEqual([{ deleted_at: null }]);
  // Before 2026-12-07 it came back active, serving the organization every other region had deleted.
  expect(await stateOf('us-iowa', 'us-iowa')).toBe('joining');
  expect(await eventually(async () => (await stateOf('us-iowa', 'europe-belgium')) === 'joining')).toBe(true);
  const status = (await call(url('europe-belgium'), 'GET', '/admin/replication', { headers: adminHeaders })).body;
  expect(status.needs_reseed).toContain('us-iowa');
  // The mark now follows the database: once re-seeded (here: marked active), a plain restart marks nothing.
  await updateMember(redis, keys(), 'us-iowa', { state: 'active' });
  await restart('us-iowa');
  expect(await stateOf('us-iowa', 'us-iowa')).toBe('active');
}, 60_000);
