/**
 * `ackSignatures: require` and the membership record (docs/membership-signing.md §3): a member's `redis_url` is
 * taken only from an entry whose signature holds. Two regions share the default Redis; entries planted there,
 * unsigned or signed under a forger's key, name a listener of the test's as their Redis: the regions still
 * deliver to those members (they are members), at the default Redis, and never connect to the listener (it
 * would get the default Redis's credentials and every change). A region added at runtime with a Redis of its
 * own is reached at the address its signed entry names, and kept there while a planted copy names another.
 * Such members are shown `verified: false` in GET /admin/replication and hold the tombstone horizon as
 * `unverified` whatever state they say; a genuine region whose entry was replaced unsigned is no re-seed peer.
 * A region's genuine older entry written back (a replay) is held likewise by the running processes, which keep
 * the newer one's state, until its own processes write the newer one again (step 4).
 * Writers do not sign what does not verify (`members activate` refuses it), a region registers over an entry
 * planted under its name before it first started, and its processes write their own entry again over an
 * unsigned copy in the state they last read verified (joining, for the region added at runtime).
 */
import net from 'node:net';
import Redis from 'ioredis';
import { RegionProcess } from '../../src/cluster/region-process';
import { dropDatabase } from '../../src/db/migrate';
import { replicationKeys } from '../../src/redis';
import { AckSigning, signMember } from '../../src/replication/ack-auth';
import { readMembers, updateMember } from '../../src/replication/member-record';
import { REDIS_URL, TEST_REPLICATION_KEYS, testEventAuth, forgerOf } from '../support/env';
import { addedRegionProcess, adminHeaders, call, eventually, runScript, startCluster, type Cluster } from '../support/harness';
import { ownRedis, type OwnRedis } from '../support/redis-server';

const [A, B, D] = ['us-iowa', 'europe-belgium', 'south-brazil'] as const;
const [UNSIGNED, FORGED] = ['planted-unsigned', 'planted-forged'] as const;
const auth = testEventAuth();
const forger = forgerOf(auth);
let cluster: Cluster;
let added: RegionProcess | null = null;
let addedDb = '';
let addedRedis: OwnRedis | null = null;
/** A client of the added region's own Redis. */
let own: Redis | null = null;
const shared = new Redis(REDIS_URL);
/** Connections the planted address received. */
let connections = 0;
const listener = net.createServer((socket) => {
  connections++;
  socket.on('error', () => undefined);
  socket.destroy();
});
let listenerUrl = '';

beforeAll(async () => {
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  listenerUrl = `redis://127.0.0.1:${(listener.address() as net.AddressInfo).port}/`;
  cluster = await startCluster('member-require', [A, B], { extra: { ackSignatures: 'require', tombstoneCollection: { intervalMs: 500 } } });
}, 120_000);
afterAll(async () => {
  await Promise.all([added?.stop(0), cluster?.stop(0)]);
  if (addedDb) await dropDatabase(addedDb).catch(() => undefined);
  own?.disconnect();
  await addedRedis?.kill();
  shared.disconnect();
  await new Promise((resolve) => listener.close(resolve));
});

const keys = () => replicationKeys(cluster.deployment.file.redisKeyPrefix);
const write = (region: string, name: string) => call(cluster.url(region), 'POST', '/admin/organizations', { body: { name }, headers: adminHeaders });
type Status = {
  members: { region: string; state: string; verified: boolean | null; verification: string | null }[];
  needs_reseed: string[];
  ack_signatures: { member_entries: { unverified: { unsigned: number; replayed: number } } };
  tombstones: { held_by: { region: string; reason: string }[] };
};
const status = async (region: string) => (await call(cluster.url(region), 'GET', '/admin/replication', { headers: adminHeaders })).body as Status;
const unsigned = async (region: string) => (await status(region)).ack_signatures.member_entries.unverified.unsigned;
/** How `region` shows `member`: whether its entry verifies, and why it holds the tombstone horizon (null: it does not). */
const shown = async (region: string, member: string) => {
  const s = await status(region);
  return { verified: s.members.find((m) => m.region === member)?.verified, held: s.tombstones.held_by.find((h) => h.region === member)?.reason ?? null };
};
/** Each member's `verification` as `region` shows it. */
const verifications = async (region: string) => Object.fromEntries((await status(region)).members.map((m) => [m.region, m.verification]));
/** An entry naming the listener as its Redis, as anyone who can write to a Redis can plant it. */
const planted = () => JSON.stringify({ state: 'active', joined_at: new Date().toISOString(), redis_url: listenerUrl });

test("in require, a genuine region's entry replaced by an unsigned active copy is held as unverified, never active, and is no re-seed peer", async () => {
  const genuine = (await shared.hget(keys().members, B)) ?? '';
  // Paused, so its processes do not write their entry again meanwhile.
  cluster.proc(B).pause();
  try {
    const { sig: _sig, rev: _rev, ...fields } = JSON.parse(genuine) as Record<string, unknown>;
    await shared.hset(keys().members, B, JSON.stringify({ ...fields, state: 'active' }));
    await shared.publish(keys().membersChannel, '{"members":0}');
    expect(await eventually(async () => JSON.stringify(await shown(A, B)) === JSON.stringify({ verified: false, held: 'unverified' }), 15_000, 200)).toBe(true);
    const run = await runScript(cluster, 'reseed', ['--from', B, '--to', A, '--wait', '5'], { REPLICATION_KEYS: TEST_REPLICATION_KEYS });
    expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 1, stderr: expect.stringContaining(`${B}'s membership entry in ${A}'s Redis does not verify (unsigned)`) });
  } finally {
    await shared.hset(keys().members, B, genuine);
    await shared.publish(keys().membersChannel, '{"members":0}');
    cluster.proc(B).resume();
  }
  expect(await eventually(async () => (await shown(A, B)).verified === true, 15_000, 200)).toBe(true);
}, 90_000);

test("in require, an unsigned copy of a running active region's own entry is written again by its processes, signed, active: the state they last read verified", async () => {
  const genuine = (await shared.hget(keys().members, B)) ?? '';
  expect(JSON.parse(genuine)).toMatchObject({ state: 'active', sig: expect.any(String) });
  const { sig: _sig, rev: _rev, ...fields } = JSON.parse(genuine) as Record<string, unknown>;
  // Joining in the copy, so that a repair taking the copy's state, or always joining, would not pass.
  await shared.hset(keys().members, B, JSON.stringify({ ...fields, state: 'joining' }));
  await shared.publish(keys().membersChannel, '{"members":0}');
  const repaired = async () => {
    const m = JSON.parse((await shared.hget(keys().members, B)) ?? '{}') as { state?: string; sig?: string };
    return m.sig !== undefined && m.state === 'active';
  };
  expect(await eventually(repaired, 20_000, 200)).toBe(true);
  expect(await eventually(async () => JSON.stringify(await shown(A, B)) === JSON.stringify({ verified: true, held: null }), 15_000, 200)).toBe(true);
  // The state it undid is a warning in its log (an older tool's write is undone so).
  expect(cluster.logs(B).some((l) => l.includes('written again, signed, active (it said joining'))).toBe(true);
}, 60_000);

test("in require, a region's genuine older entry written back after it was marked joining is held as replayed by the running processes, written again by the region's own, and a newer one is taken", async () => {
  const entry = async () => (await readMembers(shared, keys(), auth)).members.get(B);
  const saved = await entry();
  expect(saved).toMatchObject({ verified: 'signed', state: 'active' });
  /** How `region` shows B: state, verdict, hold, whether it lists it to re-seed. */
  const seen = async (region: string) => {
    const s = await status(region);
    const m = s.members.find((x) => x.region === B);
    return { state: m?.state, verified: m?.verified, verification: m?.verification, held: s.tombstones.held_by.find((h) => h.region === B)?.reason ?? null, reseed: s.needs_reseed.includes(B) };
  };
  const shows = (region: string, expected: Partial<Awaited<ReturnType<typeof seen>>>) =>
    eventually(async () => {
      const got = await seen(region);
      return Object.entries(expected).every(([k, v]) => got[k as keyof typeof got] === v);
    }, 15_000, 200);
  // Marked joining, signed, as a relay marks a region behind (markJoining: updateMember with the key).
  expect(await updateMember(shared, keys(), B, { state: 'joining' }, { signing: new AckSigning(auth, 'require') })).toBe(true);
  const marked = await entry();
  for (const region of [A, B]) expect(await shows(region, { state: 'joining', verified: true, verification: 'signed' })).toBe(true);
  const before = (await status(A)).ack_signatures.member_entries.unverified.replayed;
  // Paused, so its processes do not write their entry again meanwhile; the saved active entry still verifies.
  cluster.proc(B).pause();
  try {
    await shared.hset(keys().members, B, saved?.raw ?? '');
    await shared.publish(keys().membersChannel, '{"members":0}');
    expect(await shows(A, { state: 'joining', verified: false, verification: 'replayed', held: 'unverified', reseed: true })).toBe(true);
    expect((await status(A)).ack_signatures.member_entries.unverified.replayed).toBe(before + 1);
  } finally {
    cluster.proc(B).resume();
  }
  // Its own processes write it again above what they took: joining, signed; every region takes that.
  expect(await eventually(async () => {
    const m = await entry();
    return m?.verified === 'signed' && m.state === 'joining' && (m.rev ?? 0) > (marked?.rev ?? 0);
  }, 30_000, 200)).toBe(true);
  for (const region of [A, B]) expect(await shows(region, { state: 'joining', verified: true, verification: 'signed' })).toBe(true);
  // A newer genuine entry (the operator's activation) is taken.
  const run = await runScript(cluster, 'members', ['activate', B], { REPLICATION_KEYS: TEST_REPLICATION_KEYS });
  expect(run.status).toBe(0);
  for (const region of [A, B]) expect(await shows(region, { state: 'active', verified: true, reseed: false })).toBe(true);
}, 120_000);

test("in require, members planted unsigned or badly signed are delivered to at the default Redis, never at the address they name", async () => {
  await shared.hset(keys().members, UNSIGNED, planted());
  await shared.hset(keys().members, FORGED, signMember(forger, FORGED, planted()));
  await shared.publish(keys().membersChannel, '{"members":0}');
  const delivered = async () => {
    expect((await write(A, `after-plant-${Date.now()}`)).status).toBe(201);
    return (await shared.xlen(keys().inbox(UNSIGNED))) > 0 && (await shared.xlen(keys().inbox(FORGED))) > 0;
  };
  expect(await eventually(delivered, 30_000, 500)).toBe(true);
  expect(connections).toBe(0);
  // The re-seed refuses members its config does not name, and says which do not verify (sorted by name: the order a Redis hash returns its fields in is not fixed).
  const run = await runScript(cluster, 'reseed', ['--from', A, '--to', B, '--wait', '5'], { REPLICATION_KEYS: TEST_REPLICATION_KEYS });
  expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 1, stderr: expect.stringContaining(`the entry of ${FORGED}, ${UNSIGNED} does not verify (planted?)`) });
}, 60_000);

test('in require, planted members are shown unverified and hold the tombstone horizon as unverified, whatever state they say; the genuine ones verify', async () => {
  for (const region of [A, B]) {
    for (const member of [UNSIGNED, FORGED]) expect(await eventually(async () => JSON.stringify(await shown(region, member)) === JSON.stringify({ verified: false, held: 'unverified' }), 15_000, 200)).toBe(true);
    expect((await status(region)).members.filter((m) => m.region === A || m.region === B).map((m) => m.verified)).toEqual([true, true]);
    // Why each does not verify, which `verified: false` alone does not say.
    expect(await verifications(region)).toEqual(expect.objectContaining({ [A]: 'signed', [B]: 'signed', [UNSIGNED]: 'unsigned', [FORGED]: 'bad-signature' }));
  }
}, 60_000);

test("in require, a member held by its name only is not listed to re-seed, whatever state its entry says: it shows unverified among the members instead", async () => {
  const name = 'planted-joining';
  await shared.hset(keys().members, name, JSON.stringify({ state: 'joining', joined_at: new Date().toISOString() }));
  await shared.publish(keys().membersChannel, '{"members":0}');
  try {
    for (const region of [A, B]) {
      expect(await eventually(async () => JSON.stringify(await shown(region, name)) === JSON.stringify({ verified: false, held: 'unverified' }), 15_000, 200)).toBe(true);
      const s = await status(region);
      expect(s.members.find((m) => m.region === name)).toEqual(expect.objectContaining({ state: 'joining', verified: false }));
      expect(s.needs_reseed).not.toContain(name);
    }
  } finally {
    await shared.hdel(keys().members, name);
    await shared.publish(keys().membersChannel, '{"members":0}');
  }
}, 60_000);

test('in require, a region added at runtime is reached at the Redis its signed entry names, and kept there while a planted copy names another', async () => {
  addedRedis = await ownRedis();
  await addedRedis.start();
  own = new Redis(addedRedis.url);
  const ownClient = own;
  const registered = async () =>
    (await Promise.all([ownClient, shared].map((c) => readMembers(c, keys(), auth)))).every(({ members }) => {
      const m = members.get(D);
      return m?.verified === 'signed' && m.state === 'joining' && m.redisUrl?.startsWith(`redis://127.0.0.1:${addedRedis?.port}`);
    });
  // Planted under its name before it first starts, in its own Redis and the others': it registers over them.
  await ownClient.hset(keys().members, D, planted());
  await shared.hset(keys().members, D, planted());
  try {
    const region = await addedRegionProcess(cluster, D, { configName: 'regions.3.config.json', redisUrl: addedRedis.url });
    added = region.process;
    addedDb = region.databaseUrl;
    added.start();
    await added.waitReady(60_000);
    expect(await eventually(registered, 30_000, 200)).toBe(true);
    const reached = async (region: string) => {
      const before = await ownClient.xlen(keys().inbox(D));
      expect((await write(region, `to-the-added-${region}-${Date.now()}`)).status).toBe(201);
      return eventually(async () => (await ownClient.xlen(keys().inbox(D))) > before, 5_000, 200);
    };
    expect(await eventually(() => reached(A), 30_000, 200)).toBe(true);
    expect(await eventually(() => reached(B), 30_000, 200)).toBe(true);
    // Paused, so its processes do not copy their own entry back over the plant meanwhile.
    added.pause();
    const before = await unsigned(A);
    await shared.hset(keys().members, D, planted());
    await shared.publish(keys().membersChannel, '{"members":0}');
    // Once us-iowa has read the plant (it counts it), its deliveries still reach the added region's own Redis.
    expect(await eventually(async () => (await unsigned(A)) > before, 15_000, 200)).toBe(true);
    expect(await reached(A)).toBe(true);
    expect(await shared.hget(keys().members, D)).toContain(listenerUrl);
    expect(connections).toBe(0);
    // `members activate` does not sign what does not verify: a region its config does not name, with no copy
    // that verifies where it looks, is refused (nothing written where the plant is).
    const run = await runScript(cluster, 'members', ['activate', D], { REPLICATION_KEYS: TEST_REPLICATION_KEYS });
    expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 2, stderr: expect.stringContaining(`${D}'s membership entry does not verify in any Redis that holds it (${A}, ${B}), and `) });
    expect(await shared.hget(keys().members, D)).toContain(listenerUrl);
  } finally {
    added?.resume();
  }
  // Its processes copy their own entry over the plant again.
  expect(await eventually(registered, 30_000, 200)).toBe(true);
}, 120_000);

test("in require, an unsigned active copy of the joining added region's entry in its own Redis is written again by its processes, signed, joining, with its own Redis", async () => {
  const ownClient = own as Redis;
  const genuine = (await readMembers(ownClient, keys(), auth)).members.get(D);
  expect(genuine).toMatchObject({ verified: 'signed', state: 'joining' });
  await ownClient.hset(keys().members, D, planted());
  await ownClient.publish(keys().membersChannel, '{"members":0}');
  const repaired = async () => {
    const m = (await readMembers(ownClient, keys(), auth)).members.get(D);
    return m?.verified === 'signed' && m.state === 'joining' && m.redisUrl === genuine?.redisUrl && (m.rev ?? 0) > (genuine?.rev ?? 0);
  };
  expect(await eventually(repaired, 30_000, 200)).toBe(true);
  expect(connections).toBe(0);
}, 60_000);
