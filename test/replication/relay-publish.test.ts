/**
 * The origin's relay delivers the rows its fast path missed. While one destination is down, every row
 * waits for it and the unpublished backlog grows; a row that another, reachable destination lacks must
 * still reach it within a few cycles, wherever it lies in that backlog (README: one destination that is
 * down never holds back the others). A migrated database of the test's own, the shared Redis for the
 * reachable destination b, and nothing listening where destination c's Redis should be.
 */
import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import { createLogger } from '../../src/logger';
import { replicationKeys } from '../../src/redis';
import { poolOf } from '../../src/db/client';
import { Deliverer } from '../../src/replication/delivery';
import { RedisLinks } from '../../src/replication/links';
import { OutboxRelay } from '../../src/replication/relay';
import type { Tracker } from '../../src/replication/tracker';
import { freePorts, REDIS_URL, testEventAuth } from '../support/env';
import { migratedDb, type MigratedDb } from '../support/migrated-db';

let m: MigratedDb;
let own: Redis;
let links: RedisLinks;
let relay: OutboxRelay;
const keys = replicationKeys(`relaypub${process.pid}:`);
const auth = testEventAuth();

beforeAll(async () => {
  m = await migratedDb('relaypublish');
  const [nowhere = 1] = await freePorts(1);
  own = new Redis(REDIS_URL);
  links = new RedisLinks({
    region: 'a',
    own,
    name: 'relaypub',
    defaultUrl: REDIS_URL,
    configured: new Map([['a', REDIS_URL], ['b', REDIS_URL], ['c', `redis://127.0.0.1:${nowhere}`]]),
  });
  relay = new OutboxRelay({
    db: m.db,
    links,
    keys,
    tracker: { ack: async () => undefined } as unknown as Tracker,
    region: 'a',
    regions: ['a', 'b', 'c'],
    log: createLogger({ level: 'silent' }),
    auth,
    deliverer: new Deliverer(keys, auth, 1_000_000),
  });
}, 60_000);
afterAll(async () => {
  links.disconnect();
  await own.del(keys.inbox('b'));
  own.disconnect();
  await m.close();
});

const pool = () => poolOf(m.db);

/** `n` committed changes a minute old; `deliveredTo`: the regions the fast path delivered each to. */
async function committed(n: number, deliveredTo: string[]): Promise<string[]> {
  const ids = Array.from({ length: n }, () => randomUUID());
  const events = ids.map((changeId) => JSON.stringify(auth.sign({ changeId, origin: 'a', createdAt: new Date().toISOString(), ops: [] })));
  await pool().query(
    `INSERT INTO replication_outbox (change_id, event, created_at) SELECT x.id, x.ev::jsonb, now() - interval '1 minute' FROM unnest($1::uuid[], $2::text[]) AS x(id, ev)`,
    [ids, events],
  );
  for (const r of deliveredTo) {
    await pool().query(`INSERT INTO replication_deliveries (change_id, region, stream_id) SELECT x, $2, '1-0' FROM unnest($1::uuid[]) AS x`, [ids, r]);
  }
  return ids;
}

const deliveredToB = async (id: string) =>
  Number((await pool().query(`SELECT 1 FROM replication_deliveries WHERE change_id = $1 AND region = 'b'`, [id])).rowCount);

test('a row that a reachable destination lacks reaches it within a few cycles, behind a backlog that only the down destination lacks', async () => {
  // c is down: 2,100 rows the fast path delivered to b only, so every page of them needs nothing now.
  await committed(2100, ['b']);
  const [late = ''] = await committed(1, []); // its fast path failed for b too (b's Redis blipped)
  for (let cycle = 0; cycle < 3 && (await deliveredToB(late)) === 0; cycle++) await relay.publishPending(1000);
  expect(await deliveredToB(late)).toBe(1);
  expect(await own.xlen(keys.inbox('b'))).toBe(1);
  // The backlog stays unpublished: c still lacks every row.
  expect(Number((await pool().query('SELECT count(*) AS n FROM replication_outbox WHERE published_at IS NULL')).rows[0].n)).toBe(2101);
});

test('the sweep finds a row the tail passed over (it committed after the tail read past its id)', async () => {
  const [early = ''] = await committed(1, []);
  // The tail reads past it; as if it had not committed yet, its row is hidden from that read.
  await pool().query('UPDATE replication_outbox SET created_at = now() + interval \'1 hour\' WHERE change_id = $1', [early]);
  await committed(1, ['b']);
  await relay.publishPending(1000);
  expect(await deliveredToB(early)).toBe(0);
  await pool().query("UPDATE replication_outbox SET created_at = now() - interval '1 minute' WHERE change_id = $1", [early]);
  // The sweep reads 2,000 rows a call and wraps around the backlog (2,104 rows here).
  for (let cycle = 0; cycle < 4 && (await deliveredToB(early)) === 0; cycle++) await relay.publishPending(1000);
  expect(await deliveredToB(early)).toBe(1);
});
