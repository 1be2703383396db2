/**
 * Deliverer.deliverAll: regions whose inboxes share a Redis get their entries in one pipeline (one socket
 * write), each region's outcome stays its own, and each inbox gets its consumer group first.
 */
import { createRedis, replicationKeys, type Redis } from '../../src/redis';
import { Deliverer, PACK_MAX_BYTES, PACK_MAX_EVENTS } from '../../src/replication/delivery';
import { RedisLinks } from '../../src/replication/links';
import { ensureGroup } from '../../src/replication/stream';
import { REDIS_URL, deleteKeys, inboxEvents, testEventAuth, uniqueName } from '../support/env';

const prefix = `${uniqueName('delivery')}:`;
const keys = replicationKeys(prefix);
const auth = testEventAuth();
let redis: Redis;
let links: RedisLinks;

const event = (n: number) =>
  auth.sign({ changeId: `00000000-0000-7000-8000-${String(n).padStart(12, '0')}`, origin: 'us-iowa', createdAt: new Date().toISOString(), ops: [] });

/** The events of an inbox, in order, each with its entry's id. */
const inbox = async (region: string) => inboxEvents(auth, (await redis.xrange(keys.inbox(region), '-', '+')) as [string, string[]][]);

beforeAll(async () => {
  redis = createRedis(REDIS_URL, 'delivery-test');
  await new Promise((r) => redis.once('ready', r));
  links = new RedisLinks({ region: 'us-iowa', own: redis, name: 'delivery-test', defaultUrl: REDIS_URL, configured: new Map() });
});
afterAll(async () => {
  links.disconnect();
  redis.disconnect();
  await deleteKeys(prefix);
});

test('destinations sharing a Redis get their entries in one pipeline, in order, each inbox with its group', async () => {
  const pipelines = jest.spyOn(redis, 'pipeline');
  try {
    const res = await new Deliverer(keys, auth, 1000).deliverAll(links, new Map([
      ['europe-belgium', [event(1), event(2)]],
      ['asia-japan', [event(3)]],
      ['nowhere', []],
    ]));
    expect(pipelines).toHaveBeenCalledTimes(1);
    expect(res.get('nowhere')).toEqual({ ok: true, value: [] });
    for (const [region, changes] of [['europe-belgium', [1, 2]], ['asia-japan', [3]]] as const) {
      const r = res.get(region);
      if (!r?.ok) throw new Error(`${region} was not delivered`);
      const events = await inbox(region);
      expect(events.map((e) => e.id)).toEqual(r.value);
      expect(events.map((e) => e.changeId)).toEqual(changes.map((n) => event(n).changeId));
      const groups = (await redis.xinfo('GROUPS', keys.inbox(region))) as unknown[][];
      expect(groups.map((g) => g[1])).toEqual([region]);
    }
  } finally {
    pipelines.mockRestore();
  }
});

test('with every group known, the entries are written before anything the caller sends next', async () => {
  const deliverer = new Deliverer(keys, auth, 1000);
  await deliverer.deliverAll(links, new Map([['first', [event(10)]]]));
  // Not awaited: a command sent right after, on the same connection, must find the entry there (the
  // origin sends its own ack right after its deliveries, and they are what all_regions waits on).
  const delivering = deliverer.deliverAll(links, new Map([['first', [event(11)]]]));
  const seen = await redis.xlen(keys.inbox('first'));
  await delivering;
  expect(seen).toBe(2);
});

test('a destination whose entries fail does not fail the others sharing its pipeline', async () => {
  const deliverer = new Deliverer(keys, auth, 1000);
  // Each inbox gets its group; then one of them stops being a stream, so only its XADDs fail.
  await deliverer.deliverAll(links, new Map([['left', [event(20)]], ['broken', [event(21)]], ['right', [event(22)]]]));
  await redis.del(keys.inbox('broken'));
  await redis.set(keys.inbox('broken'), 'x');
  const res = await deliverer.deliverAll(links, new Map([
    ['left', [event(23), event(24)]],
    ['broken', [event(25), event(26), event(27)]],
    ['right', [event(28), event(29)]],
  ]));
  expect(res.get('broken')).toMatchObject({ ok: false, error: expect.objectContaining({ message: expect.stringMatching(/WRONGTYPE/) }) });
  for (const [region, changes] of [['left', [20, 23, 24]], ['right', [22, 28, 29]]] as const) {
    const r = res.get(region);
    if (!r?.ok) throw new Error(`${region} was not delivered`);
    const events = await inbox(region);
    expect(events.map((e) => e.changeId)).toEqual(changes.map((n) => event(n).changeId));
    expect(events.slice(1).map((e) => e.id)).toEqual(r.value);
  }
  // Its group is made sure of again next time (a Redis that lost its data lost the group too).
  await redis.del(keys.inbox('broken'));
  expect(await deliverer.deliver(links, 'broken', [event(30)])).toHaveLength(1);
  expect(((await redis.xinfo('GROUPS', keys.inbox('broken'))) as unknown[][]).map((g) => g[1])).toEqual(['broken']);
});

/** Each entry of an inbox: its field names' first (`e` one event, `p` a pack) and how many events it carries. */
const shapes = async (region: string) =>
  ((await redis.xrange(keys.inbox(region), '-', '+')) as [string, string[]][]).map(([, f]) => `${f[0]}${f[0] === 'p' ? (JSON.parse(f[1] as string) as unknown[]).length : ''}`);

test('packs: once the inbox is known to be short, a delivery\'s events go several to an entry, in order, each with its entry\'s id; a lone event goes as one', async () => {
  const deliverer = new Deliverer(keys, auth, 100_000, true);
  // The first delivery does not know the inbox's length yet: one entry per event.
  expect(deliverer.packBudget('packed')).toBe(0);
  await deliverer.deliverAll(links, new Map([['packed', [event(40), event(41)]]]));
  expect(deliverer.packBudget('packed')).toBe(Math.floor(100_000 / PACK_MAX_EVENTS) - 2);
  const res = await deliverer.deliverAll(links, new Map([['packed', [event(42), event(43), event(44)]]]));
  await deliverer.deliverAll(links, new Map([['packed', [event(45)]]]));
  expect(await shapes('packed')).toEqual(['e', 'e', 'p3', 'e']);
  const events = await inbox('packed');
  expect(events.map((e) => e.changeId)).toEqual([40, 41, 42, 43, 44, 45].map((n) => event(n).changeId));
  const r = res.get('packed');
  expect(r?.ok && r.value).toEqual(events.slice(2, 5).map((e) => e.id));
  expect(new Set(events.slice(2, 5).map((e) => e.id)).size).toBe(1);
  // What /metrics reports (replication_delivered_entries_total / _events_total).
  expect(deliverer.delivered.get('packed')).toEqual({ entries: 4, events: 6 });
});

test('packs end at PACK_MAX_EVENTS events and before PACK_MAX_BYTES; an event larger than that goes alone', async () => {
  const deliverer = new Deliverer(keys, auth, 100_000, true);
  await deliverer.deliverAll(links, new Map([['limits', [event(50)]]]));
  const many = Array.from({ length: PACK_MAX_EVENTS + 3 }, (_, i) => event(100 + i));
  await deliverer.deliverAll(links, new Map([['limits', many]]));
  expect(await shapes('limits')).toEqual(['e', `p${PACK_MAX_EVENTS}`, 'p3']);
  // Events of ~20 KB: three fit under 64 KB; one of 70 KB is an entry of its own between packs.
  const sized = (n: number, kb: number) =>
    auth.sign({ changeId: `00000000-0000-7000-8000-${String(n).padStart(12, '0')}`, origin: 'us-iowa', createdAt: new Date().toISOString(), ops: [{ table: 't', key: 'k', version: '001796040000000.000001.us-iowa', row: { pad: 'x'.repeat(kb * 1024) } }] });
  await deliverer.deliverAll(links, new Map([['limits', [sized(300, 20), sized(301, 20), sized(302, 20), sized(303, 20), sized(304, 70), sized(305, 20), sized(306, 20)]]]));
  expect((await shapes('limits')).slice(3)).toEqual(['p3', 'e', 'e', 'p2']);
  expect((await inbox('limits')).slice(-7).map((e) => e.changeId)).toEqual([300, 301, 302, 303, 304, 305, 306].map((n) => sized(n, 0).changeId));
  expect(PACK_MAX_BYTES).toBe(64 * 1024);
});

test('a delivery makes at most streamMaxLength / PACK_MAX_EVENTS minus the inbox\'s length packs, the rest single; none when packs are off', async () => {
  // The cap counts entries: packs to a long inbox could hold PACK_MAX_EVENTS times the events it allowed.
  const deliverer = new Deliverer(keys, auth, PACK_MAX_EVENTS * 10, true);
  await deliverer.deliverAll(links, new Map([['long', Array.from({ length: 7 }, (_, i) => event(400 + i))]]));
  expect(await shapes('long')).toHaveLength(7);
  expect(deliverer.packBudget('long')).toBe(3);
  // Four groups (three full ones and one of 4): the budget allows three packs, the fourth group goes as 4 single entries.
  const many = Array.from({ length: 3 * PACK_MAX_EVENTS + 4 }, (_, i) => event(1000 + i));
  const res = await deliverer.deliverAll(links, new Map([['long', many]]));
  expect((await shapes('long')).slice(7)).toEqual([`p${PACK_MAX_EVENTS}`, `p${PACK_MAX_EVENTS}`, `p${PACK_MAX_EVENTS}`, 'e', 'e', 'e', 'e']);
  const r = res.get('long');
  expect(r?.ok && r.value.length).toBe(3 * PACK_MAX_EVENTS + 4);
  expect(deliverer.packBudget('long')).toBe(0); // 14 entries now
  await deliverer.deliverAll(links, new Map([['long', [event(420), event(421)]]]));
  expect((await shapes('long')).slice(14)).toEqual(['e', 'e']);

  const off = new Deliverer(keys, auth, 100_000);
  await off.deliverAll(links, new Map([['off', [event(430)]]]));
  await off.deliverAll(links, new Map([['off', [event(431), event(432)]]]));
  expect(off.packBudget('off')).toBe(0);
  expect(await shapes('off')).toEqual(['e', 'e', 'e']);
});

test('an event read back from the outbox whose stored signature does not hold is never packed: it goes alone, with that signature, and is refused', async () => {
  const deliverer = new Deliverer(keys, auth, 100_000, true);
  await deliverer.deliverAll(links, new Map([['laundry', [event(500)]]]));
  // As the relay reads them: plain objects out of jsonb, not the ones signed here.
  const fromOutbox = (e: ReturnType<typeof event>) => JSON.parse(JSON.stringify(e)) as ReturnType<typeof event>;
  const altered = { ...fromOutbox(event(502)), origin: 'asia-japan' };
  const droppedKey = fromOutbox(testEventAuth(`gone:${'g'.repeat(32)}`).sign({ ...event(503), sig: undefined }));
  const unsigned = { ...fromOutbox(event(505)), sig: undefined };
  await deliverer.deliverAll(links, new Map([['laundry', [fromOutbox(event(501)), altered, droppedKey, fromOutbox(event(504)), unsigned, fromOutbox(event(506))]]]));
  expect((await shapes('laundry')).slice(1)).toEqual(['e', 'e', 'e', 'p3']);
  const entries = ((await redis.xrange(keys.inbox('laundry'), '-', '+')) as [string, string[]][]).slice(1);
  expect(entries.map(([, f]) => auth.verify(f))).toMatchObject([
    { ok: true, packed: false }, // 501: alone, the group before the altered one
    { ok: false, reason: 'bad-signature' },
    { ok: false, reason: 'unknown-key' },
    { ok: true, packed: true },
  ]);
  expect((await inbox('laundry')).slice(1).map((e) => e.changeId)).toEqual([
    event(501).changeId, 'refused: bad-signature', 'refused: unknown-key', event(504).changeId, event(505).changeId, event(506).changeId,
  ]);
});

test('packs: destinations given different events in one call each get their own, packed, and none of the other\'s', async () => {
  // The relay's pages: each destination lacks other rows (here b lacks 600-602, c lacks 610-613).
  const deliverer = new Deliverer(keys, auth, 100_000, true);
  await deliverer.deliverAll(links, new Map([['packs-b', [event(599)]], ['packs-c', [event(609)]]]));
  const b = [event(600), event(601), event(602)];
  const c = [event(610), event(611), event(612), event(613)];
  const res = await deliverer.deliverAll(links, new Map([['packs-b', b], ['packs-c', c]]));
  expect(await shapes('packs-b')).toEqual(['e', 'p3']);
  expect(await shapes('packs-c')).toEqual(['e', 'p4']);
  for (const [region, sent] of [['packs-b', b], ['packs-c', c]] as const) {
    const events = (await inbox(region)).slice(1);
    expect(events.map((e) => e.changeId)).toEqual(sent.map((e) => e.changeId));
    const r = res.get(region);
    expect(r?.ok && r.value).toEqual(events.map((e) => e.id));
  }
});

test('an inbox its Redis lost and an origin\'s delivery made again, without the group, is read from its start by the group its region makes then', async () => {
  const deliverer = new Deliverer(keys, auth, 1000);
  await deliverer.deliverAll(links, new Map([['reborn', [event(700)]]]));
  // The Redis loses its data; this origin made sure of the group before, so its next delivery makes the stream alone.
  await redis.del(keys.inbox('reborn'));
  await deliverer.deliverAll(links, new Map([['reborn', [event(701)]]]));
  expect(await redis.xinfo('GROUPS', keys.inbox('reborn'))).toEqual([]);
  // The region's applier makes its group (as at its start): it reads the entry delivered before it did.
  await ensureGroup(redis, keys.inbox('reborn'), 'reborn');
  const read = (await redis.xreadgroup('GROUP', 'reborn', 'reborn-1', 'COUNT', 10, 'STREAMS', keys.inbox('reborn'), '>')) as [string, [string, string[]][]][] | null;
  expect(inboxEvents(auth, read?.[0]?.[1] ?? []).map((e) => e.changeId)).toEqual([event(701).changeId]);
});
