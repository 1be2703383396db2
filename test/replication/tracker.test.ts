import pino from 'pino';
import { createRedis, replicationKeys, type Redis } from '../../src/redis';
import { Tracker, type WaitResult } from '../../src/replication/tracker';
import { formatAck, parseAck, recordAcks } from '../../src/replication/ack-records';
import { AckSigning, signAck, signAnnouncement } from '../../src/replication/ack-auth';
import { EventAuth, parseReplicationKeys } from '../../src/replication/event-auth';
import { REDIS_URL, deleteKeys, uniqueName } from '../support/env';

const prefix = `${uniqueName('tracker')}:`;
const keys = replicationKeys(prefix);
const conns: Redis[] = [];
// The production factory: the subscriber is handed over before it is ready, as in a region process.
const conn = (sub = false) => {
  const c = createRedis(REDIS_URL, sub ? 'test:sub' : 'test:cmd', { queueWhileOffline: sub });
  conns.push(c);
  return c;
};
let tracker: Tracker;
let other: Tracker;
/**
 * Resolves once the connection is ready. A SUBSCRIBE sent while ioredis still runs its ready check can be
 * lost with the connection (why the tracker subscribes on 'ready'): a listener here waits for it first.
 */
const ready = (c: Redis) => new Promise((resolve) => (c.status === 'ready' ? resolve(undefined) : c.once('ready', resolve)));

beforeAll(async () => {
  tracker = new Tracker(conn(), conn(true), keys, 'a', pino({ level: 'silent' }));
  const lateSub = conn(true);
  other = new Tracker(conn(), lateSub, keys, 'a', pino({ level: 'silent' }));
  await tracker.start();
  // Start while the connection is up but ioredis is still in its ready check (the state a busy region
  // process hits): a SUBSCRIBE sent then used to be lost with the connection.
  await new Promise((resolve) => lateSub.once('connect', resolve));
  await other.start();
  // The command connections fail fast until ready (no offline queue): a test run alone starts right away.
  await Promise.all(conns.map(ready));
});
afterAll(async () => {
  for (const c of conns) c.disconnect();
  await deleteKeys(prefix);
});

test('each tracker holds exactly one subscription, even when started before its connection was ready', async () => {
  const probe = conn(true);
  const subscribed = async () => {
    const reply = (await probe.call('PUBSUB', 'NUMSUB', keys.ackChannel('a'), keys.ackChannel('b'))) as [string, number, string, number];
    // Both trackers are region a's: nobody hears region b's channel.
    expect(Number(reply[3])).toBe(0);
    return Number(reply[1]);
  };
  const until = Date.now() + 5000;
  while ((await subscribed()) < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 300)); // a dropped connection would show up here
  expect(await subscribed()).toBe(2);
});

test('a waiter is released by an ack announced after it registered', async () => {
  const waiting = tracker.wait('c1', ['a', 'b', 'c'], ['a'], Date.now() + 5000);
  await new Promise((r) => setTimeout(r, 50));
  await other.ack('b', ['c1']);
  await other.ack('c', ['c1']);
  const res = await waiting;
  expect(res).toEqual({ complete: true, applied: expect.arrayContaining(['a', 'b', 'c']), pending: [], superseded: [] });
  expect(tracker.waiting).toBe(0);
});

test('an ack stored before the waiter registered is not missed', async () => {
  await other.ack('b', ['c2']);
  const res = await tracker.wait('c2', ['a', 'b'], ['a'], Date.now() + 5000);
  expect(res.complete).toBe(true);
});

test('an ack stored before the waiter registered completes it at once, by the waiter\'s own check, with no sweep to find it', async () => {
  // A tracker whose sweep of stored acks would come only after a minute, subscribed (and its start-up
  // read of the stored acks done) before the ack is stored: only the waiter's own check can find it.
  const sub = conn(true);
  const cmd = conn();
  await Promise.all([ready(sub), ready(cmd)]);
  const unswept = new Tracker(cmd, sub, keys, 'a', pino({ level: 'silent' }), 60_000);
  await unswept.start();
  // Stored without an announcement, which a subscribed tracker could hear after the waiter registered.
  await cmd.hset(keys.ack('c2-unswept'), 'b', `applied@${new Date().toISOString()}`);
  let fallback: NodeJS.Timeout | undefined;
  const hung = new Promise<'still waiting'>((resolve) => (fallback = setTimeout(() => resolve('still waiting'), 5000)));
  const res = await Promise.race([unswept.wait('c2-unswept', ['a', 'b'], ['a'], Date.now() + 20_000), hung]);
  clearTimeout(fallback);
  expect(res).toEqual({ complete: true, applied: ['a', 'b'], pending: [], superseded: [] });
  expect(unswept.waiting).toBe(0);
  await sub.unsubscribe();
});

test('times out at the deadline with the regions still pending, and leaves no waiter behind', async () => {
  const started = Date.now();
  const res = await tracker.wait('c3', ['a', 'b', 'c'], ['a'], Date.now() + 300);
  expect(Date.now() - started).toBeGreaterThanOrEqual(280);
  expect(res).toEqual({ complete: false, applied: ['a'], pending: ['b', 'c'], superseded: [] });
  expect(tracker.waiting).toBe(0);
});

test('several waiters on one change keep their own deadlines: the earlier times out, the later still gets the ack', async () => {
  const soon = tracker.wait('c5', ['a', 'b'], ['a'], Date.now() + 200);
  const later = tracker.wait('c5', ['a', 'b'], ['a'], Date.now() + 5000);
  const third = tracker.wait('c5', ['a', 'b', 'c'], ['a'], Date.now() + 5000);
  expect(tracker.waiting).toBe(3);
  expect(await soon).toEqual({ complete: false, applied: ['a'], pending: ['b'], superseded: [] });
  expect(tracker.waiting).toBe(2);
  await other.ack('b', ['c5']);
  expect(await later).toEqual({ complete: true, applied: ['a', 'b'], pending: [], superseded: [] });
  // The ack counts for the waiter that also needs c; it waits on.
  expect(tracker.waiting).toBe(1);
  await other.ack('c', ['c5']);
  expect((await third).complete).toBe(true);
  expect(tracker.waiting).toBe(0);
});

test('waiters with shuffled deadlines each time out at their own, never before', async () => {
  const now = Date.now();
  const offsets = [400, 100, 300, 200, 250, 150];
  const ended: { i: number; early: boolean }[] = [];
  await Promise.all(
    offsets.map((ms, i) => tracker.wait(`d-${i}`, ['a', 'b'], ['a'], now + ms).then((r) => {
      expect(r.complete).toBe(false);
      ended.push({ i, early: Date.now() < now + ms });
    })),
  );
  expect(ended.map((e) => e.i)).toEqual([1, 5, 3, 4, 2, 0]);
  expect(ended.some((e) => e.early)).toBe(false);
  expect(tracker.waiting).toBe(0);
});

test('thousands of waiters share one subscriber connection and are all released', async () => {
  const ids = Array.from({ length: 2000 }, (_, i) => `bulk-${i}`);
  const waits = ids.map((id) => tracker.wait(id, ['a', 'b'], ['a'], Date.now() + 10_000));
  expect(tracker.waiting).toBe(2000);
  await other.ack('b', ids);
  const results = await Promise.all(waits);
  expect(results.every((r) => r.complete)).toBe(true);
  expect(tracker.waiting).toBe(0);
});

test('a waiter whose announcement was lost is still released by the sweep of stored acks', async () => {
  const waiting = tracker.wait('c4', ['a', 'b'], ['a'], Date.now() + 5000);
  // Store the ack without announcing it, as if the pub/sub message had been dropped.
  await conns[0]?.hset(keys.ack('c4'), 'b', new Date().toISOString());
  // Complete: released by the sweep (at its deadline it would answer incomplete, 'b' pending).
  const res = await waiting;
  expect(res.complete).toBe(true);
});

test('an abandoned wait answers at once with what is known, and only its own waiter goes', async () => {
  let stop = (): void => undefined;
  // A deadline far past the test's own time limit: a waiter kept to it fails the test by that limit.
  const gone = tracker.wait('g1', ['a', 'b', 'c'], ['a'], Date.now() + 3_600_000, { abandoned: (s) => (stop = s) });
  const kept = tracker.wait('g1', ['a', 'b'], ['a'], Date.now() + 5000);
  await other.ack('c', ['g1']);
  await new Promise((r) => setTimeout(r, 100));
  expect(tracker.waiting).toBe(2);
  stop();
  expect(await gone).toEqual({ complete: false, applied: expect.arrayContaining(['a', 'c']), pending: ['b'], superseded: [] });
  expect(tracker.waiting).toBe(1);
  stop(); // a second call, or one after the answer, does nothing
  await other.ack('b', ['g1']);
  expect((await kept).complete).toBe(true);
  expect(tracker.waiting).toBe(0);

  // Reading another origin's Redis: the loop ends at its next turn.
  let stopReading = (): void => undefined;
  const reading = tracker.waitReading(conns[0] as Redis, 'g2', ['a', 'b'], ['a'], Date.now() + 3_600_000, { abandoned: (s) => (stopReading = s) });
  stopReading();
  expect(await reading).toEqual({ complete: false, applied: ['a'], pending: ['b'], superseded: [] });
}, 20_000);

test('a region no longer among the members (removed while a wait is under way) is no longer waited for: a wait every remaining member holds completes', async () => {
  // Its own tracker: the members it is told apply to every later wait of it.
  const sub = conn(true);
  const cmd = conn();
  await Promise.all([ready(sub), ready(cmd)]);
  const narrowed = new Tracker(cmd, sub, keys, 'a', pino({ level: 'silent' }));
  await narrowed.start();
  // 'c' never acks and the deadlines are far past the test's own time limit: a wait kept for 'c' fails the test by that limit.
  const held = narrowed.wait('n1', ['a', 'b', 'c'], ['a'], Date.now() + 3_600_000);
  const notYet = narrowed.wait('n2', ['a', 'b', 'c'], ['a'], Date.now() + 3_600_000);
  // Reading another origin's Redis (here its own): the members told count at its next read.
  const reading = narrowed.waitReading(cmd, 'n3', ['a', 'b', 'c'], ['a'], Date.now() + 3_600_000);
  await other.ack('b', ['n1', 'n3']);
  await other.ack('c', ['n2']);
  await new Promise((r) => setTimeout(r, 300));
  expect(narrowed.waiting).toBe(2);
  narrowed.narrow(['a', 'b']);
  const done = { complete: true, applied: ['a', 'b'], pending: [], superseded: [] };
  expect(await held).toEqual(done);
  expect(await reading).toEqual(done);
  // A wait a remaining member still lacks keeps waiting, for it only.
  expect(narrowed.waiting).toBe(1);
  await other.ack('b', ['n2']);
  expect(await notYet).toEqual(done);
}, 20_000);

describe('applied and superseded acks', () => {
  const winner = { table: 'infisical_saml_configs', key: 'k1', version: '000000000001000.000000.europe-belgium', originRegion: 'europe-belgium' };

  test('a superseded ack answers the waiter at once, naming the winner, without waiting for the others', async () => {
    // 'c' never acks and the deadline is far past the test's own time limit: a waiter that waited for either
    // fails the test by that limit.
    const waiting = tracker.wait('s1', ['a', 'b', 'c'], ['a'], Date.now() + 3_600_000);
    await other.ack('b', ['s1'], { outcomes: new Map([['s1', { outcome: 'superseded' as const, winner }]]) });
    const res = await waiting;
    expect(res).toEqual({ complete: false, applied: ['a'], pending: ['c'], superseded: [{ region: 'b', winner }] });
    expect(tracker.waiting).toBe(0);
  }, 20_000);

  test('a superseded ack stored before the waiter registered is found by its first check', async () => {
    await other.ack('b', ['s2'], { outcomes: new Map([['s2', { outcome: 'superseded' as const, winner }]]) });
    const res = await tracker.wait('s2', ['a', 'b'], ['a'], Date.now() + 5000);
    expect(res.superseded).toEqual([{ region: 'b', winner }]);
  });

  test('the origin records the organization beside the acks; it is not taken for a region', async () => {
    await other.ack('a', ['s3'], { orgs: new Map([['s3', 'org-1']]) });
    const stored = await tracker.status('s3');
    expect(stored['~org']).toBe('org-1');
    expect(parseAck(stored.a ?? '')?.outcome).toBe('applied');
    const res = await tracker.wait('s3', ['a'], [], Date.now() + 2000);
    expect(res).toEqual({ complete: true, applied: ['a'], pending: [], superseded: [] });
  });

  test('ack values parse in every form, older plain times included', () => {
    expect(parseAck('2026-11-30T00:00:00.000Z')).toEqual({ outcome: 'applied', at: '2026-11-30T00:00:00.000Z' });
    expect(parseAck('applied@2026-11-30T00:00:00.000Z')).toEqual({ outcome: 'applied', at: '2026-11-30T00:00:00.000Z' });
    expect(parseAck(`superseded:t:k:${winner.version}@2026-11-30T00:00:00.000Z`)).toEqual({
      outcome: 'superseded', at: '2026-11-30T00:00:00.000Z', winner: { ...winner, table: 't', key: 'k' },
    });
    expect(parseAck('parked 2026-11-30T00:00:00.000Z')).toBeNull();
  });
});

test('acks are recorded in one script per batch: each change\'s field, its organization and TTL, then one announcement; also in a Redis that has not seen the script', async () => {
  const cmd = conn();
  const listener = conn(true);
  // Command connections refuse commands until they are ready (no offline queue).
  await ready(cmd);
  const heard: string[] = [];
  await ready(listener);
  await listener.subscribe(keys.ackChannel('a'));
  listener.on('message', (_ch: string, m: string) => heard.push(m));
  // A Redis restarted since (or never asked): the script is not cached there, and is sent whole.
  await cmd.script('FLUSH');
  await tracker.ack('d', ['script-1', 'script-2'], { orgs: new Map([['script-1', '01a20904-0000-7000-8000-00000000000f']]) });
  expect(await cmd.hgetall(keys.ack('script-1'))).toEqual({ d: expect.stringMatching(/^applied@/), '~org': '01a20904-0000-7000-8000-00000000000f' });
  expect(await cmd.hgetall(keys.ack('script-2'))).toEqual({ d: expect.stringMatching(/^applied@/) });
  for (const id of ['script-1', 'script-2']) {
    const ttl = await cmd.ttl(keys.ack(id));
    expect(ttl).toBeGreaterThan(3600);
  }
  const until = Date.now() + 2000;
  while (heard.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  expect(heard.map((m) => JSON.parse(m))).toEqual([{ region: 'd', ids: ['script-1', 'script-2'] }]);
  // Cached now: the next batch runs by its hash.
  await tracker.ack('e', ['script-1']);
  expect(await cmd.hget(keys.ack('script-1'), 'e')).toMatch(/^applied@/);
  await listener.unsubscribe(keys.ackChannel('a')); // the first test counts this channel's subscribers
});

test('an ack is announced on its origin\'s channel only: where regions share a Redis, it wakes no other region', async () => {
  const cmd = conn();
  await ready(cmd);
  const heard: Record<string, string[]> = {};
  const listeners = await Promise.all(['a', 'b'].map(async (origin) => {
    const l = conn(true);
    await ready(l);
    await l.subscribe(keys.ackChannel(origin), keys.sharedAckChannel);
    l.on('message', (ch: string, m: string) => (heard[`${origin} ${ch}`] ??= []).push(m));
    return l;
  }));
  await recordAcks(cmd, keys, tracker, { origin: 'b', region: 'c' }, ['from-b']);
  const until = Date.now() + 2000;
  while (!heard[`b ${keys.ackChannel('b')}`] && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 100)); // anything heard elsewhere would be here by now
  expect(heard).toEqual({ [`b ${keys.ackChannel('b')}`]: [JSON.stringify({ region: 'c', ids: ['from-b'] })] });
  for (const l of listeners) await l.unsubscribe();
});

test('a waiter on a change that may be another region\'s hears that origin\'s channel while it waits; only while one waits', async () => {
  const cmd = conn();
  await ready(cmd);
  // Announced only (nothing stored, and before the 1 s sweep): only the announcement can release them.
  const anyOrigin = tracker.wait('foreign-1', ['a', 'b'], ['a'], Date.now() + 900, { anyOrigin: true });
  await new Promise((r) => setTimeout(r, 300)); // its subscription in place (more than enough on a loaded host)
  await cmd.publish(keys.ackChannel('b'), JSON.stringify({ region: 'b', ids: ['foreign-1'] }));
  expect(await anyOrigin).toMatchObject({ complete: true, pending: [] });
  // The last such waiter gone, the pattern goes too: another origin's announcement reaches no one here.
  const later = tracker.wait('foreign-3', ['a', 'b'], ['a'], Date.now() + 400);
  await new Promise((r) => setTimeout(r, 100));
  await cmd.publish(keys.ackChannel('b'), JSON.stringify({ region: 'b', ids: ['foreign-3'] }));
  expect(await later).toMatchObject({ complete: false });
});

test('an ack announced on the shared channel (a region still running the previous version) releases a waiter', async () => {
  const cmd = conn();
  await ready(cmd);
  // Announced only (nothing stored, and before the 1 s sweep): only the announcement can release it.
  const waiting = tracker.wait('legacy-1', ['a', 'b'], ['a'], Date.now() + 900);
  await new Promise((r) => setTimeout(r, 50));
  await cmd.publish(keys.sharedAckChannel, JSON.stringify({ region: 'b', ids: ['legacy-1'] }));
  expect(await waiting).toMatchObject({ complete: true, pending: [] });
});

test('a region announced as applied and later announced as superseded still counts as holding the change: the wait completes, nothing lost', async () => {
  // A region's first judgement stands in the waiter's tally too, not only in the stored acks (the ack script
  // keeps an earlier "applied" ack: ack-first-judgement.test.ts). An "applied" announcement may be all there
  // is of the first judgement (its stored ack lost, or written by a region of a version without the script);
  // a later "superseded" one of the same region must not answer the waiter as lost (an all_regions write
  // answered 2xx, and held, would be replayed as a 409).
  const cmd = conn();
  await ready(cmd);
  const id = 'judged-twice';
  const winner = { table: 'organizations', key: 'k1', version: '000000000002000.000000.asia-japan', originRegion: 'asia-japan' };
  const waiting = tracker.wait(id, ['a', 'b', 'c'], ['a'], Date.now() + 10_000);
  await new Promise((r) => setTimeout(r, 50)); // registered, and its first check of the stored acks done
  // Region b's first judgement, heard on the origin's channel only (no stored ack, so the script keeps nothing).
  await cmd.publish(keys.ackChannel('a'), JSON.stringify({ region: 'b', ids: [id] }));
  // Its second judgement, after a newer state of the row arrived: stored and announced as lost.
  await recordAcks(cmd, keys, tracker, { origin: 'a', region: 'b' }, [id], { outcomes: new Map([[id, { outcome: 'superseded' as const, winner }]]) });
  expect(parseAck((await tracker.status(id)).b ?? '')?.outcome).toBe('superseded');
  await recordAcks(cmd, keys, tracker, { origin: 'a', region: 'c' }, [id]);
  expect(await waiting).toEqual({ complete: true, applied: ['a', 'b', 'c'], pending: [], superseded: [] });
});

/** `p`'s answer, or 'still waiting' after `ms` (the bound only tells an answer from a hang). */
async function answerOf(p: Promise<WaitResult>, ms = 10_000): Promise<WaitResult | 'still waiting'> {
  let fallback: NodeJS.Timeout | undefined;
  const hung = new Promise<'still waiting'>((resolve) => (fallback = setTimeout(() => resolve('still waiting'), ms)));
  try {
    return await Promise.race([p, hung]);
  } finally {
    clearTimeout(fallback);
  }
}

test('a waiter answered and then abandoned (its client closes after the 408) takes no other waiter of its change with it', async () => {
  // Three replays of one request wait on its change; the first times out. The 'close' of its answered
  // response then calls its stop(), which must find nothing to do: the two others still wait, and both are
  // answered when the region acks.
  let stopFirst = (): void => undefined;
  const first = tracker.wait('answered-then-gone', ['a', 'b'], ['a'], Date.now() + 200, { abandoned: (s) => (stopFirst = s) });
  const second = tracker.wait('answered-then-gone', ['a', 'b'], ['a'], Date.now() + 60_000);
  const third = tracker.wait('answered-then-gone', ['a', 'b'], ['a'], Date.now() + 60_000);
  expect(await first).toEqual({ complete: false, applied: ['a'], pending: ['b'], superseded: [] });
  stopFirst();
  expect(tracker.waiting).toBe(2);
  await tracker.ack('b', ['answered-then-gone']);
  expect(await answerOf(second)).toEqual({ complete: true, applied: ['a', 'b'], pending: [], superseded: [] });
  expect(await answerOf(third)).toEqual({ complete: true, applied: ['a', 'b'], pending: [], superseded: [] });
  expect(tracker.waiting).toBe(0);
}, 30_000);

test('a region given as already holding the change counts only if the wait needs it: the change is not complete while a needed region lacks it', async () => {
  // 'a' holds the change but is not among the regions waited for (b and c): b's ack alone completes nothing.
  const waiting = tracker.wait('not-needed', ['b', 'c'], ['a'], Date.now() + 1000);
  await tracker.ack('b', ['not-needed']);
  expect(await waiting).toEqual({ complete: false, applied: ['b'], pending: ['c'], superseded: [] });
});

describe('the signed announcement form (written by a later version; readers accept it from this one on)', () => {
  const auth = new EventAuth(parseReplicationKeys(`k1:${'a'.repeat(32)}`));

  const winner = { table: 'organizations', key: 'k1', version: '000000000002000.000000.asia-japan', originRegion: 'asia-japan' };
  const superseded = (at: string) => formatAck({ outcome: 'superseded', winner }, at);

  /**
   * Waits on `id` (regions a and b, a's own ack in hand; announced only, nothing stored, and answered before
   * the 1 s sweep, so only the announcement can release it), publishes `message` on a's channel, answers the wait.
   */
  async function waitAnnounced(id: string, message: string): Promise<WaitResult> {
    const cmd = conn();
    await ready(cmd);
    const waiting = tracker.wait(id, ['a', 'b'], ['a'], Date.now() + 900);
    await new Promise((r) => setTimeout(r, 50));
    await cmd.publish(keys.ackChannel('a'), message);
    return waiting;
  }

  test('a signed announcement releases a waiter', async () => {
    const answer = await waitAnnounced('signed-1', signAnnouncement(auth, JSON.stringify({ region: 'b', ids: ['signed-1'] })));
    expect(answer).toEqual({ complete: true, applied: ['a', 'b'], pending: [], superseded: [] });
  });

  test('its lost values are signed values: the waiter answers superseded with the winner as recorded', async () => {
    const id = 'signed-lost';
    const lost = signAck(auth, id, 'b', superseded('2026-12-05T00:00:00.000Z'));
    const answer = await waitAnnounced(id, signAnnouncement(auth, JSON.stringify({ region: 'b', ids: [id], lost: { [id]: lost } })));
    expect(answer).toEqual({ complete: false, applied: ['a'], pending: [], superseded: [{ region: 'b', winner }] });
  });

  test('an id on its kept line (an applied ack the ack script kept over a superseded one) counts as applied, not lost', async () => {
    const id = 'signed-kept';
    const lost = signAck(auth, id, 'b', superseded('2026-12-05T00:00:01.000Z'));
    const kept = signAck(auth, id, 'b', 'applied@2026-12-05T00:00:00.000Z');
    const body = JSON.stringify({ region: 'b', ids: [id], lost: { [id]: lost } });
    const answer = await waitAnnounced(id, `${signAnnouncement(auth, body)}\n${JSON.stringify({ [id]: kept })}`);
    expect(answer).toEqual({ complete: true, applied: ['a', 'b'], pending: [], superseded: [] });
  });

  test('a "kept" member inside plain JSON is no kept line: the lost value stands', async () => {
    const id = 'plain-kept';
    const lost = superseded('2026-12-05T00:00:01.000Z');
    const plain = JSON.stringify({ region: 'b', ids: [id], lost: { [id]: lost }, kept: { [id]: 'applied@2026-12-05T00:00:00.000Z' } });
    expect(await waitAnnounced(id, plain)).toEqual({ complete: false, applied: ['a'], pending: [], superseded: [{ region: 'b', winner }] });
  });
});

describe('ackSignatures require: only acks and announcements whose signature holds count', () => {
  const auth = new EventAuth(parseReplicationKeys(`k1:${'a'.repeat(32)}`));
  // The same key id under another secret (a bad signature), and a key id not known here.
  const forger = new EventAuth(parseReplicationKeys(`k1:${'f'.repeat(32)}`));
  const stranger = new EventAuth(parseReplicationKeys(`k9:${'a'.repeat(32)}`));
  const at = '2026-12-05T00:00:00.000Z';
  const applied = `applied@${at}`;
  const winner = { table: 'organizations', key: 'k1', version: '000000000002000.000000.asia-japan', originRegion: 'asia-japan' };
  let strict: Tracker;
  let signing: AckSigning;
  let cmd: Redis;

  beforeAll(async () => {
    const sub = conn(true);
    cmd = conn();
    await Promise.all([ready(sub), ready(cmd)]);
    signing = new AckSigning(auth, 'require');
    // Region s: a channel of its own; a 100 ms sweep, so the stored acks are read again during each wait.
    strict = new Tracker(cmd, sub, keys, 's', pino({ level: 'silent' }), 100, undefined, signing);
    await strict.start();
  });

  test('a stored applied ack counts only when signed: unsigned, badly signed and unknown-key ones leave the waiter pending to its deadline; signed ones complete it', async () => {
    const id = 'req-stored';
    await cmd.hset(keys.ack(id), 'b', applied, 'c', signAck(forger, id, 'c', applied), 'd', signAck(stranger, id, 'd', applied));
    const before = { ...signing.unverified };
    const forged = await strict.wait(id, ['s', 'b', 'c', 'd'], ['s'], Date.now() + 400);
    expect(forged).toEqual({ complete: false, applied: ['s'], pending: ['b', 'c', 'd'], superseded: [] });
    expect(signing.unverified.unsigned).toBeGreaterThan(before.unsigned);
    expect(signing.unverified['bad-signature']).toBeGreaterThan(before['bad-signature']);
    expect(signing.unverified['unknown-key']).toBeGreaterThan(before['unknown-key']);
    await cmd.hset(keys.ack(id), ...['b', 'c', 'd'].flatMap((r) => [r, signAck(auth, id, r, applied)]));
    expect((await strict.wait(id, ['s', 'b', 'c', 'd'], ['s'], Date.now() + 5000)).complete).toBe(true);
  });

  test('an unsigned or badly signed announcement releases no waiter; a signed one does', async () => {
    const id = 'req-announced';
    const body = JSON.stringify({ region: 'b', ids: [id] });
    const waiting = strict.wait(id, ['s', 'b'], ['s'], Date.now() + 400);
    await cmd.publish(keys.ackChannel('s'), body);
    await cmd.publish(keys.ackChannel('s'), signAnnouncement(forger, body));
    expect(await waiting).toEqual({ complete: false, applied: ['s'], pending: ['b'], superseded: [] });
    const again = strict.wait(id, ['s', 'b'], ['s'], Date.now() + 5000);
    await cmd.publish(keys.ackChannel('s'), signAnnouncement(auth, body));
    expect((await again).complete).toBe(true);
  });

  test('a value on a signed announcement\'s kept line counts only when signed for its change and the announcing region', async () => {
    const announce = async (id: string, kept: string, holds = false) => {
      const lost = signAck(auth, id, 'b', formatAck({ outcome: 'superseded', winner }, at));
      const body = JSON.stringify({ region: 'b', ids: [id], lost: { [id]: lost } });
      const waiting = strict.wait(id, ['s', 'b'], ['s'], Date.now() + 5000);
      // A kept value that does not verify: what the region's repair leaves in its place (its superseded
      // judgement), which the waiter may read before or after the announcement (either way it answers the
      // same). One that verifies: nothing stored, so only the announcement's kept line can complete the wait.
      if (!holds) await cmd.hset(keys.ack(id), 'b', lost);
      await cmd.publish(keys.ackChannel('s'), `${signAnnouncement(auth, body)}\n${JSON.stringify({ [id]: kept })}`);
      return waiting;
    };
    // Unsigned, and signed for another region: the change lost there.
    expect((await announce('req-kept-1', applied)).superseded).toEqual([{ region: 'b', winner }]);
    expect((await announce('req-kept-2', signAck(auth, 'req-kept-2', 'c', applied))).superseded).toEqual([{ region: 'b', winner }]);
    expect(await announce('req-kept-3', signAck(auth, 'req-kept-3', 'b', applied), true)).toEqual({ complete: true, applied: ['s', 'b'], pending: [], superseded: [] });
  });

  test('a signed announcement published again without its kept line (by a Redis writer) answers no 409: its lost value is read back from the stored record', async () => {
    const id = 'req-stripped';
    const lost = signAck(auth, id, 'b', formatAck({ outcome: 'superseded', winner }, at));
    const signed = signAnnouncement(auth, JSON.stringify({ region: 'b', ids: [id], lost: { [id]: lost } }));
    const kept = signAck(auth, id, 'b', applied);
    const waiting = strict.wait(id, ['s', 'b'], ['s'], Date.now() + 5000);
    // The stripped copy reaches the waiter before it has read b's stored applied ack (the race a writer wins by
    // publishing it over and over); then the announcement as the ack script published it, after storing.
    await cmd.publish(keys.ackChannel('s'), signed);
    await cmd.hset(keys.ack(id), 'b', kept);
    await cmd.publish(keys.ackChannel('s'), `${signed}\n${JSON.stringify({ [id]: kept })}`);
    expect(await waiting).toEqual({ complete: true, applied: ['s', 'b'], pending: [], superseded: [] });
  });

  test('waitReading (acks in another region\'s Redis) counts only signed ones', async () => {
    const id = 'req-read';
    await cmd.hset(keys.ack(id), 'b', applied);
    expect((await strict.waitReading(cmd, id, ['s', 'b'], ['s'], Date.now() + 300)).pending).toEqual(['b']);
    await cmd.hset(keys.ack(id), 'b', signAck(auth, id, 'b', applied));
    expect((await strict.waitReading(cmd, id, ['s', 'b'], ['s'], Date.now() + 5000)).complete).toBe(true);
  });

  test('in sign mode (a rolling upgrade) unsigned acks and announcements still count, and are counted', async () => {
    const sub = conn(true);
    const c = conn();
    await Promise.all([ready(sub), ready(c)]);
    const lenient = new AckSigning(auth, 'sign');
    const t = new Tracker(c, sub, keys, 'g', pino({ level: 'silent' }), 60_000, undefined, lenient);
    await t.start();
    await c.hset(keys.ack('sign-stored'), 'b', applied);
    expect((await t.wait('sign-stored', ['g', 'b'], ['g'], Date.now() + 5000)).complete).toBe(true);
    expect(lenient.unverified).toEqual({ unsigned: 1, 'bad-signature': 0, 'unknown-key': 0 });
    const waiting = t.wait('sign-announced', ['g', 'b'], ['g'], Date.now() + 5000);
    await c.publish(keys.ackChannel('g'), signAnnouncement(forger, JSON.stringify({ region: 'b', ids: ['sign-announced'] })));
    expect((await waiting).complete).toBe(true);
    expect(lenient.unverified).toEqual({ unsigned: 1, 'bad-signature': 1, 'unknown-key': 0 });
  });
});
