/**
 * A region whose database was restored from a backup lacks every change it applied after the backup was
 * taken, and nothing brings them back: its inbox entries were acked, and their origins confirmed them. Its
 * applier therefore records, in the region's own Redis, how many events of each origin the database has
 * counted as applied (`replication_progress.applied_count`, which only grows), after each count commits.
 * At start a database whose count of an origin is below that mark went back in time: the region marks
 * itself `joining` in every member's Redis (needs_reseed, the console; no tombstone is collected
 * meanwhile) and logs an error naming the re-seed. Then the mark is set to the database's counts, so that
 * the next start, before or after the re-seed, does not find it again. A Redis that lost its data, or a
 * count written to the database and not yet to Redis (a crash between the two), leaves the mark at or
 * below the database's: never a false alarm.
 *
 * The counts see only what the region applied from others: a region that originated the changes since the
 * backup (deletes among them, which the others then applied, and whose tombstones they collect) and applied
 * none came back `active` on a database that still served what it had deleted, and whose later changes of
 * those rows the others refuse. So its relay also records the highest id of its outbox rows the database has
 * committed, in the database (replication_outbox_mark: the outbox rows themselves go once confirmed) and then
 * in its own Redis (recordOutboxMark). A database whose figure is below Redis's was set back the same way.
 *
 * The counts miss a database dropped and created again (or swapped for another): a fresh database holds no
 * count, and a mark holds only what the region applied from others, so a region that mostly originates writes,
 * or that has applied nothing since a re-seed (which resets the mark), came back empty, `active` and ready. So
 * the region also records, in its own Redis, its database's identity: the id of the record of its first
 * migration (random when that migration ran; a backup restored with pg_dump keeps it, and the counts judge
 * it). A database of another identity is marked `joining` the same way, and the record follows it.
 *
 * The applier runs the check first, after it joins; the region opens its port once it has run (region.ts,
 * START_CHECK_WAIT_MS), so that it is never served, nor counted by its peers, as `active` on such a database
 * (it was, for the second before the check ran). With its own Redis down or hung it serves unchecked once
 * that wait ends (`start_check` pending in GET /admin/replication), and the check runs once Redis answers.
 */
import type { Db, SqlReader } from '../db/client';
import { pgCode } from '../db/pg-errors';
import type { Logger } from '../logger';
import type { Redis, ReplicationKeys } from '../redis';
import type { RedisLinks } from './links';
import type { AckSigning } from './ack-auth';
import { markJoining } from './member-record';
import { reseedCommand, type ReseedCommandConfig } from './reseed-command';

/** Raises the mark of each origin to the database's count (never lowers it: ZADD GT). */
export async function raiseAppliedMark(redis: Redis, keys: ReplicationKeys, region: string, counts: readonly { origin_region: string; applied_count: number }[]): Promise<void> {
  if (counts.length === 0) return;
  await redis.zadd(keys.appliedMark(region), 'GT', ...scored(counts));
}

/** ZADD's score-member pairs of the counts. */
const scored = (counts: readonly { origin_region: string; applied_count: number }[]) => counts.flatMap((c) => [c.applied_count, c.origin_region]);

/** The origins whose count the database holds below the mark, with both figures; empty when none. */
export async function countsBehindMark(db: SqlReader, redis: Redis, keys: ReplicationKeys, region: string) {
  // The mark first, then the database: a count is raised in Redis only after it committed, so a mark read first is
  // never ahead of the database read after it, even while another process of the region counts (no false alarm).
  const mark = await redis.zrange(keys.appliedMark(region), 0, -1, 'WITHSCORES');
  const rows = await db.$queryRawUnsafe<{ origin_region: string; applied_count: bigint | string }[]>('SELECT origin_region, applied_count FROM replication_progress');
  const held = new Map(rows.map((r) => [r.origin_region, Number(r.applied_count)]));
  const behind: { origin: string; database: number; mark: number }[] = [];
  for (let i = 0; i + 1 < mark.length; i += 2) {
    const origin = mark[i] as string;
    const marked = Number(mark[i + 1]);
    const database = held.get(origin) ?? 0;
    if (database < marked) behind.push({ origin, database, mark: marked });
  }
  return { behind, counts: [...held].map(([origin_region, applied_count]) => ({ origin_region, applied_count })) };
}

/** The member of the outbox mark (a sorted set of one, so that ZADD GT raises it atomically). */
const OUTBOX_MARK_MEMBER = 'committed';

/**
 * Raises replication_outbox_mark to the highest outbox id committed (the primary key's last entry; nothing
 * while the outbox is empty) and answers the figure it holds then (0: none yet).
 */
const RAISE_OUTBOX_MARK_SQL = `WITH m AS (SELECT max(id) AS through FROM replication_outbox),
  up AS (INSERT INTO replication_outbox_mark AS k (id, committed_through) SELECT 1, through FROM m WHERE through IS NOT NULL
         ON CONFLICT (id) DO UPDATE SET committed_through = EXCLUDED.committed_through WHERE k.committed_through < EXCLUDED.committed_through
         RETURNING committed_through)
SELECT GREATEST((SELECT committed_through FROM up), (SELECT committed_through FROM replication_outbox_mark WHERE id = 1), 0)::text AS through`;

/**
 * Records how far the region's own changes got: in the database first, then (never ahead of it) in its own
 * Redis. Returns the figure Redis holds now (at least), for the caller to skip Redis while it stays the same.
 */
export async function recordOutboxMark(db: Pick<Db, '$queryRawUnsafe'>, redis: Redis, keys: ReplicationKeys, region: string, raised: number): Promise<number> {
  const rows = await db.$queryRawUnsafe<{ through: string }[]>(RAISE_OUTBOX_MARK_SQL);
  const through = Number(rows[0]?.through ?? 0);
  if (through <= raised) return raised;
  await redis.zadd(keys.outboxMark(region), 'GT', through, OUTBOX_MARK_MEMBER);
  return through;
}

/**
 * How far the database got in the region's own changes: replication_outbox_mark, or its newest outbox row when
 * higher (a backup taken between a commit and the relay's record of it holds that row: no false alarm). 0: none;
 * a schema before the mark counts as none.
 */
async function databaseOutboxMark(db: SqlReader): Promise<number> {
  const sql = 'SELECT GREATEST((SELECT committed_through FROM replication_outbox_mark WHERE id = 1), (SELECT max(id) FROM replication_outbox), 0)::text AS through';
  const rows = await db.$queryRawUnsafe<{ through: string }[]>(sql).catch((err: unknown) => {
    if (pgCode(err) === '42P01') return [];
    throw err;
  });
  return Number(rows[0]?.through ?? 0);
}

/** The database's identity: the id of the record of the first migration applied to it (src/db/migrate.ts). */
export const DATABASE_IDENTITY_SQL = 'SELECT id FROM "_prisma_migrations" ORDER BY started_at, migration_name LIMIT 1';

/** The database's identity (DATABASE_IDENTITY_SQL). */
export async function databaseIdentity(db: SqlReader): Promise<string | null> {
  const rows = await db.$queryRawUnsafe<{ id: string }[]>(DATABASE_IDENTITY_SQL);
  return rows[0]?.id ?? null;
}

/**
 * The check at the applier's start. Returns the origins found behind and whether the database was replaced
 * (neither: nothing marked). Throws when its own Redis cannot be read or written (the caller tries again);
 * another member's Redis that does not answer gets the mark from this region's processes, which copy its
 * entry everywhere.
 */
export async function checkRestoredDatabase(d: { db: SqlReader; links: Pick<RedisLinks, 'own' | 'to'>; keys: ReplicationKeys; region: string; regions: readonly string[]; log: Logger; signing?: AckSigning | null; command?: ReseedCommandConfig }) {
  // The command in full, as the start line of a joining region gives it (it lacked REGIONS_CONFIG, which a region
  // run with a config other than ./regions.config.json needs).
  const reseed =
    `marked as needing a re-seed: run ${reseedCommand(d.command ?? {}, d.region)}` +
    ' (if no region is caught up because every region\'s database is new, see docs/operations.md, "Starting over on an old deployment\'s Redis")';
  // Redis's marks before the database's figures (see countsBehindMark): another process of the region may be raising them.
  const [recorded, outboxMark] = await Promise.all([d.links.own.get(d.keys.databaseIdentity(d.region)), d.links.own.zscore(d.keys.outboxMark(d.region), OUTBOX_MARK_MEMBER)]);
  const { behind, counts } = await countsBehindMark(d.db, d.links.own, d.keys, d.region);
  const [identity, outboxHeld] = await Promise.all([databaseIdentity(d.db), databaseOutboxMark(d.db)]);
  const replaced = identity !== null && recorded !== null && identity !== recorded;
  // Its own changes: the database holds fewer of them than it had committed (null: nothing recorded).
  const setBack = outboxMark !== null && Number(outboxMark) > outboxHeld ? { database: outboxHeld, mark: Number(outboxMark) } : null;
  if (replaced) {
    d.log.error(
      { database: identity, before: recorded },
      'this region\'s database is not the one it ran on before (dropped and created again, or another database): it lacks the rows written before, which nothing delivers again; ' + reseed,
    );
  } else if (behind.length > 0) {
    d.log.error({ behind }, 'this region\'s database holds fewer applied changes than it had applied before (restored from a backup, or replaced): it lacks the changes since, which nothing delivers again; ' + reseed);
  } else if (setBack) {
    d.log.error(
      { outbox: setBack },
      'this region\'s database holds fewer of its own changes than it had committed before (restored from a backup, or replaced): it lacks the changes it made since (the other regions hold them), so it serves rows it deleted and misses what it wrote; ' + reseed,
    );
  }
  if (replaced || behind.length > 0 || setBack) {
    await markJoining(d.links.own, d.links, d.keys, d.region, d.regions, { log: d.log, signing: d.signing });
    // The records now follow the database: the next start, before or after the re-seed, does not find it again.
    await recordDatabase(d.links.own, d.keys, d.region, identity, counts, outboxHeld);
  } else if (identity !== null) {
    await d.links.own.set(d.keys.databaseIdentity(d.region), identity);
  }
  return { behind, replaced, setBack };
}

/** Sets the records to what the database holds: the marks to its counts and outbox figure, the identity to its own. */
async function recordDatabase(redis: Redis, keys: ReplicationKeys, region: string, identity: string | null, counts: readonly { origin_region: string; applied_count: number }[], outboxHeld: number): Promise<void> {
  const mark = keys.appliedMark(region);
  const reset = redis.multi().del(mark, keys.outboxMark(region));
  if (counts.length) reset.zadd(mark, ...scored(counts));
  if (outboxHeld > 0) reset.zadd(keys.outboxMark(region), outboxHeld, OUTBOX_MARK_MEMBER);
  if (identity !== null) reset.set(keys.databaseIdentity(region), identity);
  await reset.exec();
}

/**
 * Once a re-seed marked the region joining, and again after it copied a peer's rows into the region's database
 * (reseed.ts): that database is the region's now, whatever it held before (one the re-seed created, its old
 * one lost while the region was down, say). Both records follow it, so that the region's next start does not
 * mark it behind again (it did: a re-seed run before the region was started again was followed by a second one).
 */
export async function recordReseededDatabase(db: SqlReader, redis: Redis, keys: ReplicationKeys, region: string): Promise<void> {
  const [identity, { counts }, outboxHeld] = await Promise.all([databaseIdentity(db), countsBehindMark(db, redis, keys, region), databaseOutboxMark(db)]);
  await recordDatabase(redis, keys, region, identity, counts, outboxHeld);
}
