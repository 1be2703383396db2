/**
 * A member's entry lost from one region's Redis (a failover to a replica that lacked it, a restart from an older
 * snapshot), in the default `ackSignatures: off`: the deployment heals instead of dropping the member. Two regions
 * share the default Redis; a third, added at runtime with a Redis of its own, is in neither's config. Its entry is
 * deleted from the shared Redis by hand while its processes are paused (they would copy it back within seconds):
 * the others, which knew it registered and know no removal of it, write it back, and keep delivering to it and
 * waiting for it, so a change committed meanwhile reaches it. Then the added region's own Redis goes back past a
 * `joining` mark of its entry (the older `active` entry and `~generation` set back by hand): its processes write
 * the mark back instead of copying the older entry over the others'.
 */
import Redis from 'ioredis';
import { RegionProcess } from '../../src/cluster/region-process';
import { dropDatabase } from '../../src/db/migrate';
import { replicationKeys } from '../../src/redis';
import { readMembers, updateMember } from '../../src/replication/member-record';
import { REDIS_URL } from '../support/env';
import { addedRegionProcess, adminHeaders, call, eventually, pendingOnlyIn, startCluster, type Cluster } from '../support/harness';
import { ownRedis, type OwnRedis } from '../support/redis-server';

const [A, B, D] = ['us-iowa', 'europe-belgium', 'south-brazil'] as const;
let cluster: Cluster;
let added: RegionProcess | null = null;
let addedDb = '';
let addedRedis: OwnRedis | null = null;
/** What the added region printed (warnings and above). */
const addedLines: string[] = [];
const shared = new Redis(REDIS_URL);

beforeAll(async () => {
  cluster = await startCluster('member-entry-lost', [A, B]);
  addedRedis = await ownRedis();
  await addedRedis.start();
  const region = await addedRegionProcess(cluster, D, { configName: 'regions.3.config.json', redisUrl: addedRedis.url, onLine: (line) => addedLines.push(line) });
  added = region.process;
  addedDb = region.databaseUrl;
  added.start();
  await added.waitReady(60_000);
}, 120_000);
afterAll(async () => {
  added?.resume();
  await Promise.all([added?.stop(0), cluster?.stop(0)]);
  if (addedDb) await dropDatabase(addedDb).catch(() => undefined);
  await addedRedis?.kill();
  shared.disconnect();
});

const keys = () => replicationKeys(cluster.deployment.file.redisKeyPrefix);
const status = async (url: string) => (await call(url, 'GET', '/admin/replication', { headers: adminHeaders })).body as { members: { region: string; state: string; registered: boolean }[]; needs_reseed: string[] };
const members = async (url: string) => (await status(url)).members.filter((m) => m.registered).map((m) => m.region);
const has = async (url: string, id: string) => (await call(url, 'GET', `/admin/organizations/${id}`, { headers: adminHeaders })).status === 200;

test("a region added at runtime whose entry the others' Redis lost is written back there, and still gets the changes committed meanwhile", async () => {
  const region = added as RegionProcess;
  for (const r of [A, B]) expect(await eventually(async () => (await members(cluster.url(r))).includes(D), 30_000, 200)).toBe(true);
  const entry = (await readMembers(shared, keys())).members.get(D);
  expect(entry).toBeDefined();
  // Paused, its processes do not copy their entry back: only the others can put it back.
  region.pause();
  let id = '';
  let changeId = '';
  try {
    expect(await shared.hdel(keys().members, D)).toBe(1);
    await shared.publish(keys().membersChannel, '{"members":0}');
    // Once us-iowa has read the record since: it has dropped the added region, or a process wrote its entry back.
    expect(await eventually(async () => !(await members(cluster.url(A))).includes(D) || (await shared.hexists(keys().members, D)) === 1, 15_000, 200)).toBe(true);
    // A change committed now is delivered to the added region and waits for its ack: it is not confirmed without it.
    const res = await call(cluster.url(A), 'POST', '/admin/organizations', { body: { name: 'while its entry was lost' }, headers: adminHeaders });
    expect(res.status).toBe(201);
    id = res.body.id;
    changeId = res.headers.get('x-change-id') ?? '';
    expect(await pendingOnlyIn(cluster.url(A), changeId, [D])).toBe(true);
    // Its entry is back in the shared Redis, as it was, and both regions count it.
    const back = (await readMembers(shared, keys())).members.get(D);
    expect({ state: back?.state, joinedAt: back?.joinedAt, redisUrl: back?.redisUrl }).toEqual({ state: entry?.state, joinedAt: entry?.joinedAt, redisUrl: entry?.redisUrl });
    for (const r of [A, B]) expect(await members(cluster.url(r))).toContain(D);
  } finally {
    region.resume();
  }
  expect(await eventually(() => has(region.url, id), 30_000, 200)).toBe(true);
  expect(await eventually(async () => (await call(cluster.url(A), 'GET', `/admin/replication/changes/${changeId}`, { headers: adminHeaders })).body.complete === true, 30_000, 200)).toBe(true);
}, 120_000);

test("a region whose own Redis went back to its entry from before a joining mark writes the mark back, and does not copy the older active entry over the others'", async () => {
  const region = added as RegionProcess;
  const own = new Redis(addedRedis?.url ?? '');
  try {
    const state = async (c: Redis) => (await readMembers(c, keys())).members.get(D)?.state;
    const before = await own.hmget(keys().members, D, '~generation');
    expect(await state(own)).toBe('active');
    // Marked joining (as the restore check or a relay marks it): its own Redis first, then the others'.
    for (const c of [own, shared]) expect(await updateMember(c, keys(), D, { state: 'joining' })).toBe(true);
    expect(await eventually(async () => (await status(region.url)).members.find((m) => m.region === D)?.state === 'joining', 15_000, 200)).toBe(true);
    // Its own Redis fails over to a replica that lacks the mark: the older entry, and the generation from before it.
    await own.hset(keys().members, D, before[0] ?? '', '~generation', before[1] ?? '0');
    expect(await eventually(async () => (await state(own)) === 'joining', 15_000, 200)).toBe(true);
    // The others still count it joining (it needs a re-seed; no tombstone is collected meanwhile).
    expect(await state(shared)).toBe('joining');
    expect((await status(cluster.url(A))).needs_reseed).toContain(D);
    expect(addedLines.some((l) => l.includes('written back'))).toBe(true);
  } finally {
    own.disconnect();
  }
}, 60_000);
