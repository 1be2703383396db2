/**
 * A region's first judgement of a change stands in the waiter's tally too, not only in the stored acks.
 * The ack script keeps an earlier "applied" ack in Redis (see ack-first-judgement.test.ts); but a waiter also
 * learns from announcements, and an "applied" announcement may be all there is of the first judgement (its
 * stored ack lost, or written by a region still running a version without the script). A later
 * "superseded" judgement of the same region, stored and announced, must then not answer the waiter as lost
 * (an all_regions write answered 2xx, and held, would be replayed as a 409).
 */
import pino from 'pino';
import { createRedis, replicationKeys, type Redis } from '../../src/redis';
import { parseAck, recordAcks, Tracker } from '../../src/replication/tracker';
import { REDIS_URL, deleteKeys, uniqueName } from '../support/env';

const prefix = `${uniqueName('tracker-judgement')}:`;
const keys = replicationKeys(prefix);
const conns: Redis[] = [];
const conn = (sub = false) => {
  const c = createRedis(REDIS_URL, sub ? 'test:sub' : 'test:cmd', { queueWhileOffline: sub });
  conns.push(c);
  return c;
};
const ready = (c: Redis) => new Promise((resolve) => (c.status === 'ready' ? resolve(undefined) : c.once('ready', resolve)));

let tracker: Tracker;
let cmd: Redis;
beforeAll(async () => {
  const sub = conn(true);
  tracker = new Tracker(conn(), sub, keys, 'a', pino({ level: 'silent' }));
  cmd = conn();
  await Promise.all([ready(sub), ready(cmd)]);
  await tracker.start();
});
afterAll(async () => {
  for (const c of conns) c.disconnect();
  await deleteKeys(prefix);
});

const winner = { table: 'organizations', key: 'k1', version: '000000000002000.000000.asia-japan', originRegion: 'asia-japan' };

test('a region announced as applied and later announced as superseded still counts as holding the change: the wait completes, nothing lost', async () => {
  const id = 'judged-twice';
  const waiting = tracker.wait(id, ['a', 'b', 'c'], ['a'], Date.now() + 10_000);
  await new Promise((r) => setTimeout(r, 50)); // registered, and its first check of the stored acks done
  // Region b's first judgement, heard on the origin's channel only (no stored ack, so the script keeps nothing).
  await cmd.publish(keys.ackChannel('a'), JSON.stringify({ region: 'b', ids: [id] }));
  // Its second judgement, after a newer state of the row arrived: stored and announced as lost.
  await recordAcks(cmd, keys, { origin: 'a', region: 'b' }, [id], { outcomes: new Map([[id, { outcome: 'superseded' as const, winner }]]) });
  expect(parseAck((await tracker.status(id)).b ?? '')?.outcome).toBe('superseded');
  await recordAcks(cmd, keys, { origin: 'a', region: 'c' }, [id]);
  expect(await waiting).toEqual({ complete: true, applied: ['a', 'b', 'c'], pending: [], superseded: [] });
  expect(tracker.waiting).toBe(0);
});
