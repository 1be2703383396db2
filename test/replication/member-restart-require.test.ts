/**
 * `ackSignatures: require`, a Redis per region: a region restarted while its own Redis holds an unsigned copy of
 * its own entry (planted, or written by an older version's tool) registers with the state of its signed entry in
 * the peers' Redis (active), not joining: before, one unsigned copy was enough to make a restart need a re-seed
 * (and hold every region's tombstone collection meanwhile). With no verifying copy anywhere it still registers
 * joining (member-require.test.ts covers a plant before the first registration).
 */
import Redis from 'ioredis';
import { replicationKeys } from '../../src/redis';
import { readMembers } from '../../src/replication/member-record';
import { testEventAuth } from '../support/env';
import { adminHeaders, call, eventually, type Cluster } from '../support/harness';
import { clusterWithOwnRedis, type OwnRedis } from '../support/redis-server';

const [A, B] = ['us-iowa', 'europe-belgium'];
const auth = testEventAuth();
let cluster: Cluster;
let stop: () => Promise<void>;
const clients = new Map<string, Redis>();

beforeAll(async () => {
  let servers: Map<string, OwnRedis>;
  ({ cluster, redis: servers, stop } = await clusterWithOwnRedis('member-restart-require', [A, B], { ackSignatures: 'require' }));
  for (const [r, s] of servers) clients.set(r, new Redis(s.url));
}, 120_000);
afterAll(async () => {
  for (const c of clients.values()) c.disconnect();
  await stop?.();
});

const keys = () => replicationKeys(cluster.deployment.file.redisKeyPrefix);
const redisOf = (region: string) => clients.get(region) as Redis;
const entryIn = async (redis: string, region: string) => (await readMembers(redisOf(redis), keys(), auth)).members.get(region);
const shownBy = async (region: string, member: string) =>
  ((await call(cluster.url(region), 'GET', '/admin/replication', { headers: adminHeaders })).body.members as { region: string; state: string; verified: boolean | null }[]).find((m) => m.region === member);

test("a region restarted over an unsigned copy of its own entry registers active from its signed entry in a peer's Redis, not joining", async () => {
  expect(await eventually(async () => (await entryIn(A, B))?.verified === 'signed' && (await entryIn(B, B))?.verified === 'signed', 30_000, 200)).toBe(true);
  expect(await entryIn(A, B)).toMatchObject({ state: 'active' });
  await cluster.proc(B).stop();
  // Its own Redis's copy replaced, unsigned, while it is down (a peer's Redis still holds it signed, active).
  const { sig: _sig, rev: _rev, ...fields } = JSON.parse((await redisOf(B).hget(keys().members, B)) ?? '{}') as Record<string, unknown>;
  await redisOf(B).hset(keys().members, B, JSON.stringify(fields));
  await cluster.proc(B).start();
  await cluster.proc(B).waitReady(60_000);
  expect(await eventually(async () => (await entryIn(B, B))?.verified === 'signed', 30_000, 200)).toBe(true);
  expect(await entryIn(B, B)).toMatchObject({ state: 'active' });
  expect(await eventually(async () => (await shownBy(A, B))?.verified === true, 15_000, 200)).toBe(true);
  expect(await shownBy(A, B)).toMatchObject({ state: 'active', verified: true });
  expect(cluster.logs(B).some((l) => l.includes('written over, active, as a peer'))).toBe(true);
}, 120_000);
