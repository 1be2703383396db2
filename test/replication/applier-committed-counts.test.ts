/**
 * The applier's counters count what it settled, once: a change ruled out by the collection horizon
 * (`refused_below_horizon`, replication_events_below_horizon_total) when the transaction that ruled it out
 * commits, not in a transaction rolled back and tried again; an entry refused for its signature
 * (`refused`, replication_events_refused_total) when it is in the dead-letter stream and XACKed by this
 * consumer, not at each attempt that failed to put it there nor by a second consumer that held it too (which
 * copies nothing: the copy and the XACK are one step); and the refused and unreadable entries' log lines likewise.
 */
import pino from 'pino';
import { FEATURES } from '../../src/features';
import { createRedis } from '../../src/redis';
import { RedisLinks } from '../../src/replication/links';
import type { Applier } from '../../src/replication/applier';
import { formatVersion } from '../../src/replication/hlc';
import { clockFloor } from '../../src/replication/horizon';
import { RowStore } from '../../src/replication/row-store';
import { REDIS_URL, testEventAuth } from '../support/env';
import { eventually } from '../support/harness';
import { logLines } from '../support/log-lines';
import { eventFor, failFirstWrite, orgEvent, ORIGIN, REGION, startApplierRig, testId, type ApplierRig } from '../support/applier-rig';

let rig: ApplierRig;
beforeAll(async () => {
  rig = await startApplierRig('committed-counts');
});
afterAll(async () => {
  await rig.cleanup();
});

/** A logger keeping the error lines it is given (the appliers': what they log of refused and unreadable entries). */
const capturedLog = () => {
  const { lines, sink } = logLines();
  return { lines: lines as { msg: string; refused?: { id: string }[]; ids?: string[] }[], log: pino({ level: 'error' }, sink) };
};
const REFUSED_LINE = /^change events refused/;
const UNREADABLE_LINE = /^unreadable change events moved/;

/**
 * With the dead-letter stream unwritable (a key of another type), waits until entry `id` was read three times
 * (the first read and two claims: two attempts ended, failed), then makes the stream writable again and waits
 * until the entry is no longer pending; answers the dead-letter copies of it.
 */
async function deadLetteredAfterFailures(id: string): Promise<unknown[]> {
  const deliveries = async () => Number(((await rig.redis.xpending(rig.keys.inbox(REGION), REGION, '-', '+', 10)) as [string, string, number, number][]).find((p) => p[0] === id)?.[3] ?? 0);
  expect(await eventually(async () => (await deliveries()) >= 3, 15_000, 20)).toBe(true);
  await rig.redis.del(rig.keys.deadLetter);
  expect(await eventually(async () => (await rig.pendingCount()) === 0, 15_000, 50)).toBe(true);
  return (await rig.redis.xrange(rig.keys.deadLetter, '-', '+')).filter(([, f]) => f.includes(id));
}

/**
 * Adds an entry (`add`) while the dead-letter stream cannot be written, runs an applier logging into `lines`
 * until the entry was dead-lettered once after failed attempts (deadLetteredAfterFailures), then `inspect`s
 * what it counted, observed (`seen`: its onRefused reasons) and logged; stops it and frees the stream after.
 */
async function afterFailedDeadLettering(
  add: () => Promise<string>,
  inspect: (r: { id: string; applier: Applier; lines: ReturnType<typeof capturedLog>['lines']; seen: string[] }) => Promise<void> | void,
): Promise<void> {
  await rig.redis.set(rig.keys.deadLetter, 'not a stream');
  const id = await add();
  const { lines, log } = capturedLog();
  const applier = await rig.applier({ log });
  const seen: string[] = [];
  applier.onRefused = (_origin, reason) => seen.push(reason);
  applier.start();
  try {
    expect(await deadLetteredAfterFailures(id)).toHaveLength(1);
    await inspect({ id, applier, lines, seen });
  } finally {
    await applier.stop();
    await rig.redis.del(rig.keys.deadLetter);
  }
}

test('a change the horizon rules out is counted once when its batch fails with a serialization failure and is applied event by event', async () => {
  // Organizations created before this cut-off whose rows are absent here had their tombstones collected.
  await rig.db.$executeRawUnsafe('INSERT INTO replication_horizon (id, collected_through) VALUES (1, $1)', clockFloor(3000));
  // The first write of a row named 'trip' fails as a serialization failure would.
  const trip = await failFirstWrite(rig.db, 'counts_trip', 'organizations', 'INSERT OR UPDATE', "NEW.name = 'trip'");
  try {
    // Nothing written yet: met none (a fresh sequence's last_value reads 1 until its first nextval).
    expect(await trip.met()).toBe(0);
    // A late update of an organization created (at 1 s) before the cut-off and absent here: ruled out.
    const lateId = testId();
    const late = eventFor('organizations', lateId, { id: lateId, parent_id: null, name: 'late', created_version: formatVersion({ wall: 1000, counter: 0, region: ORIGIN }) }, { wall: 5000 });
    // Two changes of one row: the batch reads what is stored (and rules the late update out) before it
    // writes, and its write of 'trip' fails.
    const created = orgEvent('trip');
    const createdVersion = created.ops[0]?.version as string;
    const wall = Date.now() + 1;
    const renamed = eventFor('organizations', created.orgId, { id: created.orgId, parent_id: null, name: 'trip', created_version: createdVersion }, { wall });
    // One entry: one batch, one transaction.
    await rig.publishPack([late, created, renamed]);
    const store = await RowStore.load(rig.db, FEATURES.flatMap((f) => f.tables));
    const applier = await rig.applier({ store });
    applier.start();
    try {
      expect(await eventually(async () => (await rig.orgName(created.orgId)) === 'trip' && (await rig.pendingCount()) === 0, 15_000, 50)).toBe(true);
      // The batch failed once (the sequence moved on), then its events applied one by one.
      expect(await trip.met()).toBeGreaterThan(1);
      expect(await rig.orgName(lateId)).toBeNull();
      expect((await rig.tracker.status(late.changeId))[REGION]).toMatch(/superseded/);
      // Before: 2, the rolled-back batch's count and the committed apply's.
      expect(store.belowHorizon).toBe(1);
    } finally {
      await applier.stop();
    }
  } finally {
    await trip.drop();
    await rig.db.$executeRawUnsafe('DELETE FROM replication_horizon');
  }
}, 60_000);

test('an entry refused for its signature is counted once, when it is dead-lettered, however often dead-lettering it failed before', async () => {
  await rig.reset();
  const fields = testEventAuth().entryFields(orgEvent('forged'));
  fields[fields.length - 1] = 'zz'; // its MAC
  // The dead-letter stream cannot be written (a key of another type): each attempt fails at its XADD.
  await afterFailedDeadLettering(async () => String(await rig.redis.xadd(rig.keys.inbox(REGION), '*', ...fields)), ({ id, applier, lines, seen }) => {
    // Before: one per attempt.
    expect(applier.refusedEvents).toBe(1);
    expect(applier.refusedByReason).toEqual({ 'bad-signature': 1 });
    expect(applier.recentRefused.map((r) => r.streamId)).toEqual([id]);
    expect(seen).toEqual(['bad-signature']);
    // Logged once too, when moved (before: at each attempt).
    expect(lines.filter((l) => REFUSED_LINE.test(l.msg)).map((l) => l.refused?.map((r) => r.id))).toEqual([[id]]);
  });
}, 60_000);

test('an unreadable entry is logged once, when it is dead-lettered, however often dead-lettering it failed before', async () => {
  await rig.reset();
  // Its version does not read as one: the entry is unreadable (inbox-sort.ts), copied to the dead-letter stream whole.
  const bad = orgEvent('bad version');
  const op = bad.ops[0]!;
  bad.ops[0] = { ...op, version: '1796120408762.1.us-iowa', row: { ...op.row, version: '1796120408762.1.us-iowa' } };
  await afterFailedDeadLettering(() => rig.publish(bad), async ({ id, applier, lines }) => {
    await applier.stop();
    // Before: one line per attempt.
    expect(lines.filter((l) => UNREADABLE_LINE.test(l.msg)).map((l) => l.ids)).toEqual([[id]]);
  });
}, 60_000);

test('an entry two consumers both refuse is moved to the dead-letter stream, counted, listed, observed and logged once: by the one that moved it', async () => {
  await rig.reset();
  const fields = testEventAuth().entryFields(orgEvent('refused twice'));
  fields[fields.length - 1] = 'zz'; // its MAC
  const id = String(await rig.redis.xadd(rig.keys.inbox(REGION), '*', ...fields));
  // The first consumer's move of it (any command writing it to the dead-letter stream) waits until the test
  // lets it go: it holds the entry while the second claims it (pending past claimIdleMs), refuses and moves it.
  const own = createRedis(REDIS_URL, 'committed-counts-gated');
  let release = () => undefined as void;
  const gate = new Promise<void>((r) => (release = r));
  let holding = false;
  let firstDone = false;
  for (const name of ['xadd', 'evalsha', 'eval'] as const) {
    const command = (own[name] as (...a: unknown[]) => Promise<unknown>).bind(own);
    Object.assign(own, {
      [name]: async (...args: unknown[]) => {
        if (holding || !args.includes(rig.keys.deadLetter) || !args.includes(id)) return command(...args);
        holding = true;
        await gate;
        try {
          return await command(...args);
        } finally {
          firstDone = true;
        }
      },
    });
  }
  const links = new RedisLinks({ region: REGION, own, name: 'committed-counts-gated', defaultUrl: REDIS_URL, configured: new Map() });
  const { lines, log } = capturedLog();
  const first = await rig.applier({ links, log, consumer: 'first' });
  const second = await rig.applier({ log, consumer: 'second' });
  const seen: [string, string][] = [];
  for (const a of [first, second]) a.onRefused = (origin, reason) => seen.push([origin, reason]);
  try {
    first.start();
    expect(await eventually(async () => holding, 15_000, 20)).toBe(true);
    second.start();
    expect(await eventually(async () => second.refusedEvents === 1 && (await rig.pendingCount()) === 0, 15_000, 20)).toBe(true);
    release();
    expect(await eventually(async () => firstDone, 15_000, 20)).toBe(true);
    await first.stop();
    await second.stop();
    // Before: both copied it (each before its XACK), and only the second's XACK acknowledged it.
    expect((await rig.redis.xrange(rig.keys.deadLetter, '-', '+')).filter(([, f]) => f.includes(id))).toHaveLength(1);
    expect([first.refusedEvents, second.refusedEvents]).toEqual([0, 1]);
    expect(first.refusedByReason).toEqual({});
    expect(first.recentRefused).toEqual([]);
    expect(second.recentRefused.map((r) => r.streamId)).toEqual([id]);
    expect(seen).toEqual([[ORIGIN, 'bad-signature']]);
    expect(lines.filter((l) => REFUSED_LINE.test(l.msg)).map((l) => l.refused?.map((r) => r.id))).toEqual([[id]]);
  } finally {
    release();
    await first.stop();
    await second.stop();
    own.disconnect();
    await rig.redis.del(rig.keys.deadLetter);
  }
}, 60_000);

test('an entry with more fields than a Lua script can pass on is refused and moved to the dead-letter stream all the same, and the entries after it apply', async () => {
  await rig.reset();
  // Whoever can write to the inbox can add any number of fields: 10,000 here, past the 8,000 values Lua's stack
  // holds, so a script cannot copy them (unpack: "too many results to unpack").
  const fields = testEventAuth().entryFields(orgEvent('many fields'));
  fields[fields.length - 1] = 'zz'; // its MAC
  for (let i = 0; i < 5000; i++) fields.push(`x${i}`, 'y');
  const id = String(await rig.redis.xadd(rig.keys.inbox(REGION), '*', ...fields));
  const after = orgEvent('after the big one');
  await rig.publish(after);
  const { lines, log } = capturedLog();
  const applier = await rig.applier({ log });
  applier.start();
  try {
    // Before: the script failed at each attempt, the entry stayed pending (pinning the trim floor), never counted.
    expect(await eventually(async () => (await rig.pendingCount()) === 0 && (await rig.orgName(after.orgId)) === 'after the big one', 15_000, 50)).toBe(true);
    const copies = (await rig.redis.xrange(rig.keys.deadLetter, '-', '+')).filter(([, f]) => f.includes(id));
    expect(copies).toHaveLength(1);
    expect(copies[0]?.[1]).toEqual(['region', REGION, 'id', id, 'refused', 'bad-signature', ...fields]);
    expect(applier.refusedEvents).toBe(1);
    expect(lines.filter((l) => REFUSED_LINE.test(l.msg)).map((l) => l.refused?.map((r) => r.id))).toEqual([[id]]);
  } finally {
    await applier.stop();
    await rig.redis.del(rig.keys.deadLetter);
  }
}, 60_000);
