/**
 * The origin's relay tells an inbox entry lost with its Redis (delivered again) from one trimmed by the
 * inbox's cap (the region needs a re-seed) by the inbox's birth mark: the first id of the inbox's current
 * incarnation. A Redis that lost its data lost the mark too; the applier recreates the inbox empty
 * (MKSTREAM), and the mark must not be taken from an empty inbox, or every entry the old incarnation lost
 * looks trimmed. Here with a Redis server of the test's own (its data lost by restarting it) and the
 * relay's database calls recorded.
 */
import Redis from 'ioredis';
import { createLogger } from '../../src/logger';
import { replicationKeys } from '../../src/redis';
import type { Db } from '../../src/db/client';
import type { Deliverer } from '../../src/replication/delivery';
import type { EventAuth, SignedEvent } from '../../src/replication/event-auth';
import { RedisLinks } from '../../src/replication/links';
import { readMembers, writeMember } from '../../src/replication/member-record';
import { OutboxRelay } from '../../src/replication/relay';
import type { DeliveryConfirmer } from '../../src/replication/relay-confirm';
import type { Tracker } from '../../src/replication/tracker';
import { ownRedis, type OwnRedis } from '../support/redis-server';

let server: OwnRedis;
beforeAll(async () => {
  server = await ownRedis();
  await server.start();
});
afterAll(() => server.kill());

// The deliveries' records go straight to the pool under the client (recordDeliveries): the fake client
// carries a fake pool that records them with the other statements.
jest.mock('../../src/db/client', () => ({
  ...jest.requireActual('../../src/db/client'),
  poolOf: (db: { pool: unknown }) => db.pool,
}));

const keys = replicationKeys('relaylost:');
const stream = keys.inbox('c');

interface Rig {
  redis: Redis;
  relay: OutboxRelay;
  statements: string[];
  redelivered: string[];
  redeliverLost(rows: { change_id: string; stream_id: string }[]): Promise<void>;
  /** The next delivery fails (a Redis that just came back times out), once. */
  failNextDelivery(): void;
  close(): void;
}

/** `ownUrl`: region a's own Redis, when not c's (the rig's `redis` is c's). */
function rig(ownUrl?: string): Rig {
  const redis = new Redis(server.url);
  const own = ownUrl ? new Redis(ownUrl) : redis;
  const links = new RedisLinks({ region: 'a', own, name: 'relaylost', defaultUrl: server.url, configured: new Map([['a', ownUrl ?? server.url], ['c', server.url]]) });
  const statements: string[] = [];
  const redelivered: string[] = [];
  const record = (sql: string, args: unknown[]) => void statements.push(`${sql.trim().split(/\s+/).slice(0, 2).join(' ')} ${JSON.stringify(args[0])}`);
  const db = {
    $executeRawUnsafe: async (sql: string, ...args: unknown[]) => (record(sql, args), 0),
    pool: { query: async (q: { text: string; values: unknown[] }) => (record(q.text, q.values), { rows: [], rowCount: 0 }) },
    $queryRawUnsafe: async (_sql: string, ids: string[]) => ids.map((id) => ({ change_id: id, event: { changeId: id } })),
  } as unknown as Db;
  let failNext = false;
  const deliverer = {
    deliver: async (_links: unknown, dest: string, events: SignedEvent[]) => {
      if (failNext) {
        failNext = false;
        throw new Error('Command timed out');
      }
      redelivered.push(...events.map((e) => e.changeId));
      return Promise.all(events.map((e) => redis.xadd(keys.inbox(dest), '*', 'e', e.changeId) as Promise<string>));
    },
  } as unknown as Deliverer;
  const relay = new OutboxRelay({
    db,
    links,
    keys,
    tracker: {} as Tracker,
    region: 'a',
    regions: ['a', 'c'],
    log: createLogger({ level: 'silent' }),
    auth: {} as EventAuth,
    deliverer,
  });
  const redeliverLost = (rows: { change_id: string; stream_id: string }[]) =>
    (relay as unknown as { confirmer: { redeliverLost(dest: string, r: typeof rows): Promise<void> } }).confirmer.redeliverLost('c', rows);
  return {
    redis,
    relay,
    statements,
    redelivered,
    redeliverLost,
    failNextDelivery: () => void (failNext = true),
    close: () => {
      links.disconnect();
      redis.disconnect();
      own.disconnect();
    },
  };
}

/** Runs `fn` with a rig of its own, closed after it. */
async function withRig(fn: (r: Rig) => Promise<void>, ownUrl?: string): Promise<void> {
  const r = rig(ownUrl);
  try {
    await fn(r);
  } finally {
    r.close();
  }
}

/** Three entries delivered into c's inbox and never acked; the origin's trim marks the inbox's birth. */
async function deliveredThree(r: Rig) {
  await r.redis.xgroup('CREATE', stream, 'c', '0', 'MKSTREAM');
  const rows: { change_id: string; stream_id: string }[] = [];
  for (let i = 0; i < 3; i++) rows.push({ change_id: `change-${i}`, stream_id: (await r.redis.xadd(stream, '*', 'e', `old ${i}`)) as string });
  await r.relay.trim(true);
  expect(await r.redis.get(keys.inboxBorn('c'))).toBe(rows[0]?.stream_id);
  return rows;
}

/** From an empty server: c active, three entries delivered into its inbox and never acked. */
async function activeWithThree(r: Rig) {
  await r.redis.flushall(); // the test's own server
  await writeMember(r.redis, keys, 'c', { state: 'active' });
  return deliveredThree(r);
}

/** c's Redis restarts without its data; c registers again and its applier recreates its group, empty. */
async function lostAndRecreated(r: Rig) {
  await server.kill();
  await server.start();
  for (let i = 0; i < 100 && r.redis.status !== 'ready'; i++) await new Promise((res) => setTimeout(res, 50));
  await writeMember(r.redis, keys, 'c', { state: 'active' });
  await r.redis.xgroup('CREATE', stream, 'c', '0', 'MKSTREAM');
}

test('entries an inbox lost with its Redis are delivered again even when a trim ran while the recreated inbox was empty', () =>
  withRig(async (r) => {
    const rows = await deliveredThree(r);
    await lostAndRecreated(r);
    // An origin's periodic trim while the new inbox is still empty: no birth mark from it.
    await r.relay.trim(true);
    expect(await r.redis.get(keys.inboxBorn('c'))).toBeNull();
    // The deliveries go stale over two cycles of the relay: the first redelivery becomes the inbox's first
    // entry (its birth), and the later one is still taken for lost, not for trimmed.
    await r.redeliverLost(rows.slice(0, 2));
    await r.redeliverLost(rows.slice(2));
    expect(r.redelivered).toEqual(['change-0', 'change-1', 'change-2']);
    expect(r.relay.trimmedUnconfirmed).toBe(0);
    expect((await readMembers(r.redis, keys)).members.get('c')?.state).toBe('active');
  }));

test('an entry trimmed by the cap below the inbox\'s birth is still told apart (confirmed, the region marked for a re-seed)', () =>
  withRig(async (r) => {
    const rows = await activeWithThree(r);
    // The cap trims the first two (never acked); the third is still there.
    await r.redis.xtrim(stream, 'MINID', rows[2]?.stream_id as string);
    await r.redeliverLost(rows);
    expect(r.redelivered).toEqual([]);
    expect(r.relay.trimmedUnconfirmed).toBe(2);
    expect((await readMembers(r.redis, keys)).members.get('c')?.state).toBe('joining');
  }));

test('an entry gone from the inbox because its region acked it meanwhile is confirmed, neither redelivered nor taken for trimmed', () =>
  withRig(async (r) => {
    const rows = await activeWithThree(r);
    // c applied and acked the first two after the relay read the acks; a trim removed them.
    for (const row of rows.slice(0, 2)) await r.redis.hset(keys.ack(row.change_id), 'c', `applied@${new Date().toISOString()}`);
    await r.redis.xtrim(stream, 'MINID', rows[2]?.stream_id as string);
    await r.redeliverLost(rows);
    expect(r.redelivered).toEqual([]);
    expect(r.relay.trimmedUnconfirmed).toBe(0);
    expect((await readMembers(r.redis, keys)).members.get('c')?.state).toBe('active');
    expect(r.statements.some((st) => st.startsWith('UPDATE replication_deliveries') && st.includes('change-0') && st.includes('change-1'))).toBe(true);
  }));

test('an entry lost from the middle of an inbox (a Redis restarted from an append-only file a second behind, with entries added since) is delivered again', () =>
  withRig(async (r) => {
    const rows = await activeWithThree(r);
    // The middle entry is gone while entries before and after it remain: the inbox's bounds still span it.
    await r.redis.xdel(stream, rows[1]?.stream_id as string);
    await r.redis.xadd(stream, '*', 'e', 'written since');
    await r.redeliverLost(rows);
    expect(r.redelivered).toEqual(['change-1']);
    expect(r.relay.trimmedUnconfirmed).toBe(0);
    expect((await readMembers(r.redis, keys)).members.get('c')?.state).toBe('active');
  }));

/** c's applier reads every new entry of its inbox and acks it (applied, or refused and dead-lettered). */
async function readAndAck(r: Rig): Promise<string[]> {
  const res = (await r.redis.xreadgroup('GROUP', 'c', 'c-1', 'COUNT', 100, 'STREAMS', stream, '>')) as [string, [string, string[]][]][] | null;
  const ids = (res?.[0]?.[1] ?? []).map((e) => e[0]);
  if (ids.length) await r.redis.xack(stream, 'c', ...ids);
  return ids;
}

/** Exactly these changes were delivered again; none counted as trimmed, and c is still active. */
async function expectDeliveredAgain(r: Rig, changeIds: string[]): Promise<void> {
  expect(r.redelivered).toEqual(changeIds);
  expect(r.relay.trimmedUnconfirmed).toBe(0);
  expect((await readMembers(r.redis, keys)).members.get('c')?.state).toBe('active');
}

/**
 * c active and caught up; then a delivery lost at the tail of its inbox: Redis comes back without it,
 * entries arrive since, c reads and acks them all, and the routine trim removes what c has read, so the
 * lost entry's id is below the oldest entry left.
 */
async function lostAtTheTail(r: Rig, changeId: string): Promise<{ change_id: string; stream_id: string }> {
  await activeWithThree(r);
  await readAndAck(r);
  const lost = { change_id: changeId, stream_id: (await r.redis.xadd(stream, '*', 'e', 'tail')) as string };
  await r.redis.xdel(stream, lost.stream_id);
  await r.redis.xadd(stream, '*', 'e', 'written since');
  await readAndAck(r);
  await r.redis.xadd(stream, '*', 'e', 'unread');
  await r.relay.trim(true);
  return lost;
}

test('an entry lost at the tail of an inbox (an append-only file a second behind) is delivered again, though a routine trim since leaves it before the oldest entry', () =>
  withRig(async (r) => {
    const lost = await lostAtTheTail(r, 'change-tail');
    await r.redeliverLost([lost]);
    await expectDeliveredAgain(r, ['change-tail']);
  }));

test('an entry c read and refused (dead-lettered, acked in its group) is delivered again once; refused again, it is taken for what it is', () =>
  withRig(async (r) => {
    await activeWithThree(r);
    await readAndAck(r);
    const refused = { change_id: 'change-refused', stream_id: (await r.redis.xadd(stream, '*', 'e', 'refused')) as string };
    const refuseAndTrim = async () => {
      await readAndAck(r);
      await r.redis.xadd(stream, '*', 'e', 'applied since');
      await readAndAck(r);
      await r.redis.xadd(stream, '*', 'e', 'unread');
      await r.relay.trim(true);
    };
    await refuseAndTrim();
    await r.redeliverLost([refused]);
    expect(r.redelivered).toEqual(['change-refused']);
    expect(r.relay.trimmedUnconfirmed).toBe(0);
    // Its new entry is the last one (the fake deliverer's); refused again and trimmed.
    const again = { ...refused, stream_id: (await r.redis.xrevrange(stream, '+', '-', 'COUNT', 1))[0]?.[0] as string };
    await refuseAndTrim();
    await r.redeliverLost([again]);
    expect(r.redelivered).toEqual(['change-refused']);
    expect(r.relay.trimmedUnconfirmed).toBe(1);
    expect((await readMembers(r.redis, keys)).members.get('c')?.state).toBe('joining');
  }));

test('a delivery again that failed is tried again: it does not count as the one delivery again', () =>
  withRig(async (r) => {
    const lost = await lostAtTheTail(r, 'change-retried');
    r.failNextDelivery();
    await expect(r.redeliverLost([lost])).rejects.toThrow(/timed out/);
    // Next round: the same delivery (its record unchanged) is still missing, and is delivered again.
    await r.redeliverLost([lost]);
    await expectDeliveredAgain(r, ['change-retried']);
  }));

test('a long-unconfirmed delivery to a region no longer a member is left alone: its inbox is not made again', () =>
  withRig(async (r) => {
    await activeWithThree(r);
    const confirmerOf = (relay: OutboxRelay) => (relay as unknown as { confirmer: DeliveryConfirmer }).confirmer;
    await r.redis.hset(keys.ack('change-gone'), 'x', 'y'); // an ack record without the removed region's ack
    await confirmerOf(r.relay).checkStale([{ change_id: 'change-gone', region: 'gone', stream_id: '1-0' }], ['c'], new Set());
    expect(r.redelivered).toEqual([]);
    expect(await r.redis.exists(keys.inbox('gone'))).toBe(0);
  }));

test('the relay confirms nothing before its process has joined (a runtime-added member may still be missing from an emptied Redis)', async () => {
  const redis = new Redis(server.url);
  const links = new RedisLinks({ region: 'a', own: redis, name: 'relayjoin', defaultUrl: server.url, configured: new Map([['a', server.url], ['c', server.url]]) });
  const reads: string[] = [];
  const read = (sql: string) => reads.push(sql.trim().split(/\s+/).slice(0, 2).join(' '));
  // The page of unconfirmed rows is read on the pool, in a pipelined transaction (relay-confirm.ts unconfirmedPage), the rest through the client.
  // A batch of several statements (the pipelined transaction) answers with a result for each.
  const answer = (sql: string) => (sql.includes(';\n') ? sql.split(';\n').map(() => ({ rows: [] })) : { rows: [] });
  const client = { query: async (sql: string) => (read(sql), answer(sql)), release: () => undefined, on: () => undefined, off: () => undefined };
  const db = {
    $queryRawUnsafe: async (sql: string) => (read(sql), []),
    $executeRawUnsafe: async () => 0,
    pool: { connect: async () => client },
  } as unknown as Db;
  let joined = false;
  const membership = { get hasJoined() { return joined; }, refresh: async () => [], regions: () => ['a', 'c'] };
  const relay = new OutboxRelay({
    db, links, keys, tracker: {} as Tracker, region: 'a', regions: ['a', 'c'], membership,
    log: createLogger({ level: 'silent' }), auth: {} as EventAuth, deliverer: {} as Deliverer,
  });
  try {
    // Before: the round read its unconfirmed rows and judged them by the members it had (those of the config).
    await relay.confirm();
    expect(reads).toEqual([]);
    joined = true;
    await relay.confirm();
    expect(reads.length).toBeGreaterThan(0);
  } finally {
    links.disconnect();
    redis.disconnect();
  }
});

test('the routine trim keeps entries read but not acked (a failing event awaiting its retry), and everything after them', () =>
  withRig(async (r) => {
    const rows = await activeWithThree(r);
    // c reads all three; it acks the first and the third; the second fails and waits, pending, for its retry.
    const res = (await r.redis.xreadgroup('GROUP', 'c', 'c-1', 'COUNT', 100, 'STREAMS', stream, '>')) as [string, [string, string[]][]][] | null;
    expect((res?.[0]?.[1] ?? []).map((e) => e[0])).toEqual(rows.map((x) => x.stream_id));
    await r.redis.xack(stream, 'c', rows[0]?.stream_id as string, rows[2]?.stream_id as string);
    expect(await r.relay.trim(true)).toBe(1);
    // Only the first is gone: the pending one is kept for its retry, and so is what follows it.
    const left = ((await r.redis.xrange(stream, '-', '+')) as [string, string[]][]).map((e) => e[0]);
    expect(left).toEqual([rows[1]?.stream_id, rows[2]?.stream_id]);
    expect((await readMembers(r.redis, keys)).members.get('c')?.state).toBe('active');
  }));

test('the routine trim keeps every entry read but not acked: with two awaiting their retry, it trims below the older one', () =>
  withRig(async (r) => {
    const rows = await activeWithThree(r);
    // c reads all three; the first two fail and wait, pending, for their retry; the third is applied and acked.
    await r.redis.xreadgroup('GROUP', 'c', 'c-1', 'COUNT', 100, 'STREAMS', stream, '>');
    await r.redis.xack(stream, 'c', rows[2]?.stream_id as string);
    expect(await r.relay.trim(true)).toBe(0);
    const left = ((await r.redis.xrange(stream, '-', '+')) as [string, string[]][]).map((e) => e[0]);
    expect(left).toEqual(rows.map((x) => x.stream_id));
  }));

test('a region whose inbox\'s cap trimmed changes it never acked is marked for a re-seed in the origin\'s own Redis too, not only in its own', async () => {
  // a's own Redis is another server than c's: each holds its copy of the membership record.
  const aServer = await ownRedis();
  await aServer.start();
  const aRedis = new Redis(aServer.url);
  try {
    await writeMember(aRedis, keys, 'c', { state: 'active' });
    await withRig(async (r) => {
      const rows = await activeWithThree(r);
      await r.redis.xtrim(stream, 'MINID', rows[2]?.stream_id as string);
      await r.redeliverLost(rows);
      expect(r.relay.trimmedUnconfirmed).toBe(2);
      expect((await readMembers(r.redis, keys)).members.get('c')?.state).toBe('joining');
      expect((await readMembers(aRedis, keys)).members.get('c')?.state).toBe('joining');
    }, aServer.url);
  } finally {
    aRedis.disconnect();
    await aServer.kill();
  }
});

test('a cycle whose database steps fail (the database refuses connections) still trims, and ends without an error: the relay keeps running', async () => {
  const redis = new Redis(server.url);
  const links = new RedisLinks({ region: 'a', own: redis, name: 'relaydbdown', defaultUrl: server.url, configured: new Map([['a', server.url], ['c', server.url]]) });
  const refused = async () => {
    throw new Error('Can\'t reach database server');
  };
  const db = { $queryRawUnsafe: refused, $executeRawUnsafe: refused } as unknown as Db;
  const relay = new OutboxRelay({
    db, links, keys, tracker: {} as Tracker, region: 'a', regions: ['a', 'c'],
    log: createLogger({ level: 'silent' }), auth: {} as EventAuth, deliverer: {} as Deliverer,
  });
  try {
    await redis.flushall(); // the test's own server
    await writeMember(redis, keys, 'c', { state: 'active' });
    await redis.xgroup('CREATE', stream, 'c', '0', 'MKSTREAM');
    for (let i = 0; i < 3; i++) await redis.xadd(stream, '*', 'e', `applied ${i}`);
    const res = (await redis.xreadgroup('GROUP', 'c', 'c-1', 'COUNT', 100, 'STREAMS', stream, '>')) as [string, [string, string[]][]][];
    await redis.xack(stream, 'c', ...(res[0]?.[1] ?? []).map((e) => e[0]));
    // The publishing and confirm steps fail; the trim, which needs only Redis, runs all the same.
    await expect(relay.cycle()).resolves.toBeUndefined();
    expect(await redis.xlen(stream)).toBe(1);
  } finally {
    links.disconnect();
    redis.disconnect();
  }
});

test('an entry c read and has not acked yet, trimmed by the cap meanwhile, is left to c; once it leaves c\'s pending list unacked it is delivered again once', () =>
  withRig(async (r) => {
    const rows = await activeWithThree(r);
    // c's applier reads all three and is still applying them (its apply waits on a lock); the cap trims the first two.
    await r.redis.xreadgroup('GROUP', 'c', 'c-1', 'COUNT', 100, 'STREAMS', stream, '>');
    await r.redis.xadd(stream, '*', 'e', 'unread');
    await r.redis.xtrim(stream, 'MINID', rows[2]?.stream_id as string);
    await r.redeliverLost(rows);
    expect(r.redelivered).toEqual([]);
    expect(r.relay.trimmedUnconfirmed).toBe(0);
    expect((await readMembers(r.redis, keys)).members.get('c')?.state).toBe('active');
    // c's claim finds the first gone and drops it from the pending list, unapplied: delivered again.
    await r.redis.xack(stream, 'c', rows[0]?.stream_id as string);
    await r.redeliverLost(rows.slice(0, 2));
    await expectDeliveredAgain(r, ['change-0']);
  }));

test('an entry c read past and refused is delivered again once, though the cap trimmed with it an entry c still applies: c is not taken for behind the cap', () =>
  withRig(async (r) => {
    const rows = await activeWithThree(r);
    // c reads the first and is still applying it (its apply waits on a lock); it reads the other two and acks them, the
    // second refused (dead-lettered: acked, no ack to the origin).
    await r.redis.xreadgroup('GROUP', 'c', 'c-1', 'COUNT', 1, 'STREAMS', stream, '>');
    expect(await readAndAck(r)).toEqual(rows.slice(1).map((x) => x.stream_id));
    await r.redis.xadd(stream, '*', 'e', 'unread');
    // The cap trims the first two: the one still pending, and the refused one c read past.
    await r.redis.xtrim(stream, 'MINID', rows[2]?.stream_id as string);
    await r.redeliverLost(rows.slice(0, 2));
    await expectDeliveredAgain(r, ['change-1']);
  }));
