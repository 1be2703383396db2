/**
 * A rotation of REPLICATION_KEYS (docs/security.md) under `ackSignatures: require` leaves every member active
 * and verified. Membership entries are written when they change, not per change event, so each region signs its
 * own entry again with the new key once it signs with it (the rotation's second step): otherwise dropping the old
 * key made every entry unverifiable, and each region, restarted, registered itself joining (tombstone collection
 * held everywhere, no re-seed peer, no adopter). Two regions, run in this process, through the three steps.
 */
import Redis from 'ioredis';
import { replicationKeys } from '../../src/redis';
import { startRegion, type RunningRegion } from '../../src/region';
import { parseReplicationKeys } from '../../src/replication-keys';
import { createDeployment, REDIS_URL, TEST_REPLICATION_KEYS, type TestDeployment } from '../support/env';
import { adminHeaders, call, eventually } from '../support/harness';

const REGIONS = ['us-iowa', 'europe-belgium'];
const NEW_KEY = 'test-k2:a-second-replication-secret-0123456789';

let dep: TestDeployment;
let redis: Redis;
let running: RunningRegion[] = [];
beforeAll(async () => {
  dep = await createDeployment('member-key-rotation', REGIONS, { ackSignatures: 'require' });
  redis = new Redis(REDIS_URL);
});
afterAll(async () => {
  await stopAll();
  redis?.disconnect();
  await dep?.cleanup();
});

async function stopAll(): Promise<void> {
  await Promise.all(running.map((r) => r.stop()));
  running = [];
}

/** Every region restarted with `keys` (one after the other, as an operator rolls a config). */
async function rollTo(keys: string): Promise<void> {
  await stopAll();
  for (const region of REGIONS) {
    running.push(await startRegion({ ...dep.configFor(region), replicationKeys: parseReplicationKeys(keys) }, { port: 0, operatorPort: null, drainTimeoutMs: 5000 }));
  }
}

/** The key id each region's entry carries in the (one) Redis. */
async function signedWith(): Promise<Record<string, string | null>> {
  const stored = await redis.hgetall(replicationKeys(dep.file.redisKeyPrefix).members);
  return Object.fromEntries(REGIONS.map((r) => [r, /,"sig":"([^:"]+):/.exec(stored[r] ?? '')?.[1] ?? null]));
}

const members = async (r: RunningRegion) => (await call(r.url, 'GET', '/admin/replication', { headers: adminHeaders })).body.members;

test('through k1, then k2 first with k1 accepted, then k2 alone, every member stays active and verified', async () => {
  await rollTo(TEST_REPLICATION_KEYS);
  expect(await eventually(async () => Object.values(await signedWith()).every((k) => k === 'test-k1'), 15_000, 200)).toBe(true);

  // Step 2: the new key first. Each region signs its own entry again with it (within a propagation round).
  await rollTo(`${NEW_KEY},${TEST_REPLICATION_KEYS}`);
  expect(await eventually(async () => Object.values(await signedWith()).every((k) => k === 'test-k2'), 20_000, 200)).toBe(true);

  // Step 3: the old key dropped. Nothing was left signed with it: every member active and verified everywhere.
  await rollTo(NEW_KEY);
  for (const r of running) {
    const ok = await eventually(async () => {
      const m = await members(r);
      return m.length === REGIONS.length && m.every((x: { state: string; verified: boolean | null }) => x.state === 'active' && x.verified === true);
    }, 15_000, 200);
    expect(ok).toBe(true);
  }
  // And it stays so past a propagation round (no region wrote itself joining).
  await new Promise((resolve) => setTimeout(resolve, 6000));
  for (const r of running) expect((await members(r)).map((x: { region: string; state: string }) => `${x.region}:${x.state}`).sort()).toEqual(REGIONS.map((x) => `${x}:active`).sort());
}, 120_000);
