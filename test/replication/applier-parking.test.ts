/**
 * The applier never wedges (issue G, item 4): an event it cannot apply is passed over (its failures are
 * counted in Postgres) and parked after a few, acknowledged to its origin as parked; later events apply
 * meanwhile; a restart with such an entry pending walks the pending list once instead of looping.
 */
import { FailureLog, MAX_FAILURES } from '../../src/replication/parked';
import { createApplyPool } from '../../src/replication/pg-tx';
import { Client, DatabaseError } from 'pg';
import type { Db } from '../../src/db/client';
import { isDatabaseTrouble } from '../../src/db/pg-errors';
import { testEventAuth } from '../support/env';
import pino from 'pino';
import { eventually } from '../support/harness';
import { logLines, type LogLine } from '../support/log-lines';
import { eventFor, failFirstWrite, orgEvent, REGION, startApplierRig, storeParked, type ApplierRig } from '../support/applier-rig';

let rig: ApplierRig;
beforeAll(async () => {
  rig = await startApplierRig('parking');
});
afterAll(async () => {
  await rig.cleanup();
});

const failureRow = async (changeId: string) =>
  (await rig.db.$queryRawUnsafe<{ failures: number; reason: string; parked: boolean; last_error: string }[]>(
    'SELECT failures, reason, parked_at IS NOT NULL AS parked, last_error FROM replication_failures WHERE change_id = $1::uuid',
    changeId,
  ))[0] ?? null;

/** A started applier whose log lines and refusals (onRefused) the test reads. */
const observedApplier = async () => {
  const { lines, sink } = logLines();
  const applier = await rig.applier({ log: pino({ level: 'info' }, sink) });
  const seen: string[] = [];
  applier.onRefused = (_origin, reason) => seen.push(reason);
  applier.start();
  return { applier, lines, seen };
};

/** Whether the change reads parked in this region's ack, with nothing left pending in the inbox. */
const parkedHere = async (changeId: string) =>
  (await rig.tracker.status(changeId))[REGION]?.startsWith('parked ') === true && (await rig.pendingCount()) === 0;

test('an event for an unknown table and one missing a NOT NULL column do not stop later events; both are parked and acked as parked', async () => {
  const before = orgEvent('before');
  const unknownTable = eventFor('widgets', 'w1', { id: 'w1', color: 'blue' });
  const missingName = orgEvent(undefined);
  const after = orgEvent('after');
  for (const e of [before, unknownTable, missingName, after]) await rig.publish(e);
  const applier = await rig.applier();
  applier.start();
  // Stopped even when an expectation fails: a running applier would take the next tests' events.
  try {
    // Two batches are applied at once and their order is not kept (the merge rule is a maximum): "after" may
    // land before the batch holding "before" has retried its events one by one.
    expect(await eventually(async () => (await rig.orgName(after.orgId)) === 'after' && (await rig.orgName(before.orgId)) === 'before', 10_000, 50)).toBe(true);
    // The unknown table is parked at its first read; the NOT NULL violation after MAX_FAILURES failed attempts.
    expect(await eventually(async () => (await failureRow(unknownTable.changeId))?.parked === true, 10_000, 50)).toBe(true);
    expect(await failureRow(unknownTable.changeId)).toMatchObject({ reason: 'unknown-table', parked: true });
    expect(await eventually(async () => (await failureRow(missingName.changeId))?.parked === true, 15_000, 50)).toBe(true);
    expect(await failureRow(missingName.changeId)).toMatchObject({ reason: 'apply-failed', failures: MAX_FAILURES });
    expect((await failureRow(missingName.changeId))?.last_error).toMatch(/null value in column "name"|23502/);
    // The park is stored first, then acked to the origin and XACKed (set-aside.ts): the ack may trail the row.
    expect(await eventually(async () => (await rig.pendingCount()) === 0, 10_000, 50)).toBe(true);
    // Acked to the origin as parked: its relay can confirm the change, but no waiter counts it as applied.
    expect((await rig.tracker.status(missingName.changeId))[REGION]).toMatch(/^parked /);
    expect((await rig.tracker.status(unknownTable.changeId))[REGION]).toMatch(/^parked /);
    expect((await rig.tracker.status(after.changeId))[REGION]).not.toMatch(/^parked /);
    expect(await rig.tracker.wait(missingName.changeId, [REGION], [], Date.now() + 300)).toMatchObject({ complete: false });
    expect(applier.parkedEvents).toBe(2);
  } finally {
    await applier.stop();
  }
}, 60_000);

test('a restart with a failing entry pending walks the pending list once, applies the rest, and keeps counting its failures', async () => {
  const bad = orgEvent(undefined);
  const good = [orgEvent('g1'), orgEvent('g2'), orgEvent('g3')];
  for (const e of [good[0], bad, good[1], good[2]]) if (e) await rig.publish(e);
  // A consumer read them and died before acking: they are its pending entries.
  await rig.redis.xreadgroup('GROUP', REGION, 'crashed', 'COUNT', 100, 'STREAMS', rig.keys.inbox(REGION), '>');

  /**
   * Runs an applier until its walk has done what `walked` says, and 2 s more; returns how many reads of its
   * pending entries it made. (A fixed 2 s from its start assumed the walk was done by then: on a loaded host
   * the start and the walk's applies can take longer.)
   */
  const rereads = async (walked: () => Promise<boolean>) => {
    // No claims during this phase: only the walk of our own pending entries reads them.
    const applier = await rig.applier({ consumer: 'crashed', claimIdleMs: 600_000, claimEveryMs: 600_000 });
    const reader = (applier as unknown as { d: { reader: { call: (...a: unknown[]) => Promise<unknown> } } }).d.reader;
    const call = reader.call.bind(reader);
    let pendingReads = 0;
    reader.call = (...args: unknown[]) => {
      if (args[0] === 'XREADGROUP' && args[args.length - 1] !== '>') pendingReads += 1;
      return call(...args);
    };
    applier.start();
    try {
      expect(await eventually(walked, 15_000, 50)).toBe(true);
      // An applier that walks its pending list again and again does so many times over in this time.
      await new Promise((r) => setTimeout(r, 2000));
    } finally {
      await applier.stop();
    }
    return pendingReads;
  };
  const failures = async (n: number) => (await failureRow(bad.changeId))?.failures === n;

  // Before: the applier re-read its pending entries from 0 until the read came back empty, forever.
  const goodApplied = async () => (await Promise.all(good.map(async (g) => (await rig.orgName(g.orgId)) === g.ops[0]?.row.name))).every(Boolean);
  expect(await rereads(async () => (await goodApplied()) && (await failures(1)))).toBeLessThanOrEqual(3);
  for (const g of good) expect(await rig.orgName(g.orgId)).toBe(g.ops[0]?.row.name);
  expect(await failureRow(bad.changeId)).toMatchObject({ failures: 1, parked: false });
  expect(await rig.pendingCount()).toBe(1);

  // A second restart: the count is durable, it goes on from 1.
  expect(await rereads(() => failures(2))).toBeLessThanOrEqual(3);
  expect(await failureRow(bad.changeId)).toMatchObject({ failures: 2, parked: false });
}, 60_000);

test('a failure recorded by another process of the region is cleared when this one applies the event it claimed', async () => {
  // This applier has started (its failures loaded: none) before the other process's failure.
  const applier = await rig.applier({ consumer: 'survivor', claimIdleMs: 300, claimEveryMs: 200 });
  applier.start();
  try {
    const warm = orgEvent('warm-up');
    await rig.publish(warm);
    expect(await eventually(async () => (await rig.orgName(warm.orgId)) === 'warm-up', 10_000, 50)).toBe(true);
    // Another process read the entry, failed to apply it (its failure row written as it writes it), and left
    // it pending: it stopped, or moved on.
    const event = orgEvent('failed elsewhere');
    const failures = new FailureLog(rig.db);
    // Added and read by the other consumer in one transaction: this applier's blocked read gets nothing.
    const inbox = rig.keys.inbox(REGION);
    const [[, added], [, stolen]] = ((await rig.redis.multi().xadd(inbox, '*', ...testEventAuth().entryFields(event)).xreadgroup('GROUP', REGION, 'other', 'COUNT', 100, 'STREAMS', inbox, '>').exec()) ?? []) as [unknown, unknown][];
    const streamId = String(added);
    expect(JSON.stringify(stolen)).toContain(streamId);
    await failures.record(event, streamId, new Error('connection terminated'));
    expect(await failureRow(event.changeId)).toMatchObject({ failures: 1, parked: false });
    // This process claims it, applies it, and clears the failure.
    expect(await eventually(async () => (await rig.orgName(event.orgId)) === 'failed elsewhere', 10_000, 50)).toBe(true);
    expect(await eventually(async () => (await failureRow(event.changeId)) === null, 5_000, 50)).toBe(true);
  } finally {
    await applier.stop();
  }
}, 60_000);

test('a change an operator discarded here, delivered again, is acked as parked at its first failure and leaves no row; a row of one left by a race goes at the next claim round', async () => {
  const discardedRow = (changeId: string) => rig.db.$executeRawUnsafe(
    `INSERT INTO replication_discarded (change_id, origin_region, event, failures, reason, last_error, first_failed_at, parked_at)
     VALUES ($1::uuid, 'us-iowa', '{}'::jsonb, 3, 'apply-failed', 'test', now(), now())`,
    changeId,
  );
  const bad = orgEvent(undefined);
  await discardedRow(bad.changeId);
  await rig.publish(bad);
  // No claims: without the discard check the entry would stay pending, its failure counted, until claimed.
  const applier = await rig.applier({ consumer: 'after-discard', claimIdleMs: 600_000, claimEveryMs: 600_000 });
  applier.start();
  try {
    expect(await eventually(async () => /^parked /.test((await rig.tracker.status(bad.changeId))[REGION] ?? ''), 10_000, 50)).toBe(true);
    expect(await failureRow(bad.changeId)).toBeNull();
    expect(await eventually(async () => (await rig.pendingCount()) === 0, 5_000, 50)).toBe(true);
  } finally {
    await applier.stop();
  }
  // A park or a failure count that ran at the moment of the discard left a row: the next load removes it.
  const raced = orgEvent(undefined);
  await discardedRow(raced.changeId);
  await new FailureLog(rig.db).park([{ event: raced, streamId: '1-0', reason: 'apply-failed', error: 'test' }]);
  expect(await failureRow(raced.changeId)).toBeNull();
  await rig.db.$executeRawUnsafe(
    `INSERT INTO replication_failures (change_id, origin_region, event, failures, reason, last_error, parked_at) VALUES ($1::uuid, 'us-iowa', '{}'::jsonb, 3, 'apply-failed', 'race', now())`,
    raced.changeId,
  );
  await new FailureLog(rig.db).load();
  expect(await failureRow(raced.changeId)).toBeNull();
}, 60_000);

test('a database refusing the applier\'s connections (too many for its role) counts nothing against the events; they apply once it lets them in', async () => {
  // A role of its own at its connection limit: the applier's pool cannot open a connection (53300) while
  // the region's other pool, and so a probe through it, still answers (a review parked good changes so).
  const role = `parking_limited_${process.pid}`;
  await rig.db.$executeRawUnsafe(`DROP ROLE IF EXISTS ${role}`);
  await rig.db.$executeRawUnsafe(`CREATE ROLE ${role} LOGIN CONNECTION LIMIT 0`);
  await rig.db.$executeRawUnsafe(`GRANT pg_read_all_data, pg_write_all_data TO ${role}`);
  const url = new URL(rig.databaseUrl);
  url.username = role;
  const pool = createApplyPool(url.toString());
  const events = [orgEvent('refused-1'), orgEvent('refused-2'), orgEvent('refused-3')];
  for (const e of events) await rig.publish(e);
  const applier = await rig.applier({ consumer: 'limited', pool });
  applier.start();
  try {
    // Attempts every half second and claims every 100 ms: three failures each would have parked them.
    await new Promise((r) => setTimeout(r, 4000));
    for (const e of events) {
      expect(await failureRow(e.changeId)).toBeNull();
      expect(await rig.orgName(e.orgId)).toBeNull();
    }
    expect(applier.parkedEvents).toBe(0);
    await rig.db.$executeRawUnsafe(`ALTER ROLE ${role} CONNECTION LIMIT -1`);
    expect(await eventually(async () => (await Promise.all(events.map((e) => rig.orgName(e.orgId)))).join() === 'refused-1,refused-2,refused-3', 15_000, 50)).toBe(true);
    // Acked as applied (the ack goes out after the commit).
    for (const e of events) expect(await eventually(async () => /^applied@/.test((await rig.tracker.status(e.changeId))[REGION] ?? ''), 5000, 50)).toBe(true);
  } finally {
    await applier.stop();
    await pool.end();
    await rig.db.$executeRawUnsafe(`DROP OWNED BY ${role}`);
    await rig.db.$executeRawUnsafe(`DROP ROLE ${role}`);
  }
}, 60_000);

test('a change parked as apply-failed is tried again by itself, and applies once what stopped it has gone', async () => {
  // A row in the way that an operator then removes: here a trigger refusing this organization's name.
  await rig.db.$executeRawUnsafe(`CREATE FUNCTION refuse_org() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$`);
  await rig.db.$executeRawUnsafe(`CREATE TRIGGER refuse_org BEFORE INSERT ON organizations FOR EACH ROW WHEN (NEW.name = 'blocked') EXECUTE FUNCTION refuse_org()`);
  const blocked = orgEvent('blocked');
  await rig.publish(blocked);
  const applier = await rig.applier({ consumer: 'periodic', failedRetryEveryMs: 1000 });
  applier.start();
  try {
    expect(await eventually(async () => (await failureRow(blocked.changeId))?.parked === true, 15_000, 50)).toBe(true);
    expect(await failureRow(blocked.changeId)).toMatchObject({ reason: 'apply-failed', last_error: expect.stringContaining('refused by the test') });
    expect(await eventually(async () => /^parked /.test((await rig.tracker.status(blocked.changeId))[REGION] ?? ''), 5000, 50)).toBe(true);
    // Still refused: the periodic retry keeps it parked with its reason.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await failureRow(blocked.changeId)).toMatchObject({ reason: 'apply-failed', parked: true });
    await rig.db.$executeRawUnsafe('DROP TRIGGER refuse_org ON organizations');
    // Before: only a restart or the operator's retry applied it.
    expect(await eventually(async () => (await rig.orgName(blocked.orgId)) === 'blocked', 15_000, 50)).toBe(true);
    expect(await eventually(async () => (await failureRow(blocked.changeId)) === null, 5000, 50)).toBe(true);
    expect(await eventually(async () => /^applied@/.test((await rig.tracker.status(blocked.changeId))[REGION] ?? ''), 5000, 50)).toBe(true);
  } finally {
    await applier.stop();
    await rig.db.$executeRawUnsafe('DROP TRIGGER IF EXISTS refuse_org ON organizations');
    await rig.db.$executeRawUnsafe('DROP FUNCTION IF EXISTS refuse_org()');
  }
}, 60_000);

test('an event whose apply collides (a serialization failure) stays pending, is not counted as failing, and applies once it no longer collides', async () => {
  await rig.reset();
  await rig.db.$executeRawUnsafe(`CREATE FUNCTION collide_org() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'collided in the test' USING ERRCODE = 'serialization_failure'; END $$`);
  await rig.db.$executeRawUnsafe(`CREATE TRIGGER collide_org BEFORE INSERT ON organizations FOR EACH ROW WHEN (NEW.name = 'colliding') EXECUTE FUNCTION collide_org()`);
  const colliding = orgEvent('colliding');
  const beside = orgEvent('beside it');
  // One pack, so one batch: its transaction fails, and its events are applied one by one.
  await rig.publishPack([colliding, beside]);
  const applier = await rig.applier({ consumer: 'collisions' });
  applier.start();
  try {
    // The batch's failures are counted before its applied events are acked.
    expect(await eventually(async () => /^applied@/.test((await rig.tracker.status(beside.changeId))[REGION] ?? ''), 10_000, 50)).toBe(true);
    // Claimed and tried again meanwhile (claimIdleMs 50): a collision every time, never counted.
    await new Promise((r) => setTimeout(r, 1000));
    expect(await failureRow(colliding.changeId)).toBeNull();
    expect(await rig.orgName(colliding.orgId)).toBeNull();
    expect(await rig.pendingCount()).toBe(1);
  } finally {
    await rig.db.$executeRawUnsafe('DROP TRIGGER IF EXISTS collide_org ON organizations');
    await rig.db.$executeRawUnsafe('DROP FUNCTION IF EXISTS collide_org()');
  }
  expect(await eventually(async () => (await rig.orgName(colliding.orgId)) === 'colliding', 15_000, 50)).toBe(true);
  expect(await failureRow(colliding.changeId)).toBeNull();
  expect(applier.parkedEvents).toBe(0);
  await applier.stop();
}, 60_000);

test('which errors are the database\'s and which the statement\'s: a batch out of lock space is retried event by event, a value quoting a lost connection is the event\'s', () => {
  const server = (code: string, message: string) => Object.assign(new DatabaseError(message, 0, 'error'), { code, severity: 'ERROR' });
  expect(isDatabaseTrouble(server('53300', 'too many connections for role "x"'))).toBe(true);
  expect(isDatabaseTrouble(server('57P01', 'terminating connection due to administrator command'))).toBe(true);
  expect(isDatabaseTrouble(server('53100', 'could not extend file: No space left on device'))).toBe(true);
  expect(isDatabaseTrouble(server('58030', 'could not read block'))).toBe(true);
  expect(isDatabaseTrouble(server('25006', 'cannot execute INSERT in a read-only transaction'))).toBe(true);
  expect(isDatabaseTrouble(server('57014', 'canceling statement due to statement timeout'))).toBe(true);
  expect(isDatabaseTrouble(new Error('Connection terminated unexpectedly'))).toBe(true);
  expect(isDatabaseTrouble(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }))).toBe(true);
  // A batch can cause these itself (its locks overflow the shared lock table): run alone, an event may go through.
  expect(isDatabaseTrouble(server('53200', 'out of shared memory'))).toBe(false);
  expect(isDatabaseTrouble(server('53400', 'temporary file size exceeds temp_file_limit'))).toBe(false);
  expect(isDatabaseTrouble(server('22P02', 'invalid input syntax for type integer: "Connection terminated"'))).toBe(false);
  expect(isDatabaseTrouble(server('23502', 'null value in column "name"'))).toBe(false);
});

test('a parked change applied by a retry stays applied (unparked, acked) when the database fails under a later one of the same page', async () => {
  // Only these two are parked (the earlier tests' parked changes would come first in the page).
  await rig.db.$executeRawUnsafe('DELETE FROM replication_failures');
  const good = orgEvent('retried-first');
  const later = orgEvent('retried-second');
  await new FailureLog(rig.db).park([good, later].map((event) => ({ event, streamId: '1-0', reason: 'apply-failed' as const, error: 'test' })));
  // The applier's pool: the first connection opens, the second is refused (too many connections).
  const pool = createApplyPool(rig.databaseUrl);
  const connect = pool.connect.bind(pool);
  let opened = 0;
  (pool as unknown as { connect: () => Promise<unknown> }).connect = async () => {
    if (++opened > 1) throw Object.assign(new DatabaseError('too many connections for role "x"', 0, 'error'), { code: '53300', severity: 'FATAL' });
    return connect();
  };
  const applier = await rig.applier({ consumer: 'retry-page', pool });
  try {
    await expect(applier.retryParked({ reason: 'apply-failed' })).rejects.toThrow(/too many connections/);
    expect(await rig.orgName(good.orgId)).toBe('retried-first');
    // Before: the first stayed parked (here and at its origin), applied all the same.
    expect(await failureRow(good.changeId)).toBeNull();
    expect(await eventually(async () => /^applied@/.test((await rig.tracker.status(good.changeId))[REGION] ?? ''), 5000, 50)).toBe(true);
    expect(await failureRow(later.changeId)).toMatchObject({ parked: true });
    expect(await rig.orgName(later.orgId)).toBeNull();
  } finally {
    await applier.stop();
    (pool as unknown as { connect: () => Promise<unknown> }).connect = connect;
    await pool.end();
  }
}, 60_000);

test('an event of this very schema (or of none) carrying a column this region lacks is held as schema-ahead, never applied partially', async () => {
  await rig.reset();
  const { RowStore } = await import('../../src/replication/row-store');
  const { FEATURES } = await import('../../src/features');
  const schema = (await RowStore.load(rig.db, FEATURES.flatMap((f) => f.tables))).schema;
  const same = { ...orgEvent('same schema'), schema };
  const none = orgEvent('no schema');
  for (const e of [same, none]) {
    const op = e.ops[0];
    if (op) op.row = { ...op.row, colour: 'blue' };
    await rig.publish(e);
  }
  const applier = await rig.applier();
  applier.start();
  try {
    for (const e of [same, none]) {
      expect(await eventually(async () => (await failureRow(e.changeId))?.parked === true, 10_000, 50)).toBe(true);
      expect(await failureRow(e.changeId)).toMatchObject({ reason: 'schema-ahead', parked: true });
      // Not applied without the column: the organization is not there at all.
      expect(await rig.orgName(e.orgId)).toBeNull();
    }
  } finally {
    await applier.stop();
  }
}, 60_000);

test('changes held for an upgrade are warned of once per origin and tables, then summed up periodically; never logged as errors', async () => {
  await rig.reset();
  const { lines, sink } = logLines();
  const log = pino({ level: 'info' }, sink);
  const events = [0, 1, 2].map((i) => {
    const e = orgEvent(`ahead ${i}`);
    const op = e.ops[0];
    if (op) op.row = { ...op.row, colour: 'blue' };
    return e;
  });
  const widget = eventFor('widgets', 'w9', { id: 'w9' });
  for (const e of [...events, widget]) await rig.publish(e);
  const applier = await rig.applier({ log, heldSummaryEveryMs: 500 });
  applier.start();
  try {
    for (const e of [...events, widget]) expect(await eventually(async () => (await failureRow(e.changeId))?.parked === true, 10_000, 50)).toBe(true);
    const held = (l: LogLine) => String(l.msg).startsWith('change events held until this region is upgraded');
    const summary = (l: LogLine) => String(l.msg).startsWith('still holding change events');
    type Summed = { origin: string; reason: string; tables: string[]; count: number };
    const summed = () => lines.filter(summary).flatMap((l) => l.held as Summed[]);
    expect(await eventually(async () => summed().reduce((n, h) => n + h.count, 0) === 2, 10_000, 50)).toBe(true);
    // One warning each, in whichever order the batch met them (cc4 saw the widget's first).
    expect(lines.filter(held)).toHaveLength(2);
    expect(lines.filter(held)).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ level: 40, reason: 'schema-ahead', tables: ['organizations'] }),
        expect.objectContaining({ level: 40, reason: 'unknown-table', tables: ['widgets'] }),
      ]),
    );
    // The two held after the first of their origin and table, in the summary (one line, unless the parks spread
    // over more than its period).
    expect(lines.filter(summary).every((l) => l.level === 40)).toBe(true);
    expect(new Set(summed().map((h) => JSON.stringify([h.origin, h.reason, h.tables])))).toEqual(new Set([JSON.stringify([events[0]?.origin, 'schema-ahead', ['organizations']])]));
    expect(lines.filter((l) => Number(l.level) >= 50)).toEqual([]);
  } finally {
    await applier.stop();
  }
}, 60_000);

test('a change delivered twice and parked from one read is counted as parked once', async () => {
  await rig.reset();
  // Two entries of one change (its origin republished it), read together: both acked as parked, one change parked.
  const twice = eventFor('widgets', 'w2', { id: 'w2', color: 'green' });
  await rig.publish(twice);
  await rig.publish(twice);
  const applier = await rig.applier();
  applier.start();
  try {
    // Both acked as parked (the acks follow the count, set-aside.ts): neither is pending.
    expect(await eventually(async () => (await rig.tracker.status(twice.changeId))[REGION]?.startsWith('parked ') === true && (await rig.pendingCount()) === 0, 10_000, 50)).toBe(true);
    expect(await failureRow(twice.changeId)).toMatchObject({ reason: 'unknown-table', parked: true });
    // Before: 2.
    expect(applier.parkedEvents).toBe(1);
  } finally {
    await applier.stop();
  }
}, 30_000);

test('a change another process parked, delivered again and still not applying, is acked as parked but not counted, observed or logged as parked again', async () => {
  await rig.reset();
  // Too far ahead of this region's clock (clock-skew): refused and parked, as by the process that read it first.
  const ahead = orgEvent('ahead', { wall: Date.now() + 3_600_000 });
  // Its row as that process's park wrote it (a rolling restart's old process; the ack to its origin was lost).
  await storeParked(rig.db, ahead, 'clock-skew', 'ahead');
  await rig.publish(ahead);
  const { applier, lines, seen } = await observedApplier();
  try {
    expect(await eventually(() => parkedHere(ahead.changeId), 10_000, 50)).toBe(true);
    expect(await failureRow(ahead.changeId)).toMatchObject({ reason: 'clock-skew', parked: true });
    // Before: counted as parked, and as refused (replication_events_refused_total) a second time in the region.
    expect(applier.parkedEvents).toBe(0);
    expect(seen).toEqual([]);
    expect(lines.filter((l) => /^change events parked/.test(String(l.msg)))).toEqual([]);
  } finally {
    await applier.stop();
  }
}, 30_000);

test('two processes parking the same change at once count it once: the second waits for the first\'s row and finds it parked', async () => {
  await rig.reset();
  // The first process's park runs in a transaction the test holds open (its own connection): the second's
  // statement, on the rig's pool, waits on the row it wrote (a new one, or a failing one it parked).
  const first = new Client({ connectionString: rig.databaseUrl });
  await first.connect();
  const held = { $queryRawUnsafe: async (sql: string, ...values: unknown[]) => (await first.query(sql, values)).rows } as unknown as Db;
  const waitingOnLock = async () =>
    (await rig.db.$queryRawUnsafe<{ n: number }[]>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%replication_failures%'`,
    ))[0]?.n === 1;
  try {
    for (const failingBefore of [false, true]) {
      const event = eventFor('widgets', `w-race-${String(failingBefore)}`, { id: 'w' });
      const item = { event, streamId: '1-0', reason: 'unknown-table' as const, error: 'test' };
      if (failingBefore) await new FailureLog(rig.db).record(event, '1-0', new Error('failed once'));
      await first.query('BEGIN');
      expect(await new FailureLog(held).park([item])).toEqual([item]);
      const second = new FailureLog(rig.db).park([item]);
      expect(await eventually(waitingOnLock, 10_000, 20)).toBe(true);
      await first.query('COMMIT');
      // Before: [item], its `earlier` snapshot taken before the first committed: counted twice in the region.
      expect({ failingBefore, counted: await second }).toEqual({ failingBefore, counted: [] });
      expect(await failureRow(event.changeId)).toMatchObject({ reason: 'unknown-table', parked: true, failures: 1 });
    }
  } finally {
    await first.query('ROLLBACK').catch(() => undefined);
    await first.end();
  }
}, 30_000);

test('a park that fails half way (the database errs on the update of a change parked before) counts the change it parks once, when it is retried', async () => {
  await rig.reset();
  // One change parked by another process (its row as that process wrote it), one new and too far ahead: in one
  // pack, so one park takes both.
  const before = eventFor('widgets', 'w-half', { id: 'w-half' });
  await storeParked(rig.db, before, 'unknown-table', 'no such table');
  const ahead = orgEvent('ahead, parked half way', { wall: Date.now() + 3_600_000 });
  const id = await rig.publishPack([before, ahead]);
  // The first write of this entry's stream id into a parked row fails, as a lost connection or a statement
  // timeout would.
  const half = await failFirstWrite(rig.db, 'half_park', 'replication_failures', 'UPDATE', `NEW.stream_id = '${id}'`);
  const { applier, lines, seen } = await observedApplier();
  try {
    expect(await eventually(() => parkedHere(ahead.changeId), 15_000, 50)).toBe(true);
    expect(await half.met()).toBeGreaterThan(1);
    expect(await failureRow(ahead.changeId)).toMatchObject({ reason: 'clock-skew', parked: true });
    expect(await failureRow(before.changeId)).toMatchObject({ reason: 'unknown-table', parked: true });
    // Before: 0, nothing observed or logged. The first attempt parked the new change, then failed on the other's row;
    // the retry found both parked before.
    expect(applier.parkedEvents).toBe(1);
    expect(seen).toEqual(['clock-skew']);
    expect(lines.filter((l) => /^change events parked/.test(String(l.msg))).map((l) => (l as LogLine & { changes: { changeId: string }[] }).changes.map((c) => c.changeId))).toEqual([[ahead.changeId]]);
  } finally {
    await applier.stop();
    await half.drop();
  }
}, 30_000);
