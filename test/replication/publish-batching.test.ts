/**
 * The fast path after commit (Replicator.publish): events committed in the same turn of the event loop go
 * out together, in one delivery round (one pipeline per Redis for every destination) with the origin's
 * own acks; an event of a later turn goes in a round of its own. Each destination's inbox holds them in
 * order, and their deliveries are recorded (the outbox rows published, one delivery row per destination).
 */
import { Deliverer } from '../../src/replication/delivery';
import { eventually } from '../support/harness';
import { entryChangeIds, testEventAuth } from '../support/env';
import { startInProcess, type InProcessRegion } from '../support/in-process';

const REGIONS = ['us-iowa', 'europe-belgium', 'asia-japan'];
const ORG = '01a20905-0000-7000-8000-000000000001';
const auth = testEventAuth();
let r: InProcessRegion;

beforeAll(async () => {
  // Only us-iowa runs: the other regions' inboxes fill and nothing reads them.
  r = await startInProcess('pubbatch', REGIONS);
});
afterAll(async () => {
  jest.restoreAllMocks();
  await r?.stop();
});

/** A signed event of us-iowa, stored in its outbox as a committed write's would be. */
async function committed(n: number) {
  const event = auth.sign({ changeId: `01a20905-0000-7000-8000-${String(n).padStart(12, '0')}`, origin: 'us-iowa', createdAt: new Date().toISOString(), ops: [], orgId: ORG });
  await r.region.db.$executeRawUnsafe('INSERT INTO replication_outbox (change_id, event, org_id) VALUES ($1::uuid, $2::jsonb, $3::uuid)', event.changeId, JSON.stringify(event), ORG);
  return event;
}

async function inboxChangeIds(region: string): Promise<string[]> {
  const { links, keys } = r.region.replication;
  const entries = await links.own.xrange(keys.inbox(region), '-', '+');
  return entries.flatMap(([, fields]) => entryChangeIds(auth, fields));
}

/** Per inbox entry of `region` in `of`: how many events it carries. */
async function entrySizes(of: InProcessRegion, region: string): Promise<number[]> {
  const { links, keys } = of.region.replication;
  return (await links.own.xrange(keys.inbox(region), '-', '+')).map(([, fields]) => entryChangeIds(auth, fields).length);
}

test('events of one turn go out in one delivery round with their own acks; a later turn is a round of its own', async () => {
  const rounds = jest.spyOn(Deliverer.prototype, 'deliverAll');
  const [a, b] = [await committed(1), await committed(2)];
  const { repl, links, keys } = r.region.replication;

  repl.publish(a);
  repl.publish(b);
  expect(await eventually(async () => (await inboxChangeIds('asia-japan')).length === 2)).toBe(true);
  // Committed just before its own turn: a row left unpublished for 1 s is the relay's (publishPending's
  // minimum age), which would deliver it in a round of its own first if the wait above took that long.
  const c = await committed(3);
  repl.publish(c);
  expect(await eventually(async () => (await inboxChangeIds('asia-japan')).length === 3)).toBe(true);

  const mine = rounds.mock.calls.filter(([, batches]) => [...batches.values()].some((events) => events.some((e) => [a, b, c].some((x) => x.changeId === e.changeId))));
  expect(mine.map(([, batches]) => Object.fromEntries([...batches].map(([dest, events]) => [dest, events.map((e) => e.changeId)])))).toEqual([
    { 'europe-belgium': [a.changeId, b.changeId], 'asia-japan': [a.changeId, b.changeId] },
    { 'europe-belgium': [c.changeId], 'asia-japan': [c.changeId] },
  ]);
  for (const dest of ['europe-belgium', 'asia-japan']) expect(await inboxChangeIds(dest)).toEqual([a.changeId, b.changeId, c.changeId]);
  // The origin's own acks ("applied" in us-iowa), recorded with the deliveries.
  for (const e of [a, b, c]) expect(await links.own.hget(keys.ack(e.changeId), 'us-iowa')).toMatch(/^applied/);

  // The deliveries are recorded in batches (Replicator.markDelivered): every row published, two deliveries each.
  await repl.flushPublished();
  const rows = await r.region.db.$queryRawUnsafe<{ change_id: string; published: boolean; regions: string[] }[]>(
    `SELECT o.change_id::text, o.published_at IS NOT NULL AS published, ARRAY(SELECT d.region FROM replication_deliveries d WHERE d.change_id = o.change_id ORDER BY d.region) AS regions
       FROM replication_outbox o WHERE o.change_id = ANY($1::uuid[]) ORDER BY o.id`,
    [a, b, c].map((e) => e.changeId),
  );
  expect(rows).toEqual([a, b, c].map((e) => ({ change_id: e.changeId, published: true, regions: ['asia-japan', 'europe-belgium'] })));
});

test('flushPublished records a delivery round that is still under way when it is called', async () => {
  const d = await committed(4);
  r.region.replication.repl.publish(d);
  await new Promise((resolve) => setImmediate(resolve)); // the round has begun: its XADDs are on their way to Redis
  await r.region.replication.repl.flushPublished();
  const rows = await r.region.db.$queryRawUnsafe<{ published: boolean; regions: string[] }[]>(
    `SELECT o.published_at IS NOT NULL AS published, ARRAY(SELECT d.region FROM replication_deliveries d WHERE d.change_id = o.change_id ORDER BY d.region) AS regions
       FROM replication_outbox o WHERE o.change_id = $1::uuid`,
    d.changeId,
  );
  expect(rows).toEqual([{ published: true, regions: ['asia-japan', 'europe-belgium'] }]);
});

test('with the deployment\'s config, events of one turn go to each destination as one pack; with replicationPacks false, one entry each', async () => {
  // One delivery first: the inboxes' lengths are known after it (before, nothing is packed).
  const warm = await committed(8);
  r.region.replication.repl.publish(warm);
  expect(await eventually(async () => (await inboxChangeIds('asia-japan')).includes(warm.changeId))).toBe(true);
  const packed = [await committed(5), await committed(6), await committed(7)];
  const before = (await entrySizes(r, 'asia-japan')).length;
  for (const e of packed) r.region.replication.repl.publish(e);
  expect(await eventually(async () => (await inboxChangeIds('asia-japan')).includes(packed[2]!.changeId))).toBe(true);
  for (const dest of ['europe-belgium', 'asia-japan']) expect((await entrySizes(r, dest)).slice(before)).toEqual([3]);

  const off = await startInProcess('pubnopack', REGIONS, { replicationPacks: false });
  try {
    const sign = (n: number) => auth.sign({ changeId: `01a20905-0000-7000-8000-${String(n).padStart(12, '0')}`, origin: 'us-iowa', createdAt: new Date().toISOString(), ops: [], orgId: ORG });
    const first = sign(10);
    off.region.replication.repl.publish(first); // the inbox's length is known after this one
    expect(await eventually(async () => (await entrySizes(off, 'asia-japan')).length === 1)).toBe(true);
    for (const n of [11, 12, 13]) off.region.replication.repl.publish(sign(n));
    expect(await eventually(async () => (await entrySizes(off, 'asia-japan')).length === 4)).toBe(true);
    expect(await entrySizes(off, 'europe-belgium')).toEqual([1, 1, 1, 1]);
  } finally {
    await off.stop();
  }
});
