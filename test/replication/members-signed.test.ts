/**
 * scripts/members.ts (run from dist/) where the regions sign their membership entries (ackSignatures sign or
 * require), against a deployment whose two regions have a Redis each (no region processes): `list` says per Redis
 * whether each copy verifies, and lists without checking when the key is missing; `activate` writes a fresh
 * signed entry built only on copies that verify (docs/membership-signing.md §4).
 */
import fs from 'node:fs';
import path from 'node:path';
import Redis from 'ioredis';
import { replicationKeys } from '../../src/redis';
import { AckSigning, type AckSignatures } from '../../src/replication/ack-auth';
import { readMembers, writeMember } from '../../src/replication/member-record';
import { signDeparture } from '../../src/replication/removal-auth';
import { createDeployment, REDIS_URL, TEST_REPLICATION_KEYS, testEventAuth, type TestDeployment } from '../support/env';
import { runScript } from '../support/harness';
import { secretsPath } from '../../scripts/cluster-secrets';
import { ownRedis, type OwnRedis } from '../support/redis-server';

const [A, B] = ['us-iowa', 'europe-belgium'] as const;
const auth = testEventAuth();
const GENUINE = '2026-12-06T01:00:00.000Z';
const PLANTED = '2020-01-01T00:00:00.000Z';

let server: OwnRedis;
let shared: Redis;
let own: Redis;
const deployments: TestDeployment[] = [];

beforeAll(async () => {
  server = await ownRedis();
  await server.start();
  shared = new Redis(REDIS_URL);
  own = new Redis(server.url);
});
afterAll(async () => {
  shared?.disconnect();
  own?.disconnect();
  await Promise.all(deployments.map((d) => d.cleanup()));
  await server?.kill();
});

/** A deployment in `mode`: A's Redis is the shared one, B's the test's own (emptied first). */
async function deploymentIn(mode: AckSignatures) {
  await own.flushall();
  const d = await createDeployment(`memberssigned-${mode}`, [A, B], { ackSignatures: mode }, { [B]: { redisUrl: server.url } });
  deployments.push(d);
  return { d, keys: replicationKeys(d.file.redisKeyPrefix), w: { signing: new AckSigning(auth, mode === 'off' ? 'sign' : mode) } };
}

type Listed = { members: { region: string; known_in: Record<string, string>; verified_in: Record<string, boolean | null>; joined_at: string | null }[]; verification: string };
/** `list`'s output, its members by region (it lists them in the order Redis gives them). */
const listed = (stdout: string) => {
  const out = JSON.parse(stdout) as Listed;
  return { ...out, members: out.members.sort((x, y) => x.region.localeCompare(y.region)) };
};

test.each(['sign', 'require'] as const)('in %s, list says per Redis whether each copy verifies, with the key; without it, it lists them unchecked', async (mode) => {
  const { d, keys, w } = await deploymentIn(mode);
  for (const r of [shared, own]) await writeMember(r, keys, A, { state: 'active', joined_at: GENUINE }, false, w);
  await writeMember(own, keys, B, { state: 'joining', joined_at: GENUINE }, false, w);
  // Planted in A's Redis: an unsigned copy of B (listed first: A's Redis comes first in the config), and a name.
  await shared.hset(keys.members, B, JSON.stringify({ state: 'active', joined_at: PLANTED }), 'evil', JSON.stringify({ state: 'active', joined_at: PLANTED }));
  const res = await runScript({ deployment: d }, 'members', ['list'], { REPLICATION_KEYS: TEST_REPLICATION_KEYS });
  expect({ status: res.status, stderr: res.stderr }).toEqual({ status: 0, stderr: '' });
  const out = listed(res.stdout);
  expect(out.verification).toBe('checked');
  expect(out.members).toEqual([
    // Its time from the copy that verifies, not the planted one read first.
    { region: B, known_in: { [A]: 'active', [B]: 'joining' }, verified_in: { [A]: false, [B]: true }, joined_at: GENUINE },
    { region: 'evil', known_in: { [A]: 'active' }, verified_in: { [A]: false }, joined_at: PLANTED },
    { region: A, known_in: { [A]: 'active', [B]: 'active' }, verified_in: { [A]: true, [B]: true }, joined_at: GENUINE },
  ]);
  const unchecked = await runScript({ deployment: d }, 'members', ['list'], { REPLICATION_KEYS: '' });
  expect(unchecked.status).toBe(0);
  expect(unchecked.stderr).toMatch(/^warning: the regions sign their membership entries .*REPLICATION_KEYS must be set.*listed without checking them/);
  // It says where it looked, and not to make a key up (the regions' own message suggests openssl rand).
  expect(unchecked.stderr).toContain(`it is not in the environment, and there is no ${secretsPath(d.configPath)}`);
  expect(unchecked.stderr).toContain('a key made up here would not be theirs');
  expect(unchecked.stderr).not.toContain('openssl rand');
  const plain = listed(unchecked.stdout);
  expect(plain.verification).toBe('unknown');
  expect(plain.members.map((m) => [m.region, m.known_in, m.verified_in])).toEqual([
    [B, { [A]: 'active', [B]: 'joining' }, { [A]: null, [B]: null }],
    ['evil', { [A]: 'active' }, { [A]: null }],
    [A, { [A]: 'active', [B]: 'active' }, { [A]: null, [B]: null }],
  ]);
}, 60_000);

test('in off, list checks nothing (verification off, verified_in null for every copy), whether or not it has the key', async () => {
  const { d, keys, w } = await deploymentIn('off');
  await writeMember(shared, keys, A, { state: 'active', joined_at: GENUINE }, false, w);
  await writeMember(own, keys, A, { state: 'active', joined_at: GENUINE });
  for (const replicationKeys of ['', TEST_REPLICATION_KEYS]) {
    const res = await runScript({ deployment: d }, 'members', ['list'], { REPLICATION_KEYS: replicationKeys });
    expect({ status: res.status, stderr: res.stderr }).toEqual({ status: 0, stderr: '' });
    const out = listed(res.stdout);
    expect(out.verification).toBe('off');
    expect(out.members).toEqual([{ region: A, known_in: { [A]: 'active', [B]: 'active' }, verified_in: { [A]: null, [B]: null }, joined_at: GENUINE }]);
  }
}, 60_000);

test.each(['sign', 'require'] as const)('in %s, list says per Redis whether each removal record verifies, and takes removed_at from one that does', async (mode) => {
  const { d, keys } = await deploymentIn(mode);
  const REMOVED = '2026-12-06T02:00:00.000Z';
  // B's Redis holds the genuine removal, signed; A's a later one planted unsigned (under require: absent there).
  await own.hset(keys.departed, 'gone', signDeparture(auth, 'gone', REMOVED));
  await shared.hset(keys.departed, 'gone', '2030-01-01T00:00:00.000Z');
  const res = await runScript({ deployment: d }, 'members', ['list'], { REPLICATION_KEYS: TEST_REPLICATION_KEYS });
  expect({ status: res.status, stderr: res.stderr }).toEqual({ status: 0, stderr: '' });
  expect(JSON.parse(res.stdout).departed).toEqual([{ region: 'gone', removed_at: REMOVED, known_in: [B, A].sort(), verified_in: { [A]: false, [B]: true } }]);
  // Without the key nothing is checked: the latest time of any copy.
  const unchecked = await runScript({ deployment: d }, 'members', ['list'], { REPLICATION_KEYS: '' });
  expect(JSON.parse(unchecked.stdout).departed).toEqual([{ region: 'gone', removed_at: '2030-01-01T00:00:00.000Z', known_in: [B, A].sort(), verified_in: { [A]: null, [B]: null } }]);
  await shared.hdel(keys.departed, 'gone');
}, 60_000);

/** `region`'s entry in A's Redis and B's, read with the regions' key. */
async function copiesOf(keys: ReturnType<typeof replicationKeys>, region: string) {
  return Promise.all([shared, own].map(async (r) => (await readMembers(r, keys, auth)).members.get(region)));
}
const PLANTED_URL = 'redis://attacker.example:6379';

test.each(['sign', 'require'] as const)('in %s, activate writes a fresh signed entry over every copy: rev above the highest that verifies, joined_at and redis_url from a copy that verifies, none from one that does not', async (mode) => {
  const { d, keys, w } = await deploymentIn(mode);
  const genuineUrl = `redis://127.0.0.1:${server.port}`;
  await writeMember(own, keys, B, { state: 'joining', joined_at: GENUINE, redis_url: genuineUrl, reseed: 'r1', rev: 4 }, false, w);
  // An older genuine copy in A's Redis, then a planted one over it: unsigned, with a huge rev and another Redis.
  await writeMember(shared, keys, B, { state: 'joining', joined_at: GENUINE, redis_url: genuineUrl, rev: 3 }, false, w);
  await shared.hset(keys.members, B, JSON.stringify({ state: 'joining', joined_at: PLANTED, redis_url: PLANTED_URL, reseed: 'r9', rev: 2 ** 40 }));
  const res = await runScript({ deployment: d }, 'members', ['activate', B], { REPLICATION_KEYS: TEST_REPLICATION_KEYS });
  expect({ status: res.status, stderr: res.stderr }).toEqual({ status: 0, stderr: '' });
  expect(JSON.parse(res.stdout)).toEqual({ region: B, state: 'active', rev: 5, unreachable: [], not_verified: [A] });
  for (const m of await copiesOf(keys, B)) {
    expect(m).toMatchObject({ state: 'active', verified: 'signed', rev: 5, joinedAt: GENUINE, redisUrl: genuineUrl, reseed: null });
  }
}, 60_000);

test('in require, activate of a configured region none of whose copies verifies writes a fresh entry: rev 1, the config\'s address without credentials, joined now', async () => {
  const { d, keys } = await deploymentIn('require');
  const started = new Date().toISOString();
  for (const r of [shared, own]) await r.hset(keys.members, B, JSON.stringify({ state: 'joining', joined_at: PLANTED, redis_url: PLANTED_URL, rev: 2 ** 40 }));
  const res = await runScript({ deployment: d }, 'members', ['activate', B], { REPLICATION_KEYS: TEST_REPLICATION_KEYS });
  expect({ status: res.status, stderr: res.stderr }).toEqual({ status: 0, stderr: '' });
  expect(JSON.parse(res.stdout)).toEqual({ region: B, state: 'active', rev: 1, unreachable: [], not_verified: [A, B] });
  for (const m of await copiesOf(keys, B)) {
    expect(m).toMatchObject({ state: 'active', verified: 'signed', rev: 1, redisUrl: `redis://127.0.0.1:${server.port}` });
    expect((m?.joinedAt ?? '') >= started).toBe(true);
  }
}, 60_000);

test('in require, activate without the regions\' keys exits 2 before writing, naming the secrets file it looked in (none, or one without REPLICATION_KEYS) and not suggesting a new key', async () => {
  const { d, keys } = await deploymentIn('require');
  const file = secretsPath(d.configPath);
  const first = await runScript({ deployment: d }, 'members', ['activate', B], { REPLICATION_KEYS: '' });
  expect({ status: first.status, stderr: first.stderr }).toEqual({ status: 2, stderr: expect.stringContaining(`it is not in the environment, and there is no ${file}`) });
  expect(first.stderr).not.toContain('openssl rand');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, 'ADMIN_TOKEN=unused\n');
  try {
    const second = await runScript({ deployment: d }, 'members', ['activate', B], { REPLICATION_KEYS: '' });
    expect({ status: second.status, stderr: second.stderr }).toEqual({ status: 2, stderr: expect.stringContaining(`${file} has no REPLICATION_KEYS line`) });
  } finally {
    fs.rmSync(file);
  }
  expect(await copiesOf(keys, B)).toEqual([undefined, undefined]);
}, 60_000);

test.each(['sign', 'require'] as const)('in %s, activate of a region the config does not name whose copies all fail to verify is refused (exit 2, naming it); one copy that verifies is built on', async (mode) => {
  const { d, keys, w } = await deploymentIn(mode);
  const planted = JSON.stringify({ state: 'joining', joined_at: PLANTED, redis_url: PLANTED_URL });
  for (const r of [shared, own]) await r.hset(keys.members, 'south-x', planted);
  const refused = await runScript({ deployment: d }, 'members', ['activate', 'south-x'], { REPLICATION_KEYS: TEST_REPLICATION_KEYS });
  expect(refused.status).toBe(2);
  expect(refused.stderr).toMatch(/^members failed: south-x's membership entry does not verify in any Redis that holds it \(us-iowa, europe-belgium\), and .* does not name it: .*nothing was written/);
  expect(await Promise.all([shared, own].map((r) => r.hget(keys.members, 'south-x')))).toEqual([planted, planted]);
  // Its genuine entry in its home Redis (say B's): taken from there into both.
  const home = 'redis://south-x.example:6379';
  await writeMember(own, keys, 'south-x', { state: 'joining', joined_at: GENUINE, redis_url: home, rev: 2 }, false, w);
  const done = await runScript({ deployment: d }, 'members', ['activate', 'south-x'], { REPLICATION_KEYS: TEST_REPLICATION_KEYS });
  expect({ status: done.status, stderr: done.stderr }).toEqual({ status: 0, stderr: '' });
  for (const m of await copiesOf(keys, 'south-x')) expect(m).toMatchObject({ state: 'active', verified: 'signed', rev: 3, joinedAt: GENUINE, redisUrl: home });
}, 60_000);

test('activate refuses to go above a rev no safe integer follows (only a holder of the key writes one): exit 1, nothing written', async () => {
  const { d, keys, w } = await deploymentIn('require');
  await writeMember(own, keys, B, { state: 'joining', joined_at: GENUINE, rev: Number.MAX_SAFE_INTEGER }, false, w);
  const then = await own.hget(keys.members, B);
  const res = await runScript({ deployment: d }, 'members', ['activate', B], { REPLICATION_KEYS: TEST_REPLICATION_KEYS });
  expect({ status: res.status, stderr: res.stderr }).toEqual({ status: 1, stderr: expect.stringContaining(`${B}'s membership entry verifies at rev ${Number.MAX_SAFE_INTEGER}, above which no safe integer is left: nothing was written`) });
  expect(await own.hget(keys.members, B)).toBe(then);
}, 60_000);
