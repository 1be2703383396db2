/**
 * Signed membership entries between region processes, each region with a Redis of its own (so entries are
 * copied between them): us-iowa and europe-belgium run `ackSignatures: 'sign'`, asia-japan `off` (a region
 * not switched yet, its own copy of the config). The signing regions' entries are signed in every Redis, the
 * off region's are as before and still read; `all_regions` writes complete from both. An entry written
 * unsigned into a signing region's own Redis (as a version before signing, or a process still `off`, writes
 * it) is counted and written again, signed, by that region (trust on upgrade, docs/membership-signing.md
 * §3.3). `npm run members -- activate` and `npm run reseed` sign what they write, and need REPLICATION_KEYS
 * for it. A region added at runtime registers signed, and every region learns its Redis from that entry.
 * (The codec and the writers against one Redis: member-signatures.test.ts.)
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import { RegionProcess } from '../../src/cluster/region-process';
import { dropDatabase } from '../../src/db/migrate';
import { replicationKeys } from '../../src/redis';
import { checkMember } from '../../src/replication/ack-auth';
import { readMembers, type Member } from '../../src/replication/member-record';
import { TEST_REPLICATION_KEYS, testEventAuth, uniqueName } from '../support/env';
import { addedRegionProcess, adminHeaders, call, eventually, runScript, type Cluster } from '../support/harness';
import { clusterWithOwnRedis, ownRedis, type OwnRedis } from '../support/redis-server';
import { scrape } from '../observability/support';

const [A, B, C, D] = ['us-iowa', 'europe-belgium', 'asia-japan', 'south-brazil'] as const;
const REGIONS: string[] = [A, B, C];
const ALL = { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '20' };
const auth = testEventAuth();
const offConfig = path.join(os.tmpdir(), `${uniqueName('membersigning-off')}.json`);
let cluster: Cluster;
/** The region added at runtime (the last test), and its database. */
let added: RegionProcess | null = null;
let addedDb = '';
/** Each region's own Redis (the added region's too, once added). */
const servers = new Map<string, OwnRedis>();
const clients = new Map<string, Redis>();
let stopCluster: () => Promise<void>;

beforeAll(async () => {
  let own: Map<string, OwnRedis>;
  ({ cluster, redis: own, stop: stopCluster } = await clusterWithOwnRedis('membersigning', [...REGIONS], { ackSignatures: 'sign' }, {
    regionEnv: { [C]: { REGIONS_CONFIG: offConfig } },
    beforeStart: async (deployment) => fs.writeFileSync(offConfig, JSON.stringify({ ...deployment.file, ackSignatures: 'off' })),
  }));
  for (const [r, s] of own) {
    servers.set(r, s);
    clients.set(r, new Redis(s.url));
  }
}, 120_000);
afterAll(async () => {
  await Promise.all([added?.stop(0), stopCluster?.()]);
  if (addedDb) await dropDatabase(addedDb).catch(() => undefined);
  for (const c of clients.values()) c.disconnect();
  await servers.get(D)?.kill();
  fs.rmSync(offConfig, { force: true });
});

const keys = () => replicationKeys(cluster.deployment.file.redisKeyPrefix);
const redisOf = (region: string) => clients.get(region) as Redis;
/** `region`'s entry in the Redis of each region, read and checked with the regions' key. */
async function copiesOf(region: string): Promise<(Member | undefined)[]> {
  return Promise.all(REGIONS.map(async (r) => (await readMembers(redisOf(r), keys(), auth)).members.get(region)));
}
type Figures = { mode: string; member_entries: { unverified: Record<string, number> } };
const figures = async (region: string) => (await call(cluster.url(region), 'GET', '/admin/replication', { headers: adminHeaders })).body.ack_signatures as Figures;
const write = (region: string, name: string) => call(cluster.url(region), 'POST', '/admin/organizations', { body: { name }, headers: { ...adminHeaders, ...ALL } });

test("the signing regions' entries are signed in every region's Redis, bound to their field; the off region's is as before, and every region counts the others", async () => {
  const signedEverywhere = async (region: string) => (await copiesOf(region)).every((m) => m?.verified === 'signed' && (m.rev ?? 0) >= 1);
  expect(await eventually(async () => (await signedEverywhere(A)) && (await signedEverywhere(B)), 30_000, 200)).toBe(true);
  // A signed entry copied into another region's field does not verify there.
  const aEntry = (await redisOf(A).hget(keys().members, A)) ?? '';
  expect(checkMember(auth, B, aEntry).verdict).toBe('bad-signature');
  // The off region writes its entry as every version before signing did: no rev, no sig.
  expect(await eventually(async () => (await copiesOf(C)).every((m) => m !== undefined), 30_000, 200)).toBe(true);
  for (const m of await copiesOf(C)) expect(Object.keys(JSON.parse(m?.raw ?? '{}'))).toEqual(['state', 'joined_at', 'redis_url']);
  // It reads the signed entries of the others as members (it waits for them), and they count it.
  for (const r of [A, C]) expect((await write(r, `counted-from-${r}`)).status).toBe(201);
  const members = (await call(cluster.url(C), 'GET', '/admin/replication', { headers: adminHeaders })).body.members as { region: string; state: string }[];
  expect(members.map((m) => [m.region, m.state])).toEqual(REGIONS.map((r) => [r, 'active']));
}, 90_000);

test("a signing region counts the off region's unsigned entry, once, not once per read, in GET /admin/replication and /metrics; the off region counts nothing", async () => {
  expect(await eventually(async () => (await figures(A)).member_entries.unverified.unsigned >= 1, 15_000, 200)).toBe(true);
  const counted = await figures(A);
  // Every process re-reads the record every second: three more reads.
  await new Promise((r) => setTimeout(r, 3500));
  expect((await figures(A)).member_entries).toEqual(counted.member_entries);
  // The off region's entry, and nothing else: the signing regions wrote theirs signed from the start.
  expect(counted.member_entries.unverified).toEqual({ unsigned: 1, 'bad-signature': 0, 'unknown-key': 0, replayed: 0 });
  expect((await scrape(cluster.url(A))).value('replication_member_entries_unverified_total', { reason: 'unsigned' })).toBe(counted.member_entries.unverified.unsigned);
  expect((await figures(C)).member_entries.unverified).toEqual({ unsigned: 0, 'bad-signature': 0, 'unknown-key': 0, replayed: 0 });
}, 30_000);

test("an entry written unsigned into a signing region's own Redis, naming another Redis, is counted and written again by that region, signed, with its own Redis and the state it said; every copy follows", async () => {
  const mine = (await readMembers(redisOf(B), keys(), auth)).members.get(B);
  expect(mine?.verified).toBe('signed');
  const before = (await figures(B)).member_entries.unverified.unsigned;
  // As a version before signing writes it (a process still `off`, or the version before), with a foreign Redis.
  const planted = JSON.stringify({ state: 'active', joined_at: mine?.joinedAt, redis_url: 'redis://127.0.0.1:1/' });
  await redisOf(B).hset(keys().members, B, planted);
  await redisOf(B).publish(keys().membersChannel, '{"members":0}');
  const repaired = async () =>
    (await copiesOf(B)).every((m) => m?.verified === 'signed' && m.state === 'active' && m.redisUrl === mine?.redisUrl && (m.rev ?? 0) > (mine?.rev ?? 0) && m.joinedAt === mine?.joinedAt);
  expect(await eventually(repaired, 30_000, 200)).toBe(true);
  expect((await figures(B)).member_entries.unverified.unsigned).toBeGreaterThan(before);
}, 60_000);

test('`members activate` needs REPLICATION_KEYS where the regions sign (exit 2, nothing written), and signs what it writes', async () => {
  const secretsDir = path.join(path.dirname(cluster.deployment.configPath), '.cluster');
  expect(fs.existsSync(secretsDir)).toBe(false);
  const then = await Promise.all(REGIONS.map((r) => redisOf(r).hget(keys().members, B)));
  const noKeys = await runScript(cluster, 'members', ['activate', B], { REPLICATION_KEYS: '' });
  expect({ status: noKeys.status, stderr: noKeys.stderr }).toEqual({ status: 2, stderr: expect.stringContaining('REPLICATION_KEYS must be set') });
  expect(await Promise.all(REGIONS.map((r) => redisOf(r).hget(keys().members, B)))).toEqual(then);
  const revs = (await copiesOf(B)).map((m) => m?.rev ?? 0);
  // Paused: its periodic copy of its own entry could land between the command's writes and count as one more revision.
  cluster.proc(B).pause();
  const done = await runScript(cluster, 'members', ['activate', B], { REPLICATION_KEYS: TEST_REPLICATION_KEYS }).finally(() => cluster.proc(B).resume());
  expect({ status: done.status, stderr: done.stderr }).toEqual({ status: 0, stderr: '' });
  const after = await copiesOf(B);
  after.forEach((m, i) => expect(m).toMatchObject({ state: 'active', verified: 'signed', rev: (revs[i] ?? 0) + 1 }));
}, 60_000);

test('the re-seed needs REPLICATION_KEYS where the regions sign (exit 2, nothing marked), and marks and activates its target signed', async () => {
  const reseed = (replicationKeys: string) => runScript(cluster, 'reseed', ['--from', A, '--to', B, '--wait', '30'], { REPLICATION_KEYS: replicationKeys });
  const then = await Promise.all(REGIONS.map((r) => redisOf(r).hget(keys().members, B)));
  const noKeys = await reseed('');
  expect({ status: noKeys.status, stderr: noKeys.stderr }).toEqual({ status: 2, stderr: expect.stringContaining('REPLICATION_KEYS must be set') });
  expect(await Promise.all(REGIONS.map((r) => redisOf(r).hget(keys().members, B)))).toEqual(then);
  const revs = (await copiesOf(B)).map((m) => m?.rev ?? 0);
  // Paused, as reseed.test.ts does it: its collector would otherwise raise its cut-off during the copy.
  cluster.proc(B).pause();
  const run = await reseed(TEST_REPLICATION_KEYS).finally(() => cluster.proc(B).resume());
  expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 0, stderr: '' });
  // Marked joining (one revision), then active (one more), signed in every Redis.
  (await copiesOf(B)).forEach((m, i) => expect(m).toMatchObject({ state: 'active', verified: 'signed', reseed: null, rev: (revs[i] ?? 0) + 2 }));
}, 120_000);

test("the re-seed does not carry a planted rev: an unsigned copy of its target's entry with a huge rev is rewritten from revision 1 (its state taken, as sign takes unsigned entries), never above the plant", async () => {
  const revs = (await copiesOf(B)).map((m) => m?.rev ?? 0);
  // Paused first: its processes would copy their own entry over the plant. As anyone who writes to us-iowa's Redis plants it.
  cluster.proc(B).pause();
  try {
    const { sig: _sig, rev: _rev, ...fields } = JSON.parse((await redisOf(A).hget(keys().members, B)) ?? '{}') as Record<string, unknown>;
    await redisOf(A).hset(keys().members, B, JSON.stringify({ ...fields, rev: 2 ** 53 - 2 }));
    const run = await runScript(cluster, 'reseed', ['--from', A, '--to', B, '--wait', '30'], { REPLICATION_KEYS: TEST_REPLICATION_KEYS });
    expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 0, stderr: '' });
    // Marked joining and activated (two revisions) in every Redis; in us-iowa's above no signed rev (the plant's was not taken).
    const after = await copiesOf(B);
    after.forEach((m) => expect(m).toMatchObject({ state: 'active', verified: 'signed', reseed: null }));
    expect(after.map((m) => m?.rev)).toEqual([2, ...revs.slice(1).map((r) => r + 2)]);
  } finally {
    cluster.proc(B).resume();
  }
}, 120_000);

test('a region added at runtime registers joining, signed, in every Redis, and the others learn its Redis from that entry', async () => {
  const server = await ownRedis();
  await server.start();
  servers.set(D, server);
  clients.set(D, new Redis(server.url));
  const region = await addedRegionProcess(cluster, D, { configName: 'regions.4.config.json', redisUrl: server.url });
  added = region.process;
  addedDb = region.databaseUrl;
  added.start();
  await added.waitReady(60_000);
  REGIONS.push(D);
  const registered = async () =>
    (await copiesOf(D)).every((m) => m?.verified === 'signed' && m.state === 'joining' && m.rev === 1 && m.redisUrl?.startsWith(`redis://127.0.0.1:${server.port}`));
  expect(await eventually(registered, 30_000, 200)).toBe(true);
  // Signed when it registered, not only once its processes wrote it again: of what it read, only the off region's entry is unsigned.
  const addedFigures = (await call(added.url, 'GET', '/admin/replication', { headers: adminHeaders })).body.ack_signatures as Figures;
  expect(addedFigures.member_entries.unverified).toEqual({ unsigned: 1, 'bad-signature': 0, 'unknown-key': 0, replayed: 0 });
  // Its inbox, in its own Redis, is where the others deliver: they took its address from its signed entry.
  const res = await call(cluster.url(A), 'POST', '/admin/organizations', { body: { name: 'to the added region' }, headers: adminHeaders });
  expect(res.status).toBe(201);
  expect(await eventually(async () => (await redisOf(D).xlen(keys().inbox(D))) > 0, 30_000, 200)).toBe(true);
}, 120_000);

test('a region that finds at start a database other than the one it ran on marks itself joining, signed, in every Redis', async () => {
  const before = await copiesOf(A);
  const counted = (await figures(B)).member_entries;
  // As a database dropped and created again looks to the restore check (restore-check.ts): another identity on record.
  await redisOf(A).set(keys().databaseIdentity(A), 'a-database-it-never-ran-on');
  const p = cluster.proc(A);
  await p.stop(10_000);
  p.start();
  await p.waitReady(60_000);
  const marked = async () => (await copiesOf(A)).every((m, i) => m?.verified === 'signed' && m.state === 'joining' && (m.rev ?? 0) > (before[i]?.rev ?? 0));
  expect(await eventually(marked, 30_000, 200)).toBe(true);
  // Signed when written, not only once its own processes wrote it again: the others read nothing unverified.
  expect((await figures(B)).member_entries).toEqual(counted);
}, 120_000);
