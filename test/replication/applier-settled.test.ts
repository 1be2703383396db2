/**
 * Entries the applier will never apply are settled once, not left pending: one refused for its signature,
 * and one whose event does not read as an event (a version that is not "<15 digits>.<6 digits>.<region>"),
 * are dead-lettered and XACKed, once each, and the entries read with them apply. Left pending, such an
 * entry would be taken over again at every claim round (refused and counted again, or failing its whole
 * batch), and would pin the inbox's trim floor.
 */
import { Client } from 'pg';
import { testEventAuth } from '../support/env';
import { blocksAnother, eventually } from '../support/harness';
import { ORIGIN, orgEvent, REGION, startApplierRig, type ApplierRig } from '../support/applier-rig';

let rig: ApplierRig;
beforeAll(async () => {
  rig = await startApplierRig('settled');
});
afterEach(async () => {
  await rig.reset();
});
afterAll(async () => {
  await rig.cleanup();
});

const auth = testEventAuth();
/** The dead-letter entries copied from inbox entry `id`. */
const deadLettersOf = async (id: string) =>
  ((await rig.redis.xrange(rig.keys.deadLetter, '-', '+')) as [string, string[]][]).map(([, f]) => f).filter((f) => f[1] === REGION && f[3] === id);

test('an entry refused for its signature is dead-lettered and XACKed once; claim rounds do not refuse it again', async () => {
  const [e, body, ...sig] = auth.entryFields(orgEvent('forged')) as string[];
  const forged = String(await rig.redis.xadd(rig.keys.inbox(REGION), '*', e!, body!.replace('forged', 'FORGED'), ...sig));
  const after = orgEvent('after the forged one');
  await rig.publish(after);
  // Claim rounds every 100 ms, taking over what has been pending for 50 ms.
  const applier = await rig.applier();
  applier.start();
  expect(await eventually(async () => (await rig.orgName(after.orgId)) === 'after the forged one', 10_000, 50)).toBe(true);
  expect(await eventually(async () => (await rig.pendingCount()) === 0, 5000, 50)).toBe(true);
  expect(applier.refusedEvents).toBe(1);
  expect(applier.recentRefused.map((r) => [r.streamId, r.reason])).toEqual([[forged, 'bad-signature']]);
  expect((await deadLettersOf(forged)).map((f) => f.slice(4, 6))).toEqual([['refused', 'bad-signature']]);
  await applier.stop();
}, 30_000);

test('a refused entry claiming an origin that is not a member is counted under "unknown", not under the name it claims', async () => {
  const stranger = { ...orgEvent('from a stranger'), origin: 'x'.repeat(40) };
  const [e, body, k, , s, mac] = auth.entryFields(stranger) as string[];
  const forged = String(await rig.redis.xadd(rig.keys.inbox(REGION), '*', e!, body!, k!, 'no-such-key', s!, mac!));
  const member = orgEvent('from a member');
  const [e2, body2, ...sig2] = auth.entryFields(member) as string[];
  const altered = String(await rig.redis.xadd(rig.keys.inbox(REGION), '*', e2!, body2!.replace('member', 'MEMBER'), ...sig2));
  const applier = await rig.applier();
  const counted: [string, string][] = [];
  applier.onRefused = (origin, reason) => counted.push([origin, reason]);
  applier.start();
  expect(await eventually(async () => applier.refusedEvents === 2, 10_000, 50)).toBe(true);
  // The metric's label: a known region, else 'unknown' (a label per claimed name would let whoever can write to Redis add series at will).
  expect(counted).toEqual([['unknown', 'unknown-key'], [ORIGIN, 'bad-signature']]);
  // The listing shows what the entry claims.
  expect(applier.recentRefused.map((r) => [r.streamId, r.origin])).toEqual([[forged, stranger.origin], [altered, ORIGIN]]);
  await applier.stop();
}, 30_000);

// The first is refused by its shape; the other two have the shape and failed parseVersion inside the batch's
// apply, which failed the whole batch, left it pending and took it over again at every claim round.
test.each([
  ['too few digits', '1796120408762.1.us-iowa'],
  ['an empty region', '001796120408762.000000.'],
  ['a line break in the region', '001796120408762.000000.us\niowa'],
])('an event whose version does not read as one (%s) is dead-lettered, and does not hold back the entries read with it', async (_what, malformed) => {
  const bad = orgEvent('bad version');
  const op = bad.ops[0]!;
  bad.ops[0] = { ...op, version: malformed, row: { ...op.row, version: malformed } };
  const badId = await rig.publish(bad);
  const good = orgEvent('read with it');
  await rig.publish(good);
  const applier = await rig.applier();
  applier.start();
  expect(await eventually(async () => (await rig.orgName(good.orgId)) === 'read with it', 10_000, 50)).toBe(true);
  expect(await eventually(async () => (await rig.pendingCount()) === 0, 5000, 50)).toBe(true);
  expect(await rig.orgName(bad.orgId)).toBeNull();
  expect(await deadLettersOf(badId)).toHaveLength(1);
  expect(applier.appliedEvents).toBe(1);
  await applier.stop();
}, 30_000);

test("pending entries trimmed from the inbox before they were applied are counted as lost, once, and leave the pending list", async () => {
  const [lostA, lostB] = [orgEvent('trimmed while pending'), orgEvent('trimmed while pending too')];
  const ids = [await rig.publish(lostA), await rig.publish(lostB)];
  // Read (pending) by the applier's consumer and by another one, as by processes that died before applying them.
  await rig.redis.call('XREADGROUP', 'GROUP', REGION, 'test', 'COUNT', 1, 'STREAMS', rig.keys.inbox(REGION), '>');
  await rig.redis.call('XREADGROUP', 'GROUP', REGION, 'other', 'COUNT', 1, 'STREAMS', rig.keys.inbox(REGION), '>');
  expect(await rig.pendingCount()).toBe(2);
  // The origin's relay trims them past the inbox's cap (here: deleted by hand).
  await rig.redis.xdel(rig.keys.inbox(REGION), ...ids);
  const after = orgEvent('after the trimmed ones');
  await rig.publish(after);
  const applier = await rig.applier();
  applier.start();
  expect(await eventually(async () => (await rig.orgName(after.orgId)) === 'after the trimmed ones', 10_000, 50)).toBe(true);
  // Its own history names the first as deleted (XREADGROUP), a claim round the other's (XAUTOCLAIM).
  expect(await eventually(async () => applier.lostEntries === 2 && (await rig.pendingCount()) === 0, 10_000, 50)).toBe(true);
  // Several claim rounds later, still counted once each.
  await new Promise((r) => setTimeout(r, 500));
  expect(applier.lostEntries).toBe(2);
  expect(await rig.orgName(lostA.orgId)).toBeNull();
  await applier.stop();
}, 30_000);

test('an entry trimmed from the inbox while its apply here waits on a lock is not counted as lost: the apply holds it, and applies it', async () => {
  const locker = new Client({ connectionString: rig.databaseUrl });
  await locker.connect();
  let locked = true;
  try {
    // Every apply of an organization waits while a session idle in a transaction holds the table.
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE organizations IN SHARE MODE');
    const held = orgEvent('applied after its entry was trimmed');
    const id = await rig.publish(held);
    // Claim rounds every 100 ms, taking over what has been pending for 50 ms: they come while the apply waits.
    const applier = await rig.applier();
    applier.start();
    expect(await eventually(() => blocksAnother(locker), 10_000, 50)).toBe(true);
    // The origin's relay trims it past the inbox's cap (here: deleted by hand); a claim round finds it gone
    // (XAUTOCLAIM names it and drops it from the pending list).
    await rig.redis.xdel(rig.keys.inbox(REGION), id);
    expect(await eventually(async () => (await rig.pendingCount()) === 0, 10_000, 50)).toBe(true);
    await locker.query('ROLLBACK');
    locked = false;
    expect(await eventually(async () => (await rig.orgName(held.orgId)) === 'applied after its entry was trimmed', 10_000, 50)).toBe(true);
    expect(applier.appliedEvents).toBe(1);
    expect(applier.lostEntries).toBe(0);
    await applier.stop();
  } finally {
    if (locked) await locker.query('ROLLBACK').catch(() => undefined);
    await locker.end();
  }
}, 30_000);
