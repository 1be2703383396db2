/**
 * More of the tracker's waiters (real Redis, as tracker.test.ts): a waiter answered and then abandoned takes
 * no other waiter of its change with it, and a region given as already holding the change counts only when
 * the wait needs it.
 */
import pino from 'pino';
import { createRedis, replicationKeys, type Redis } from '../../src/redis';
import { Tracker, type WaitResult } from '../../src/replication/tracker';
import { REDIS_URL, deleteKeys, uniqueName } from '../support/env';

const prefix = `${uniqueName('tracker_waiters')}:`;
const keys = replicationKeys(prefix);
const conns: Redis[] = [];
const conn = (sub = false) => {
  const c = createRedis(REDIS_URL, sub ? 'test:sub' : 'test:cmd', { queueWhileOffline: sub });
  conns.push(c);
  return c;
};
const ready = (c: Redis) => new Promise((resolve) => (c.status === 'ready' ? resolve(undefined) : c.once('ready', resolve)));
let tracker: Tracker;

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

beforeAll(async () => {
  tracker = new Tracker(conn(), conn(true), keys, 'a', pino({ level: 'silent' }));
  await tracker.start();
  await Promise.all(conns.map(ready));
});
afterAll(async () => {
  for (const c of conns) c.disconnect();
  await deleteKeys(prefix);
});

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
