/**
 * scripts/members.ts against a deployment's Redis (no region processes but those started in this one): `activate`
 * of a region that is no member fails and writes nothing; `list` does not show a region that is a member again as
 * removed; the last member is not removed; `remove` tells this deployment's running region exactly from another
 * deployment's on the same Redis whose key prefix and region run together the same.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import { PROJECT_ROOT } from '../../src/paths';
import { replicationKeys } from '../../src/redis';
import { readMembers, writeMember } from '../../src/replication/member-record';
import { startRegion } from '../../src/region';
import { createDeployment, freePorts, REDIS_URL, uniqueName, type TestDeployment } from '../support/env';
import { runScript } from '../support/harness';
import { ownRedis } from '../support/redis-server';

let deployment: TestDeployment;
let redis: Redis;

beforeAll(async () => {
  deployment = await createDeployment('membersscript', ['us-iowa', 'europe-belgium']);
  redis = new Redis(REDIS_URL);
});
afterAll(async () => {
  redis?.disconnect();
  await deployment?.cleanup();
});

test('activate names a region that is no member and fails, writing nothing', async () => {
  const keys = replicationKeys(deployment.file.redisKeyPrefix);
  await writeMember(redis, keys, 'us-iowa', { state: 'active' });
  const res = await runScript({ deployment } as never, 'members', ['activate', 'no-such-region']);
  expect(res.status).toBe(1);
  expect(res.stderr).toMatch(/no-such-region is not a member/);
  expect((await readMembers(redis, keys)).members.has('no-such-region')).toBe(false);
});

test('list shows a region added again under a removed name as a member, not as removed', async () => {
  const keys = replicationKeys(deployment.file.redisKeyPrefix);
  await writeMember(redis, keys, 'south-x', { state: 'active' });
  await redis.hset(keys.departed, 'south-x', '2026-12-01T00:00:00.000Z', 'gone-y', '2026-12-02T00:00:00.000Z');
  const res = await runScript({ deployment } as never, 'members', ['list']);
  expect(res.status).toBe(0);
  const out = JSON.parse(res.stdout);
  expect(out.members.map((m: { region: string }) => m.region)).toContain('south-x');
  expect(out.departed.map((d: { region: string }) => d.region)).toEqual(['gone-y']);
});

test('list reads only the regions\' Redis: it loads ioredis, and neither Prisma nor pg', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'members-loaded-'));
  const file = path.join(dir, 'loaded');
  const res = await runScript({ deployment } as never, 'members', ['list'], {
    NODE_OPTIONS: `--require ${path.join(__dirname, '..', 'support', 'loaded-packages.cjs')}`,
    LOADED_PACKAGES_FILE: file,
  });
  const loaded = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
  fs.rmSync(dir, { recursive: true, force: true });
  expect(res.status).toBe(0);
  expect(loaded).toContain('ioredis');
  expect(loaded.filter((p) => ['@prisma/client', '@prisma/adapter-pg', 'pg'].includes(p))).toEqual([]);
});

test('remove refuses the last member (nothing would be left to take over its credentials), and removes it once another is there', async () => {
  const keys = replicationKeys(deployment.file.redisKeyPrefix);
  await redis.del(keys.members, keys.departed);
  await writeMember(redis, keys, 'us-iowa', { state: 'active' });
  const refused = await runScript({ deployment } as never, 'members', ['remove', 'us-iowa']);
  expect(refused.status).toBe(1);
  expect(refused.stderr).toMatch(/us-iowa is the deployment's last member; .*Nothing was done/);
  expect((await readMembers(redis, keys)).members.has('us-iowa')).toBe(true);
  expect(await redis.hget(keys.departed, 'us-iowa')).toBeNull();
  await writeMember(redis, keys, 'europe-belgium', { state: 'active' });
  const removed = await runScript({ deployment } as never, 'members', ['remove', 'us-iowa']);
  expect(removed.status).toBe(0);
  expect(JSON.parse(removed.stdout)).toMatchObject({ region: 'us-iowa', removed: true });
  expect([...(await readMembers(redis, keys)).members.keys()]).toEqual(['europe-belgium']);
}, 60_000); // two runs of the script: three once outran 30 s on a loaded host (below), so two leave 30 s little spare

test('remove of a name no Redis knows (a misspelt id) fails and records nothing; an already removed region is removed again quietly', async () => {
  const keys = replicationKeys(deployment.file.redisKeyPrefix);
  await redis.del(keys.members, keys.departed);
  await writeMember(redis, keys, 'us-iowa', { state: 'active' });
  await writeMember(redis, keys, 'europe-belgium', { state: 'active' });
  const typo = await runScript({ deployment } as never, 'members', ['remove', 'europe-belgum']);
  expect(typo.status).toBe(1);
  expect(typo.stderr).toMatch(/europe-belgum is not a member, .*\(members: europe-belgium, us-iowa\)\. Nothing was done/);
  expect(await redis.hget(keys.departed, 'europe-belgum')).toBeNull();
  expect([...(await readMembers(redis, keys)).members.keys()].sort()).toEqual(['europe-belgium', 'us-iowa']);
  // Removed, then removed again (docs/operations.md's "run the command again"): the second run is not refused.
  expect((await runScript({ deployment } as never, 'members', ['remove', 'europe-belgium'])).status).toBe(0);
  const again = await runScript({ deployment } as never, 'members', ['remove', 'europe-belgium']);
  expect(again.status).toBe(0);
  expect(JSON.parse(again.stdout)).toMatchObject({ region: 'europe-belgium', removed: false });
}, 60_000); // three runs of the script: ~25 s on a loaded host (a run beside two helpers' clusters timed out at 30)

test("remove of a region added at runtime with a Redis of its own, once the config no longer names it, deletes its inbox there too", async () => {
  const keys = replicationKeys(deployment.file.redisKeyPrefix);
  await redis.del(keys.members, keys.departed);
  const south = await ownRedis();
  await south.start();
  const there = new Redis(south.url);
  try {
    // As it joined: its record (with its Redis's address) in every Redis, its inbox in its own.
    for (const r of [redis, there]) {
      await writeMember(r, keys, 'us-iowa', { state: 'active' });
      await writeMember(r, keys, 'south-x', { state: 'active', redis_url: south.url });
    }
    await there.xadd(keys.inbox('south-x'), '*', 'e', '{}');
    const res = await runScript({ deployment } as never, 'members', ['remove', 'south-x', '--redis-url', south.url]);
    expect(res.status).toBe(0);
    expect(JSON.parse(res.stdout)).toEqual({ region: 'south-x', removed: true, inboxDeleted: true, unreachable: [] });
    expect(await there.exists(keys.inbox('south-x'))).toBe(0);
    expect((await readMembers(there, keys)).members.has('south-x')).toBe(false);
    expect((await readMembers(redis, keys)).members.has('south-x')).toBe(false);
  } finally {
    there.disconnect();
    await south.kill();
  }
}, 60_000); // a Redis server started and a run of the script: as above, 30 s leaves a loaded host little spare

test("remove does not connect to the Redis a membership entry records (anyone who writes to a Redis can plant it): it names it, and --redis-url reaches it", async () => {
  const keys = replicationKeys(deployment.file.redisKeyPrefix);
  await redis.del(keys.members, keys.departed);
  // A listener standing for the planted address: it records whether anything connected.
  const seen: string[] = [];
  const listener = net.createServer((socket) => {
    seen.push('connection');
    socket.destroy();
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const planted = `redis://127.0.0.1:${(listener.address() as net.AddressInfo).port}`;
  try {
    await writeMember(redis, keys, 'us-iowa', { state: 'active' });
    await writeMember(redis, keys, 'south-x', { state: 'active', redis_url: planted });
    const res = await runScript({ deployment } as never, 'members', ['remove', 'south-x']);
    expect(res.status).toBe(0);
    expect(JSON.parse(res.stdout)).toEqual({ region: 'south-x', removed: true, inboxDeleted: false, unreachable: [], not_contacted: planted });
    expect(res.stderr).toContain(`records a Redis of its own at ${planted}, which no config names; it was not contacted`);
    expect(seen).toEqual([]);
    expect((await readMembers(redis, keys)).members.has('south-x')).toBe(false);
    // What the operator names is used (the listener hangs up: the command names it unreachable).
    await writeMember(redis, keys, 'south-x', { state: 'active', redis_url: planted });
    const named = await runScript({ deployment } as never, 'members', ['remove', 'south-x', '--redis-url', planted]);
    expect(seen[0]).toBe('connection');
    expect(JSON.parse(named.stdout)).toMatchObject({ region: 'south-x', removed: true, unreachable: ['south-x'] });
    expect(JSON.parse(named.stdout)).not.toHaveProperty('not_contacted');
  } finally {
    await new Promise((resolve) => listener.close(resolve));
  }
}, 60_000);

test('remove refuses flags it does not know, a repeated one, and a --redis-url that is no Redis URL (usage, exit 2)', async () => {
  for (const args of [['--redis-url'], ['--redis-url', 'http://x:1'], ['--force', '--force'], ['--redis-url', 'redis://a:1', '--redis-url', 'redis://b:1'], ['--frce']]) {
    const res = await runScript({ deployment } as never, 'members', ['remove', 'south-x', ...args]);
    expect(res.status).toBe(2);
    expect(res.stderr).toMatch(/^usage: npm run members -- .*\[--redis-url <url>\]/);
  }
});

/** Starts `region` of `d` in this process, with its operator thread (whose connections are named too). */
async function startWithOperator(d: TestDeployment, region: string) {
  const [operatorPort] = await freePorts(1);
  return startRegion(d.configFor(region), { port: 0, operatorPort: operatorPort ?? null, drainTimeoutMs: 5000 });
}

test('remove does not take a running region of another deployment on the same Redis for this one\'s, where prefix and region run together the same', async () => {
  const keys = replicationKeys(deployment.file.redisKeyPrefix);
  await redis.del(keys.members, keys.departed);
  await writeMember(redis, keys, 'us-iowa', { state: 'active' });
  await writeMember(redis, keys, 'europe-belgium', { state: 'active' });
  // Key prefix '<ours>europe-' and region 'belgium': its connections were named '<ours>europe-belgium:<pid>:…', as
  // a running europe-belgium of this deployment's are, and the removal of this one's (stopped) was refused.
  const neighbour = await createDeployment('membersneighbour', ['belgium'], { redisKeyPrefix: `${deployment.file.redisKeyPrefix}europe-` });
  const running = await startWithOperator(neighbour, 'belgium');
  try {
    const res = await runScript({ deployment } as never, 'members', ['remove', 'europe-belgium']);
    expect(res.stderr).not.toMatch(/still running/);
    expect(res.status).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ region: 'europe-belgium', removed: true });
  } finally {
    await running.stop();
    await neighbour.cleanup();
  }
}, 60_000);

test('remove still refuses a running region of a deployment whose key prefix ends without ":"', async () => {
  const d = await createDeployment('membersnocolon', ['us-iowa', 'europe-belgium'], { redisKeyPrefix: uniqueName('nocolon') });
  const running = await startWithOperator(d, 'europe-belgium');
  try {
    await writeMember(redis, replicationKeys(d.file.redisKeyPrefix), 'us-iowa', { state: 'active' });
    const res = await runScript({ deployment: d } as never, 'members', ['remove', 'europe-belgium']);
    expect(res.status).toBe(1);
    expect(res.stderr).toContain(`members failed: europe-belgium is still running: its process's connection ${d.file.redisKeyPrefix}/europe-belgium:${process.pid}:`);
    expect((await readMembers(redis, replicationKeys(d.file.redisKeyPrefix))).members.has('europe-belgium')).toBe(true);
  } finally {
    await running.stop();
    await d.cleanup();
  }
}, 60_000);

test('list into a reader that exits at once (a failed jq, `| head -c 0`) ends quietly: no EPIPE stack trace', async () => {
  // The reader is gone before the list is written (reading Redis takes longer than `head -c 0` lives).
  const script = `set -o pipefail; "${process.execPath}" "${path.join(PROJECT_ROOT, 'dist', 'scripts', 'members.js')}" list | head -c 0`;
  const res = spawnSync('bash', ['-c', script], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, REGIONS_CONFIG: deployment.configPath } });
  expect({ status: res.status, stderr: res.stderr }).toEqual({ status: 0, stderr: '' });
});
