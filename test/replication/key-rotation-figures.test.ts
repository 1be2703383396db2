/**
 * A rotation of REPLICATION_KEYS (docs/security.md) is checkable step by step: GET /admin/replication names
 * the key a region signs with and the keys it accepts, and counts its outbox rows not yet confirmed by every
 * region per key they were signed with, so the old key is dropped once every region counts 0 under it.
 * One region of a two-region deployment runs: its changes stay unconfirmed (europe-belgium never applies them).
 */
import { parseReplicationKeys } from '../../src/replication-keys';
import { startRegion, type RunningRegion } from '../../src/region';
import { createDeployment, TEST_REPLICATION_KEYS, type TestDeployment } from '../support/env';
import { adminHeaders, call, createOrg, eventually } from '../support/harness';

const NEW_KEY = 'test-k2:a-second-replication-secret-0123456789';

let dep: TestDeployment;
let region: RunningRegion | null = null;
beforeAll(async () => {
  dep = await createDeployment('key-rotation-figures', ['us-iowa', 'europe-belgium'], {}, {}, { absentDatabases: ['europe-belgium'] });
});
afterAll(async () => {
  await region?.stop();
  await dep?.cleanup();
});

async function start(keys: string): Promise<RunningRegion> {
  const config = { ...dep.configFor('us-iowa'), replicationKeys: parseReplicationKeys(keys) };
  return startRegion(config, { port: 0, operatorPort: 0, drainTimeoutMs: 5000 });
}

const status = async (url: string) => (await call(url, 'GET', '/admin/replication', { headers: adminHeaders })).body;

test('the signing key, the accepted keys and the unconfirmed outbox rows per key, through a rotation', async () => {
  region = await start(TEST_REPLICATION_KEYS);
  await createOrg(region.url, 'before the rotation');
  let s = await status(region.url);
  expect(s.replication_keys).toEqual({ signing: 'test-k1', accepted: ['test-k1'] });
  expect(s.outbox.unsettled_by_key).toEqual({ 'test-k1': 1 });
  await region.stop();

  // Step 2 of the rotation in this region: the new key first, the old one still accepted.
  region = await start(`${NEW_KEY},${TEST_REPLICATION_KEYS}`);
  await createOrg(region.url, 'after the rotation');
  s = await status(region.url);
  expect(s.replication_keys).toEqual({ signing: 'test-k2', accepted: ['test-k2', 'test-k1'] });
  // The row signed with test-k1 is still unconfirmed: test-k1 may not be dropped yet.
  expect(s.outbox.unsettled_by_key).toEqual({ 'test-k1': 1, 'test-k2': 1 });

  // The operator port answers the same (its key figures come from the main thread's snapshot).
  const operator = region.operator?.url as string;
  expect(await eventually(async () => (await status(operator)).replication_keys?.signing === 'test-k2')).toBe(true);
  const o = await status(operator);
  expect(o.replication_keys).toEqual({ signing: 'test-k2', accepted: ['test-k2', 'test-k1'] });
  expect(o.outbox.unsettled_by_key).toEqual({ 'test-k1': 1, 'test-k2': 1 });

  // The count takes each row's key id from the row's own column (sig_kid, written with it), so a large backlog
  // is counted without reading its events; a row without one (written before the column) from its event.
  const db = region.db;
  const kids = await db.$queryRawUnsafe<{ sig_kid: string | null }[]>('SELECT sig_kid FROM replication_outbox ORDER BY id');
  expect(kids.map((k) => k.sig_kid)).toEqual(['test-k1', 'test-k2']);
  await db.$executeRawUnsafe("UPDATE replication_outbox SET sig_kid = NULL WHERE sig_kid = 'test-k1'");
  await db.$executeRawUnsafe("UPDATE replication_outbox SET sig_kid = 'test-column' WHERE sig_kid = 'test-k2'");
  expect((await status(region.url)).outbox.unsettled_by_key).toEqual({ 'test-k1': 1, 'test-column': 1 });
});
