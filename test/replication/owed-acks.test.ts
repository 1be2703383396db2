/**
 * The acks a region owes its origins for parked changes it applied on a retry are kept in its database
 * (replication_retried_acks) until the origin's Redis takes them. A process of the region that stopped
 * before then (and is not started again) leaves them there: another process of the region, running,
 * takes them over on its claim rounds once they are older than a first send's retries (30 s). One applier
 * in the test process; the rows are written as the stopped process would have left them.
 */
import { orgEvent, ORIGIN, REGION, startApplierRig, testId, type ApplierRig } from '../support/applier-rig';
import { eventually } from '../support/harness';

let rig: ApplierRig;
beforeAll(async () => {
  rig = await startApplierRig('owed-acks');
}, 60_000);
afterAll(async () => {
  await rig?.cleanup();
});

test('a running process sends the acks another process of its region owed for more than 30 s, with their outcome, and forgets them', async () => {
  const applier = await rig.applier();
  applier.start();
  // Running: it applies an event of the origin.
  const running = orgEvent('running');
  await rig.publish(running);
  expect(await eventually(async () => (await rig.redis.hget(rig.keys.ack(running.changeId), REGION))?.startsWith('applied') === true)).toBe(true);

  const [held, lost] = [testId(), testId()];
  const appliedAt = new Date(Date.now() - 60_000);
  const winner = { table: 'organizations', key: testId(), version: '000000000000001.0000.asia-japan', originRegion: 'asia-japan' };
  await rig.db.$executeRawUnsafe(
    `INSERT INTO replication_retried_acks (change_id, origin_region, outcome, applied_at) VALUES
       ($1::uuid, $3, NULL, $5::timestamptz), ($2::uuid, $3, $4::jsonb, $5::timestamptz)`,
    held, lost, ORIGIN, JSON.stringify({ outcome: 'superseded', winner }), appliedAt.toISOString(),
  );
  const ack = (id: string) => rig.redis.hget(rig.keys.ack(id), REGION);
  expect(await eventually(async () => (await ack(held))?.startsWith('applied@') === true && (await ack(lost)) !== null, 15_000)).toBe(true);
  expect(await ack(lost)).toMatch(new RegExp(`^superseded:organizations:${winner.key}:${winner.version.replace(/\./g, '\\.')}@`));
  // Each says when the change was applied here (the rows' applied_at, a minute ago), not when it was sent.
  for (const id of [held, lost]) expect(String(await ack(id)).split('@').pop()).toBe(appliedAt.toISOString());
  // Named for the origin's relay, which copies them into its deliveries confirmed on the parked ack. Written
  // after the acks (origin-acks.ts acknowledgeRetried: recordAcks, then recordUnparked), so waited for: read
  // once, right after the acks show, it can be a round trip early.
  const named = [`${held} ${REGION}`, `${lost} ${REGION}`].sort();
  const unparked = async () => (await rig.redis.smembers(rig.keys.unparked(ORIGIN))).sort();
  expect(await eventually(async () => JSON.stringify(await unparked()) === JSON.stringify(named), 15_000)).toBe(true);
  expect(await unparked()).toEqual(named);
  expect(await eventually(async () => (await rig.db.$queryRawUnsafe<{ n: number }[]>('SELECT count(*)::int AS n FROM replication_retried_acks'))[0]?.n === 0)).toBe(true);
}, 60_000);
