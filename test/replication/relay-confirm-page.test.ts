/**
 * The relay's confirm round reads its page of unconfirmed rows through the partial index of published,
 * unconfirmed rows (relay-confirm.ts unconfirmedPage). Every row confirmed since the last vacuum leaves an
 * entry there, and with every region up each round starts over from the first id: a read that marks none of
 * them dead (a bitmap scan, which the planner chose when it expected few rows) visits every such row again at
 * every round, a cost that grew with the rows confirmed until a vacuum. Asserted on the index's pages
 * (pageinspect), not on time: after a round, the entries of the rows it stepped over are marked dead.
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
import { REDIS_URL, testEventAuth } from '../support/env';
import { migratedDb, type MigratedDb } from '../support/migrated-db';

let m: MigratedDb;
let own: Redis;
let links: RedisLinks;
const keys = replicationKeys(`relaypage${process.pid}:`);
const auth = testEventAuth();

beforeAll(async () => {
  m = await migratedDb('relayconfirmpage');
  own = new Redis(REDIS_URL);
  links = new RedisLinks({ region: 'a', own, name: 'relaypage', defaultUrl: REDIS_URL, configured: new Map([['a', REDIS_URL], ['b', REDIS_URL], ['c', REDIS_URL]]) });
  await pool().query('CREATE EXTENSION IF NOT EXISTS pageinspect');
  // No vacuum of the test's own: it would remove the entries the round is to mark.
  await pool().query('ALTER TABLE replication_outbox SET (autovacuum_enabled = false)');
}, 60_000);
afterAll(async () => {
  links.disconnect();
  own.disconnect();
  await m.close();
});

const pool = () => poolOf(m.db);

/** Entries on the leaf pages of the partial index of published, unconfirmed rows, and those marked dead. */
async function indexEntries(): Promise<{ all: number; dead: number }> {
  const { rows } = await pool().query<{ all: string; dead: string }>(
    `SELECT count(*)::text AS all, count(*) FILTER (WHERE i.dead)::text AS dead
       FROM generate_series(1, (pg_relation_size('replication_outbox_unconfirmed_idx') / current_setting('block_size')::int - 1)::int) AS p,
            LATERAL bt_page_items('replication_outbox_unconfirmed_idx', p) AS i
      WHERE (SELECT btpo_flags & 1 FROM bt_page_stats('replication_outbox_unconfirmed_idx', p)) = 1`,
  );
  return { all: Number(rows[0]?.all ?? 0), dead: Number(rows[0]?.dead ?? 0) };
}

test('a confirm round marks dead the index entries of the rows confirmed since the last vacuum that it stepped over, so later rounds do not read those rows again', async () => {
  const relay = new OutboxRelay({
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
  // As after a minute of PATCHes with every region up: thousands of rows published and confirmed since the
  // last vacuum, a few hundred published and not yet confirmed when the statistics were taken, and a heap
  // whose order no longer follows the ids (the updates that publish and confirm rows move them). The
  // planner then expects a few hundred rows and reads them without the index's order (a bitmap scan in
  // `npm run bench`, a sequential scan of this small table), stepping over no index entry.
  const ids = Array.from({ length: 6000 }, () => randomUUID());
  const events = ids.map((changeId) => JSON.stringify(auth.sign({ changeId, origin: 'a', createdAt: new Date().toISOString(), ops: [] })));
  await pool().query(
    `INSERT INTO replication_outbox (id, change_id, event, published_at)
     SELECT n, x.id, x.ev::jsonb, now() FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS x(id, ev, n) ORDER BY random()`,
    [ids, events],
  );
  for (const r of ['b', 'c']) await pool().query(`INSERT INTO replication_deliveries (change_id, region, stream_id) SELECT x, $2, '1-0' FROM unnest($1::uuid[]) AS x`, [ids, r]);
  await pool().query('UPDATE replication_outbox SET confirmed_at = now() WHERE id <= 5600');
  await pool().query('ANALYZE replication_outbox');
  await pool().query('UPDATE replication_outbox SET confirmed_at = now() WHERE confirmed_at IS NULL AND id <= 5900');
  expect((await indexEntries()).dead).toBe(0);

  // The 100 rows left are acked by neither destination: the round reads them and confirms none.
  await relay.confirm();
  expect((await pool().query('SELECT count(*)::int AS n FROM replication_outbox WHERE confirmed_at IS NULL')).rows[0].n).toBe(100);
  // Postgres marks an entry dead only once its row version is dead to every snapshot, and on a busy server a
  // snapshot elsewhere can hold the horizon back past the round (clean-clone CIs read 5,600, once 0): rounds go
  // on, as the relay's do every 2 s, until one marks them. The old plan marks none, in any number of rounds.
  let after = await indexEntries();
  for (let round = 0; after.dead < 5600 && round < 20; round++) {
    await new Promise((r) => setTimeout(r, 500));
    await relay.confirm();
    after = await indexEntries();
  }
  expect(after.dead).toBeGreaterThanOrEqual(5600);
});
