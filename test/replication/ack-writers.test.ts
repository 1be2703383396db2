/**
 * The ack writers (ack-records.ts) against a real Redis: in `sign` and `require` modes every value, `~org`,
 * parked value and announcement is signed; a signed announcement keeps its body and names the kept applied
 * ack on a last line; a kept value that does not verify is replaced by the region's own signed judgement.
 * In `off` mode the writers write what they wrote before signing, byte for byte.
 */
import pino from 'pino';
import { createRedis, replicationKeys, type Redis } from '../../src/redis';
import { Tracker } from '../../src/replication/tracker';
import { ORG_FIELD, parseAck, type AckOutcome } from '../../src/replication/ack-records';
import { AckSigning, checkAck, checkAnnouncement, signAck, type AckSignatures } from '../../src/replication/ack-auth';
import { REDIS_URL, deleteKeys, testEventAuth, uniqueName } from '../support/env';
import { eventually } from '../support/harness';

const prefix = `${uniqueName('ackwriters')}:`;
const keys = replicationKeys(prefix);
const auth = testEventAuth();
const conns: Redis[] = [];
const ready = (c: Redis) => new Promise((resolve) => (c.status === 'ready' ? resolve(undefined) : c.once('ready', resolve)));
const conn = async (sub = false) => {
  const c = createRedis(REDIS_URL, 'test:ack-writers', { queueWhileOffline: sub });
  conns.push(c);
  await ready(c);
  return c;
};
/** Origin a's tracker in `mode` (the writers take their signing from it). */
const trackerIn = async (mode: AckSignatures) => {
  const t = new Tracker(await conn(), await conn(true), keys, 'a', pino({ level: 'silent' }), 1000, 3600, new AckSigning(auth, mode));
  await t.start();
  return t;
};
let cmd: Redis;
/** What is announced on origin a's channel. */
const heard: string[] = [];

beforeAll(async () => {
  cmd = await conn();
  const listener = await conn(true);
  await listener.subscribe(keys.ackChannel('a'));
  listener.on('message', (_channel: string, message: string) => heard.push(message));
});
afterAll(async () => {
  for (const c of conns) c.disconnect();
  await deleteKeys(prefix);
});

const ISO = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z';
const winner = { table: 'organizations', key: 'k1', version: '000000000002000.000000.c', originRegion: 'c' };
const superseded: AckOutcome = { outcome: 'superseded', winner };
const announcedOf = async (id: string): Promise<string> => {
  expect(await eventually(async () => heard.some((m) => m.includes(id)), 5000, 10)).toBe(true);
  return heard.find((m) => m.includes(id)) as string;
};
const stored = async (id: string) => cmd.hgetall(keys.ack(id));

test('signing, each ack value, the ~org and the announcement are signed for their change and region', async () => {
  const t = await trackerIn('sign');
  await t.ack('b', ['s-1', 's-2'], { orgs: new Map([['s-1', 'org-1']]), outcomes: new Map([['s-2', superseded]]) });
  const one = await stored('s-1');
  expect(checkAck(auth, 's-1', 'b', one.b ?? '')).toEqual({ value: expect.stringMatching(new RegExp(`^applied@${ISO}$`)), verdict: 'signed' });
  expect(checkAck(auth, 's-1', ORG_FIELD, one[ORG_FIELD] ?? '')).toEqual({ value: 'org-1', verdict: 'signed' });
  const two = await stored('s-2');
  expect(Object.keys(two)).toEqual(['b']);
  expect(checkAck(auth, 's-2', 'b', two.b ?? '')).toMatchObject({ value: expect.stringMatching(/^superseded:organizations:k1:000000000002000\.000000\.c@/), verdict: 'signed' });
  // Bound to its change and region: the same value does not hold for another.
  expect(checkAck(auth, 's-1', 'c', one.b ?? '').verdict).toBe('bad-signature');
  const announced = checkAnnouncement(auth, await announcedOf('s-1'));
  expect(announced).toEqual({ verdict: 'signed', kept: null, body: expect.any(String) });
  expect(JSON.parse(announced?.body ?? '')).toEqual({ region: 'b', ids: ['s-1', 's-2'], lost: { 's-2': checkAck(auth, 's-2', 'b', two.b ?? '').value } });
});

test('off, the values and the announcement are written as before signing, byte for byte', async () => {
  const t = await trackerIn('off');
  await t.ack('b', ['o-1'], { orgs: new Map([['o-1', 'org-1']]) });
  await t.parked('c', ['o-1']);
  expect(await stored('o-1')).toEqual({ b: expect.stringMatching(new RegExp(`^applied@${ISO}$`)), c: expect.stringMatching(new RegExp(`^parked ${ISO}$`)), [ORG_FIELD]: 'org-1' });
  expect(await announcedOf('o-1')).toBe(JSON.stringify({ region: 'b', ids: ['o-1'] }));
  // A kept applied ack is still dropped from the plain announcement's lost, as before.
  await t.ack('b', ['o-1', 'o-2'], { outcomes: new Map([['o-1', superseded], ['o-2', superseded]]) });
  expect(JSON.parse(await announcedOf('o-2'))).toEqual({ region: 'b', ids: ['o-1', 'o-2'], lost: { 'o-2': expect.stringMatching(/^superseded:/) } });
});

test('signing, an applied ack kept over a later superseded one is named on the announcement\'s kept line, and a waiter counts it as held', async () => {
  const t = await trackerIn('sign');
  await t.ack('b', ['k-1']);
  const applied = (await stored('k-1')).b ?? '';
  const waiting = t.wait('k-1', ['a', 'b', 'c'], ['a'], Date.now() + 10_000);
  await t.ack('b', ['k-1', 'k-2'], { outcomes: new Map([['k-1', superseded], ['k-2', superseded]]) });
  expect((await stored('k-1')).b).toBe(applied);
  const announced = checkAnnouncement(auth, await announcedOf('k-2'));
  // The body stays as signed (both lost); the kept line names the stored, signed value.
  expect(announced?.verdict).toBe('signed');
  expect(Object.keys(JSON.parse(announced?.body ?? '').lost as object)).toEqual(['k-1', 'k-2']);
  expect(JSON.parse(announced?.kept ?? '')).toEqual({ 'k-1': applied });
  expect(checkAck(auth, 'k-1', 'b', applied).verdict).toBe('signed');
  await t.ack('c', ['k-1']);
  expect(await waiting).toMatchObject({ complete: true, superseded: [] });
  expect(t.acksRepaired).toBe(0);
});

test('signing, a superseded ack answers its waiter as lost (the 409 of an all_regions write)', async () => {
  const t = await trackerIn('sign');
  const waiting = t.wait('l-1', ['a', 'b'], ['a'], Date.now() + 10_000);
  await t.ack('b', ['l-1'], { outcomes: new Map([['l-1', superseded]]) });
  expect(await waiting).toEqual({ complete: false, applied: ['a'], pending: [], superseded: [{ region: 'b', winner }] });
  expect(checkAnnouncement(auth, await announcedOf('l-1'))?.verdict).toBe('signed');
});

describe('a kept value that does not verify is replaced with the region\'s own signed judgement', () => {
  const planted = (id: string, how: 'unsigned' | 'a bad tag' | "another change's tag") => {
    const value = 'applied@2026-12-01T00:00:00.000Z';
    if (how === 'unsigned') return value;
    if (how === 'a bad tag') return `${value}#test-k1:AAAAAAAAAAAAAAAAAAAAAA`;
    return signAck(auth, `${id}-other`, 'b', value);
  };

  test.each(['a bad tag', "another change's tag"] as const)('signing, an applied with %s is replaced by the superseded ack', async (how) => {
    const t = await trackerIn('sign');
    const id = `p-${how.replace(/\W/g, '-')}`;
    await cmd.hset(keys.ack(id), 'b', planted(id, how));
    await t.ack('b', [id], { outcomes: new Map([[id, superseded]]) });
    const now = (await stored(id)).b ?? '';
    expect(checkAck(auth, id, 'b', now)).toMatchObject({ value: expect.stringMatching(/^superseded:/), verdict: 'signed' });
    expect(parseAck(now)?.outcome).toBe('superseded');
    expect(t.acksRepaired).toBe(1);
  });

  test('signing, an unsigned applied stands (the region\'s own, from before it signed); requiring, it is replaced', async () => {
    const signing = await trackerIn('sign');
    await cmd.hset(keys.ack('u-1'), 'b', planted('u-1', 'unsigned'));
    await signing.ack('b', ['u-1'], { outcomes: new Map([['u-1', superseded]]) });
    expect((await stored('u-1')).b).toBe(planted('u-1', 'unsigned'));
    expect(signing.acksRepaired).toBe(0);
    const requiring = await trackerIn('require');
    await requiring.ack('b', ['u-1'], { outcomes: new Map([['u-1', superseded]]) });
    expect(checkAck(auth, 'u-1', 'b', (await stored('u-1')).b ?? '')).toMatchObject({ value: expect.stringMatching(/^superseded:/), verdict: 'signed' });
    expect(requiring.acksRepaired).toBe(1);
  });

  test('signing, a parked value is signed; one parked over a planted applied replaces it; over a signed applied it stands', async () => {
    const t = await trackerIn('sign');
    await t.parked('b', ['q-1']);
    expect(checkAck(auth, 'q-1', 'b', (await stored('q-1')).b ?? '')).toEqual({ value: expect.stringMatching(new RegExp(`^parked ${ISO}$`)), verdict: 'signed' });
    await cmd.hset(keys.ack('q-2'), 'b', planted('q-2', 'a bad tag'));
    await t.parked('b', ['q-2']);
    expect(checkAck(auth, 'q-2', 'b', (await stored('q-2')).b ?? '')).toMatchObject({ value: expect.stringMatching(/^parked /), verdict: 'signed' });
    expect(await cmd.ttl(keys.ack('q-2'))).toBeGreaterThan(0);
    await t.ack('b', ['q-3']);
    const applied = (await stored('q-3')).b;
    await t.parked('b', ['q-3']);
    expect((await stored('q-3')).b).toBe(applied);
    expect(t.acksRepaired).toBe(1);
  });
});
