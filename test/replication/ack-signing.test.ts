/**
 * Signed acks between region processes: us-iowa and europe-belgium run `ackSignatures: 'sign'`, asia-japan
 * `off` (a region not switched yet, its own copy of the config). `all_regions` writes complete from a
 * signing region and from the other; each region's acks in the origin's Redis, and their announcements,
 * are signed as its own mode says, and the others read them either way.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { createRedis, replicationKeys } from '../../src/redis';
import { ORG_FIELD } from '../../src/replication/ack-records';
import { checkAck, checkAnnouncement } from '../../src/replication/ack-auth';
import { REDIS_URL, testEventAuth, uniqueName } from '../support/env';
import { adminHeaders, call, eventually, startCluster, type Cluster } from '../support/harness';

const [A, B, C] = ['us-iowa', 'europe-belgium', 'asia-japan'] as const;
const ALL = { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '20' };
const auth = testEventAuth();
const offConfig = path.join(os.tmpdir(), `${uniqueName('acksigning-off')}.json`);
let cluster: Cluster;
let redis: Redis;
let listener: Redis;
/** Announcements heard on each origin's ack channel. */
const heard: { channel: string; message: string }[] = [];

beforeAll(async () => {
  cluster = await startCluster('acksigning', [A, B, C], {
    extra: { ackSignatures: 'sign' },
    regionEnv: { [C]: { REGIONS_CONFIG: offConfig } },
    beforeStart: async (deployment) => fs.writeFileSync(offConfig, JSON.stringify({ ...deployment.file, ackSignatures: 'off' })),
  });
  redis = createRedis(REDIS_URL, 'ack-signing-test', { queueWhileOffline: true });
  listener = createRedis(REDIS_URL, 'ack-signing-test:sub', { queueWhileOffline: true });
  const keys = replicationKeys(cluster.deployment.file.redisKeyPrefix);
  await listener.subscribe(keys.ackChannel(A), keys.ackChannel(C));
  listener.on('message', (channel: string, message: string) => heard.push({ channel, message }));
}, 120_000);
afterAll(async () => {
  listener?.disconnect();
  redis?.disconnect();
  fs.rmSync(offConfig, { force: true });
  await cluster?.stop(0);
});

const keys = () => replicationKeys(cluster.deployment.file.redisKeyPrefix);
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** An organization created in `origin` under all_regions: its answer and its change's stored acks. */
async function writeIn(origin: string, name: string) {
  const res = await call(cluster.url(origin), 'POST', '/admin/organizations', { body: { name }, headers: { ...adminHeaders, ...ALL } });
  const changeId = res.headers.get('x-change-id') ?? '';
  return { status: res.status, id: res.body?.id as string, changeId, acks: await redis.hgetall(keys().ack(changeId)) };
}

/** What region `region` announced of `changeId` on `origin`'s channel. */
async function announcement(origin: string, region: string, changeId: string): Promise<string> {
  const of = (h: { channel: string; message: string }) => h.channel === keys().ackChannel(origin) && h.message.includes(changeId) && h.message.includes(`"region":"${region}"`);
  expect(await eventually(async () => heard.some(of), 10_000, 20)).toBe(true);
  return heard.find(of)?.message ?? '';
}

test('an all_regions write of a signing region completes; the signing regions\' acks, its ~org and their announcements are signed, the off region\'s are as before', async () => {
  const w = await writeIn(A, 'signed-origin');
  expect(w.status).toBe(201);
  for (const r of [A, B]) expect(checkAck(auth, w.changeId, r, w.acks[r] ?? '')).toEqual({ value: expect.stringMatching(/^applied@/), verdict: 'signed' });
  expect(checkAck(auth, w.changeId, ORG_FIELD, w.acks[ORG_FIELD] ?? '')).toEqual({ value: w.id, verdict: 'signed' });
  expect(w.acks[C]).toMatch(/^applied@/);
  expect(w.acks[C]?.slice('applied@'.length)).toMatch(ISO);
  const signed = checkAnnouncement(auth, await announcement(A, B, w.changeId));
  expect(signed).toMatchObject({ verdict: 'signed', kept: null });
  expect(JSON.parse(signed?.body ?? '')).toEqual({ region: B, ids: [w.changeId] });
  expect(JSON.parse(await announcement(A, C, w.changeId))).toEqual({ region: C, ids: [w.changeId] });
}, 60_000);

test('an all_regions write of the off region completes on the signing regions\' signed acks; its own ack and ~org are as before', async () => {
  const w = await writeIn(C, 'unsigned-origin');
  expect(w.status).toBe(201);
  for (const r of [A, B]) expect(checkAck(auth, w.changeId, r, w.acks[r] ?? '').verdict).toBe('signed');
  expect(w.acks[C]?.slice('applied@'.length)).toMatch(ISO);
  expect(w.acks[ORG_FIELD]).toBe(w.id);
  expect(checkAnnouncement(auth, await announcement(C, B, w.changeId))?.verdict).toBe('signed');
}, 60_000);
