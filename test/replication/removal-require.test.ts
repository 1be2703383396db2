/**
 * Removal records between region processes under `ackSignatures: 'require'`, each region with a Redis of its
 * own. asia-japan runs the deployment's config; us-iowa and europe-belgium run one that does not name it (a
 * region added at runtime, as they see it: only the record makes it a member, and only a removal makes its
 * credentials adopted). A member is forgotten only on a verified removal later than its registration: its entry
 * deleted alone, with a removal record planted (unsigned) or replayed (signed, but from before it registered),
 * leaves it a member (waited for, its credentials not adopted) and its entry is written back. `npm run members
 * -- remove` signs the record it writes and works end to end; a region removed, added again and removed again
 * is removed at the later time, and forgotten again. (The codec and the writers against one Redis:
 * removal-signatures.test.ts.)
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import { replicationKeys } from '../../src/redis';
import { checkDeparture, departureTime, signDeparture } from '../../src/replication/removal-auth';
import { TEST_REPLICATION_KEYS, testEventAuth, uniqueName } from '../support/env';
import { adminHeaders, call, eventually, runScript, type Cluster } from '../support/harness';
import { clusterWithOwnRedis } from '../support/redis-server';

const [A, B, C] = ['us-iowa', 'europe-belgium', 'asia-japan'] as const;
const auth = testEventAuth();
const withoutC = path.join(os.tmpdir(), `${uniqueName('removal-require-ab')}.json`);
let cluster: Cluster;
const clients = new Map<string, Redis>();
let stopCluster: () => Promise<void>;

beforeAll(async () => {
  let own;
  ({ cluster, redis: own, stop: stopCluster } = await clusterWithOwnRedis('removal-require', [A, B, C], { ackSignatures: 'require' }, {
    regionEnv: { [A]: { REGIONS_CONFIG: withoutC }, [B]: { REGIONS_CONFIG: withoutC } },
    beforeStart: async (deployment) => {
      const file = deployment.file;
      fs.writeFileSync(withoutC, JSON.stringify({ ...file, regions: file.regions.filter((r) => r.id !== C) }));
    },
  }));
  for (const [r, s] of own) clients.set(r, new Redis(s.url));
}, 120_000);
afterAll(async () => {
  await stopCluster?.();
  for (const c of clients.values()) c.disconnect();
  fs.rmSync(withoutC, { force: true });
});

const keys = () => replicationKeys(cluster.deployment.file.redisKeyPrefix);
const redisOf = (region: string) => clients.get(region) as Redis;
type Status = { members: { region: string; registered: boolean; verified: boolean | null; joined_at: string | null }[]; ack_signatures: { removal_records: { unverified: Record<string, number> } } };
const status = async (region: string) => (await call(cluster.url(region), 'GET', '/admin/replication', { headers: adminHeaders })).body as Status;
const adoption = async (region: string) => (await call(cluster.url(region), 'GET', '/admin/metadata-refresh', { headers: adminHeaders })).body.adoption as { departed: string[] };
/** Whether `region` counts C as a member it registered and verified, and does not take it for gone. */
const countsC = async (region: string) => (await status(region)).members.some((m) => m.region === C && m.registered && m.verified === true) && !(await adoption(region)).departed.includes(C);
/** Whether `region` no longer counts C, and takes it for gone (its credentials are adopted once settled). */
const forgotC = async (region: string) => !(await status(region)).members.some((m) => m.region === C) && (await adoption(region)).departed.includes(C);
const removeC = () => runScript(cluster, 'members', ['remove', C], { REPLICATION_KEYS: TEST_REPLICATION_KEYS });

test("a member's entry deleted, with a removal planted unsigned or replayed from before it registered, leaves it a member: waited for, not adopted, its entry written back", async () => {
  expect(await eventually(async () => (await countsC(A)) && (await countsC(B)), 60_000, 250)).toBe(true);
  const entry = await redisOf(A).hget(keys().members, C);
  const joinedAt = (await status(A)).members.find((m) => m.region === C)?.joined_at as string;
  // Paused: its own processes would copy its entry back within 5 s.
  cluster.proc(C).pause();
  try {
    const planted = new Date().toISOString();
    const before = new Date(Date.parse(joinedAt) - 60_000).toISOString();
    // us-iowa: a removal written by anything that can write to its Redis (unsigned); europe-belgium: a genuine
    // signed removal of C from before it registered (an earlier incarnation's), written back.
    for (const [r, removal] of [[A, planted], [B, signDeparture(auth, C, before)]] as const) {
      await redisOf(r).hset(keys().departed, C, removal);
      await redisOf(r).hdel(keys().members, C);
      await redisOf(r).publish(keys().membersChannel, '{"members":0}');
    }
    expect(await eventually(async () => (await status(A)).ack_signatures.removal_records.unverified.unsigned >= 1, 15_000, 200)).toBe(true);
    // Several refreshes (one a second): each region still counts it, and puts its entry back as it was.
    await new Promise((r) => setTimeout(r, 3000));
    for (const r of [A, B]) {
      expect(await countsC(r)).toBe(true);
      // Written back by that region's processes at a refresh; waited for (a loaded host can stall a process
      // past the 3 s above), and it must come back as it was.
      expect(await eventually(async () => (await redisOf(r).hget(keys().members, C)) !== null, 10_000, 200)).toBe(true);
      expect(await redisOf(r).hget(keys().members, C)).toBe(entry);
    }
    // Still waited for: an all_regions write does not complete without it.
    const write = await call(cluster.url(A), 'POST', '/admin/organizations', {
      body: { name: 'waits for asia-japan' },
      headers: { ...adminHeaders, 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '2' },
    });
    expect(write.status).toBe(408);
  } finally {
    cluster.proc(C).resume();
  }
}, 120_000);

test('`members remove` signs the removal and works end to end under require; a region removed, added again and removed again is removed at the later time', async () => {
  // Once C has read back its entry, and the planted removal is written over by the signed one.
  const p = cluster.proc(C);
  await p.stop(10_000);
  const first = await removeC();
  expect({ status: first.status, out: JSON.parse(first.stdout) as unknown }).toEqual({ status: 0, out: expect.objectContaining({ region: C, removed: true }) });
  expect(await eventually(async () => (await forgotC(A)) && (await forgotC(B)), 30_000, 250)).toBe(true);
  const removedAt = async (r: string) => {
    const stored = (await redisOf(r).hget(keys().departed, C)) ?? '';
    expect(checkDeparture(auth, C, stored).verdict).toBe('signed');
    return departureTime(stored);
  };
  const firstAt = await removedAt(A);
  expect(await removedAt(B)).toBe(firstAt);

  // Added again under the same name: a member again, not taken for gone.
  p.start();
  await p.waitReady(60_000);
  expect(await eventually(async () => (await countsC(A)) && (await countsC(B)), 60_000, 250)).toBe(true);
  await p.stop(10_000);
  const second = await removeC();
  expect(second.status).toBe(0);
  expect(await eventually(async () => (await forgotC(A)) && (await forgotC(B)), 30_000, 250)).toBe(true);
  for (const r of [A, B]) expect((await removedAt(r)) > firstAt).toBe(true);
}, 240_000);
