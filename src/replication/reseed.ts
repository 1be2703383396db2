/**
 * Re-seeds a region from a peer region: a region added to a running deployment, or one whose inbox lost
 * entries to its cap before it read them.
 * 0. The peer must have caught up (peerLacks; --force skips it): what the target's cap trimmed reaches the
 *    target only through this copy, so a change the peer lacks now would be lost there for good.
 * 1. The target must be registered in every region's Redis: from then on, every origin delivers to it
 *    each change it has not confirmed (membership.ts, relay.ts), so what the copy below misses (a change
 *    the peer had not applied yet) still reaches it through its inbox; whatever an origin confirmed
 *    without it, the peer had applied before the target registered there, hence before the copy.
 *    Its pending inbox entries that the cap trimmed are acked (nothing is left to read).
 * 2. Every row of every replicated table is copied from the peer's database into the target's, through
 *    the row store's merge rule and per-key locks, so the target keeps whatever it holds that is newer.
 * 3. The target takes the peer's collection cut-off as its own (if higher), then its rows whose tombstones
 *    the peer collected are removed (removeCollected), and the peer's applied progress per origin, read
 *    before the copy (applied-progress.ts takePeerProgress: the lag figures).
 * All steps are idempotent, and the target may keep serving meanwhile. The target is marked joining
 * throughout (in its own Redis first, then in every other region's), so no region collects tombstones
 * meanwhile (horizon.ts).
 * An operator tool: it reads the peer's database directly (regions never do).
 */
import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { redisUrlOf } from '../config';
import type { ConfigFile } from '../config-schema';
import { CONNECTION_REFUSED } from '../connection-refused';
import { databaseAddress } from '../db/address';
import { createDb, type Db } from '../db/client';
import { ensureDatabase, migrate } from '../db/migrate';
import { createRedis, replicationKeys, type Redis, type ReplicationKeys } from '../redis';
import { peerProgress, takePeerProgress } from './applied-progress';
import { readAck, type AckSigning } from './ack-auth';
import { eachRegion, RedisLinks } from './links';
import { activateAfterReseed, countsByNameOnly, readMembers, updateMember, type MemberWriter } from './member-record';
import { DATABASE_IDENTITY_SQL, recordReseededDatabase } from './restore-check';
import { regionsOf } from './reseed-command';
import { RowStore } from './row-store';
import { behindTrim, compareStreamIds, groupFloor, groupInfo, previousStreamId, streamBounds } from './stream';
import type { ReplicatedTable, Row, RowChange } from './tables';
import { RAISE_COLLECTED_THROUGH_SQL } from './tombstones';
import { sessionConfig } from '../db/session';

export interface ReseedResult {
  from: string;
  to: string;
  /** Pending entries of the target that the cap had trimmed, acked. */
  trimmedPendingAcked: number;
  /** Per table: rows copied from the peer, rows that changed here, rows removed (collected in the peer). */
  tables: Record<string, { rows: number; changed: number; removed: number }>;
}

const PAGE = 500;
/** Changes of one origin looked at per check (their acks are read one by one). */
const LACK_LIMIT = 10_000;

export interface ReseedOptions {
  /** Copy without checking that the peer caught up (an origin whose database is gone for good, say). */
  force?: boolean;
  /** How long to wait for the peer to catch up before refusing; default 30 s. */
  waitMs?: number;
  /** How the peer's acks in its origins' Redis are read (config `ackSignatures`; in `require` mode only signed ones count). */
  signing?: AckSigning;
  /**
   * The regions whose database the command line gave over their entry (scripts/reseed.ts), with the flag that gave it:
   * what to check when one cannot be reached, and what to give for one that was not.
   */
  given?: ReadonlyMap<string, string>;
}

/** How many changes the peer's operator discarded (replication_discarded; none in a database of an older version). */
async function discardedIn(peerDb: Client): Promise<number> {
  const t = await peerDb.query<{ t: string | null }>(`SELECT to_regclass('replication_discarded')::text AS t`);
  if (!t.rows[0]?.t) return 0;
  return (await peerDb.query<{ n: number }>('SELECT count(*)::int AS n FROM replication_discarded')).rows[0]?.n ?? 0;
}

/**
 * What the peer still lacks, as far as its origins and its own database show: per other region, changes it
 * committed before the first look (`befores`, on its own clock) that the peer has not acked (neither its
 * delivery to the peer confirmed nor the peer's ack in its Redis), and the changes the peer holds failing or
 * parked. The target gets none of these from its inbox if the cap trimmed
 * them there, so a copy made now would miss them for good. Empty when caught up.
 */
async function peerLacks(file: ConfigFile, from: string, to: string, befores: Map<string, Date>, peerDb: Client, links: RedisLinks, keys: ReplicationKeys, opts: ReseedOptions): Promise<string[]> {
  const lacks: string[] = [];
  const failures = await peerDb.query<{ failing: number; parked: number }>(
    'SELECT count(*) FILTER (WHERE parked_at IS NULL)::int AS failing, count(*) FILTER (WHERE parked_at IS NOT NULL)::int AS parked FROM replication_failures',
  );
  const f = failures.rows[0];
  if (f && (f.failing || f.parked)) lacks.push(`${from} holds ${f.failing} change(s) failing and ${f.parked} parked (GET /admin/replication on ${from}; retry or resolve them first)`);
  for (const origin of file.regions.filter((r) => r.id !== from && r.id !== to)) {
    const hint = opts.given?.has(origin.id) ? '' : ` (if ${origin.id} runs on a DATABASE_URL of its own, give that one with --database-url ${origin.id}=<url>)`;
    const db = new Client(sessionConfig(origin.databaseUrl));
    try {
      await db.connect();
      if (await notRunOn(links.to(origin.id), keys, origin.id, db)) {
        lacks.push(`${origin.id}'s database at ${databaseAddress(origin.databaseUrl)} is not the one ${origin.id} runs on (its Redis records another), so whether ${from} has all its changes is unknown${hint}`);
        continue;
      }
      // The cut-off on the origin's own clock, taken at the first look (the command's host may differ).
      let before = befores.get(origin.id);
      if (!before) {
        before = (await db.query<{ now: Date }>('SELECT now() AS now')).rows[0]?.now ?? new Date();
        befores.set(origin.id, before);
      }
      const r = await db.query<{ change_id: string }>(
        `SELECT o.change_id::text AS change_id FROM replication_outbox o
          WHERE o.confirmed_at IS NULL AND o.created_at < $2
            AND NOT EXISTS (SELECT 1 FROM replication_deliveries d WHERE d.change_id = o.change_id AND d.region = $1 AND d.confirmed_at IS NOT NULL)
          ORDER BY o.id LIMIT ${LACK_LIMIT}`,
        [from, before],
      );
      // The origin's relay records a delivery's ack every 2 s while it runs: an ack the peer already wrote
      // into the origin's Redis counts too (the origin's process may be down with its database up), if it
      // counts (readAck: in `require` mode only a signed one).
      const pipe = links.to(origin.id).pipeline();
      for (const row of r.rows) pipe.hget(keys.ack(row.change_id), from);
      const acked = r.rows.length ? ((await pipe.exec()) ?? []) : [];
      const n = r.rows.filter((row, i) => {
        const [err, ack] = acked[i] ?? [new Error('missing reply')];
        return err || typeof ack !== 'string' || readAck(opts.signing, row.change_id, from, ack) === 'refused';
      }).length;
      if (n) lacks.push(`${origin.id} has ${n}${r.rows.length === LACK_LIMIT ? ' or more' : ''} change(s) ${from} has not applied yet`);
    } catch (err) {
      lacks.push(`${origin.id}'s database at ${databaseAddress(origin.databaseUrl)} cannot be read (${(err as Error).message}), so whether ${from} has all its changes is unknown${hint}`);
    } finally {
      await db.end().catch(() => undefined);
    }
  }
  return lacks;
}

export async function reseed(file: ConfigFile, from: string, to: string, tables: readonly ReplicatedTable[], opts: ReseedOptions = {}): Promise<ReseedResult> {
  const { source, target } = regionsOf(file, from, to);
  const keys = replicationKeys(file.redisKeyPrefix);
  // Bounded: a Redis that hangs or is down fails the re-seed (it waited for ever, printing nothing).
  const redis = createRedis(redisUrlOf(file, to), `reseed:${process.pid}`, { queueWhileOffline: true, commandTimeoutMs: 5000 });
  const links = new RedisLinks({
    region: to, own: redis, name: `reseed:${process.pid}`, defaultUrl: file.redisUrl,
    configured: new Map(file.regions.map((r) => [r.id, redisUrlOf(file, r.id)])),
  });
  const peerDb = new Client(sessionConfig(source.databaseUrl));
  await ensureDatabase(target.databaseUrl).then(() => migrate(target.databaseUrl)).catch((err: unknown) => {
    throw databaseFailure('the target', to, target.databaseUrl, err, opts.given);
  });
  const db = createDb(target.databaseUrl, { poolSize: 2 });
  const run: ReseedRun = { file, from, to, keys, links, peerDb, db, writer: { signing: opts.signing } };
  try {
    await checkMembers(run, opts);
    await checkPeerInbox(run);
    await peerDb.connect().catch((err: unknown) => {
      throw databaseFailure('the peer', from, source.databaseUrl, err, opts.given, '--from-database-url');
    });
    if (await notRunOn(links.to(from), keys, from, peerDb)) {
      const check = opts.given?.has(from)
        ? 'check the URL given with --from-database-url'
        : `${from} runs on a DATABASE_URL of its own, say, and this is its entry's. Nothing was copied: give the database ${from} runs on with --from-database-url`;
      throw new Error(`the peer ${from}'s database at ${databaseAddress(source.databaseUrl)} is not the one ${from} runs on (${from}'s Redis records another): ${check}`);
    }
    // The peer must hold every change the target may have lost: what any origin committed before now.
    // Later changes reach the target through its inbox (it is a member), whatever the peer holds.
    if (!opts.force) await waitForPeer(run, opts);
    // Joining until the copy is done: no region collects tombstones meanwhile (horizon.ts). Without this a
    // region could collect a tombstone the target still lacks before the copy reaches it, and the target's
    // stale row would stay.
    // The entry names this re-seed: a relay that marks the target behind meanwhile rewrites it without.
    const token = randomUUID();
    await markJoining(run, token);
    // The database being filled is the region's from now on (it is joining until the copy is done): a start of
    // the region meanwhile (its supervisor restarting it once the database exists) must not mark it behind again,
    // which cleared this re-seed's token and failed it at the end. Recorded again after the copy.
    await recordReseededDatabase(db, redis, keys, to);
    // Pending entries older than the oldest entry left were trimmed: nothing is left to read.
    const bounds = await streamBounds(redis, keys.inbox(to));
    const trimmedPendingAcked = bounds ? await ackTrimmedPending(redis, keys.inbox(to), to, bounds.firstId ? previousStreamId(bounds.firstId) : bounds.lastGeneratedId) : 0;

    const store = await RowStore.load(db, tables);
    const progress = await peerProgress(peerDb, from, to);
    const copied: ReseedResult['tables'] = {};
    for (const table of tables) copied[table.name] = await copyTable(run, store, table);
    await takeCutOff(run, store, tables, copied);
    await takePeerProgress(db, progress);
    await recordReseededDatabase(db, redis, keys, to);
    await activate(run, token);
    return { from, to, trimmedPendingAcked, tables: copied };
  } finally {
    links.disconnect();
    redis.disconnect();
    await peerDb.end().catch(() => undefined);
    await db.$disconnect();
  }
}

/**
 * A database of the re-seed that could not be reached or prepared, said with whose it is and what to check: it said
 * only what the driver did (`connect ECONNREFUSED 127.0.0.1:5433`). `flag`: what gives the region's database when it
 * runs on another than its entry's, said when the command line gave none (the peer's entry, read while the peer runs on
 * a DATABASE_URL of its own, failed here).
 */
function databaseFailure(role: string, region: string, databaseUrl: string, err: unknown, given: ReadonlyMap<string, string> = new Map(), flag?: string): Error {
  const e = err as Error & { code?: unknown };
  const why = e.code === 'ECONNREFUSED' ? CONNECTION_REFUSED : `${e.message}${typeof e.code === 'string' ? ` (${e.code})` : ''}`;
  const givenFlag = given.get(region);
  const check = givenFlag
    ? `the URL given with ${givenFlag} (over the databaseUrl of ${region} in the regions config)`
    : `the databaseUrl of ${region} in the regions config${flag ? ` (if ${region} runs on a DATABASE_URL of its own, give that one with ${flag})` : ''}`;
  return new Error(`${role} ${region}'s database at ${databaseAddress(databaseUrl)} cannot be reached or prepared (${why}). Check that Postgres runs there, and ${check}`, { cause: err });
}

/** What the steps of one re-seed share: its regions, and the connections it opened. */
interface ReseedRun {
  file: ConfigFile;
  from: string;
  to: string;
  keys: ReplicationKeys;
  links: RedisLinks;
  peerDb: Client;
  db: Db;
  /** How the target's membership entry is written (signed when the config's `ackSignatures` signs). */
  writer: MemberWriter;
}

/**
 * Checks each region's Redis: the target is registered there, every member is one the config names, and
 * the peer is active (unless forced); under `ackSignatures: require` its entry must verify as well.
 */
async function checkMembers({ file, from, to, keys, links }: ReseedRun, opts: ReseedOptions): Promise<void> {
  for (const r of file.regions) {
    await links.ready(r.id);
    const { members } = await readMembers(links.to(r.id), keys, opts.signing?.requires ? opts.signing.auth : null).catch((err: Error) => {
      throw new Error(`cannot read the members in ${r.id}'s Redis (${err.message}); re-seed once it is up`);
    });
    if (!members.has(to)) throw new Error(`${to} is not registered in ${r.id}'s Redis yet: start ${to} first (it registers itself in every region's Redis), then re-seed`);
    // A member this config does not name (added at runtime while this config stayed as it was): its Redis
    // would get no joining mark, and whether the peer lacks its changes would go unchecked.
    const unnamed = [...members.keys()].filter((m) => !file.regions.some((c) => c.id === m)).sort();
    if (unnamed.length) {
      // Under require, one whose entry does not verify may be planted rather than added: said so.
      const unverified = unnamed.filter((m) => countsByNameOnly(members.get(m) ?? { verified: null }, opts.signing));
      const planted = unverified.length ? `; the entry of ${unverified.join(', ')} does not verify (planted?)` : '';
      throw new Error(`${r.id}'s Redis records ${unnamed.join(', ')} as member${unnamed.length > 1 ? 's' : ''}, which this config does not name (added at runtime?${planted}): re-seed with a config that names every member (docs/operations.md, "Adding a region"), or remove what is gone (npm run members -- remove)`);
    }
    // A peer that needs a re-seed itself (its cap trimmed changes it never read; or it joined and was never
    // seeded) lacks what it lost, and its origins count those as confirmed: nothing below would show it.
    const peer = members.get(from);
    // Under require an entry that does not verify says nothing of its state (docs/membership-signing.md §3).
    if (!opts.force && peer && countsByNameOnly(peer, opts.signing)) {
      throw new Error(`${from}'s membership entry in ${r.id}'s Redis does not verify (${peer.verified}): re-seed from a region whose entry does`);
    }
    const peerState = peer?.state;
    if (!opts.force && peerState !== 'active') {
      // None active: every region started on a database it had not run on (a new deployment on the Redis keys
      // of an old one, every database dropped): there is no peer to copy from, only regions to declare current.
      const noneActive = ![...members.values()].some((m) => m.state === 'active' && !countsByNameOnly(m, opts.signing));
      throw new Error(
        `${from} is ${peerState ?? 'not a member'} in ${r.id}'s Redis (it needs a re-seed itself, or is not seeded yet): re-seed from an active region` +
          (noneActive
            ? '. No member is active there: if every region\'s database was replaced (a new deployment on the Redis keys of an old one), ' +
              'mark the region that holds the data to keep active (npm run members -- activate <region>) and re-seed the others from it ' +
              '(docs/operations.md, "Starting over on an old deployment\'s Redis")'
            : ''),
      );
    }
  }
}

/**
 * Whether `db` is not the database `region` runs on, as far as the region's own Redis shows: the identity of its
 * database recorded there (restore-check.ts) is another's. A region started with a DATABASE_URL of its own runs on a
 * database its entry does not name, and the entry's (a stale copy, or one never used) was read as its own. Unknown (no
 * record: a Redis that lost its data) counts as the one; so does a copy of its database (pg_dump keeps the identity).
 */
async function notRunOn(redis: Redis, keys: ReplicationKeys, region: string, db: Client): Promise<boolean> {
  const [recorded, held] = await Promise.all([redis.get(keys.databaseIdentity(region)), db.query<{ id: string }>(DATABASE_IDENTITY_SQL)]);
  const identity = held.rows[0]?.id;
  return recorded !== null && identity !== undefined && identity !== recorded;
}

/** Refuses a peer whose own inbox cap trimmed entries it had not read. */
async function checkPeerInbox({ from, keys, links }: ReseedRun): Promise<void> {
  const peerRedis = links.to(from);
  const peerInbox = keys.inbox(from);
  const peer = (await groupInfo(peerRedis, peerInbox)).find((g) => g.name === from);
  if (!peer) throw new Error(`no consumer group for ${from}`);
  if (behindTrim(peer, await groupFloor(peerRedis, peerInbox, peer), await streamBounds(peerRedis, peerInbox))) {
    throw new Error(`${from} fell behind its inbox cap too; re-seed from another region`);
  }
}

/** Waits, up to `opts.waitMs`, until the peer lacks nothing (peerLacks); refuses one that discarded changes. */
async function waitForPeer({ file, from, to, keys, links, peerDb }: ReseedRun, opts: ReseedOptions): Promise<void> {
  // A change the peer's operator discarded is missing there for good: waiting would not help.
  const discarded = await discardedIn(peerDb);
  if (discarded > 0) {
    throw new Error(`${from} discarded ${discarded} change(s) it could not apply (GET /admin/replication/parked/discarded/<id> on ${from}), so a copy from it would lack them: re-seed from another region; --force copies anyway`);
  }
  const befores = new Map<string, Date>();
  const until = Date.now() + (opts.waitMs ?? 30_000);
  let lacks = await peerLacks(file, from, to, befores, peerDb, links, keys, opts);
  while (lacks.length && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 500));
    lacks = await peerLacks(file, from, to, befores, peerDb, links, keys, opts);
  }
  if (lacks.length) {
    throw new Error(`${from} has not caught up, so a copy from it now could miss changes ${to} lost for good: ${lacks.join('; ')}. Re-seed once it has (or from another region); --force copies anyway`);
  }
}

/** Copies every row of `table` from the peer's database into the target's, a page at a time. */
async function copyTable({ peerDb, db }: ReseedRun, store: RowStore, table: ReplicatedTable): Promise<ReseedResult['tables'][string]> {
  const t = `"${table.name}"`;
  const k = `"${table.key}"`;
  let after: string | null = null;
  const stats = { rows: 0, changed: 0, removed: 0 };
  for (;;) {
    const page: { rows: { key: string; row: Row }[] } = after === null
      ? await peerDb.query(`SELECT ${k}::text AS key, to_jsonb(x) AS row FROM ${t} x ORDER BY ${k} LIMIT ${PAGE}`)
      : await peerDb.query(`SELECT ${k}::text AS key, to_jsonb(x) AS row FROM ${t} x WHERE ${k} > $1 ORDER BY ${k} LIMIT ${PAGE}`, [after]);
    if (page.rows.length === 0) break;
    const changes: RowChange[] = page.rows.map((r) => ({ table: table.name, key: r.key, version: String(r.row.version), row: r.row }));
    const res = await db.$transaction(async (tx) => {
      await store.lockAll(tx, changes);
      return store.apply(tx, changes);
    });
    stats.rows += changes.length;
    stats.changed += res.changed;
    after = page.rows[page.rows.length - 1]?.key ?? null;
    if (page.rows.length < PAGE) break;
  }
  return stats;
}

/** The target takes the peer's collection cut-off, then loses the rows the peer collected (counted in `copied`). */
async function takeCutOff({ peerDb, db }: ReseedRun, store: RowStore, tables: readonly ReplicatedTable[], copied: ReseedResult['tables']): Promise<void> {
  // Read after the copy: a tombstone the peer collected while a table was being copied counts too.
  const through = await peerCollectedThrough(peerDb);
  if (through) {
    // Below the peer's cut-off the target holds what the peer holds once the rows below are removed, so
    // it must also refuse what the peer refuses: a change of a row whose tombstone was collected
    // (row-store.ts, collected()). Without the cut-off, a region added or restored after a collection
    // applied a late or replayed create of a collected row, and held it alone for good. Written after
    // the copy (which the cut-off would refuse rows of) and before the removal: the applier reads it under
    // the per-key locks the removal takes, so a change applied before the write is removed, and none after.
    await db.$executeRawUnsafe(RAISE_COLLECTED_THROUGH_SQL, through);
    for (const table of tables) {
      const stats = copied[table.name];
      if (stats && !table.prunedLocally) stats.removed = await removeCollected(db, peerDb, store, table, through);
    }
  }
}

/**
 * Seeded: a region that joined a running deployment is now an active member, in its own Redis first
 * (its processes copy its entry into any Redis missed here), unless it was marked behind during the copy.
 */
async function activate({ file, to, keys, links, writer }: ReseedRun, token: string): Promise<void> {
  if (!(await activateAfterReseed(links.own, keys, to, token, writer))) {
    throw new Error(
      `${to} was marked as needing a re-seed again while this one copied (its inbox cap trimmed changes it had not applied, or its entry changed): it stays joining; run the re-seed again`,
    );
  }
  // Then the others' Redis, best effort: the target's processes copy their entry everywhere.
  await eachRegion(file.regions.map((r) => r.id).filter((r) => !links.sharesOwn(r)), (r) => updateMember(links.to(r), keys, to, { state: 'active' }, writer));
}

/** The cut-off below which the peer collected tombstones ('' when it collected none; tombstones.ts). */
async function peerCollectedThrough(peerDb: Client): Promise<string> {
  const r = await peerDb.query<{ through: string }>('SELECT collected_through AS through FROM replication_horizon WHERE id = 1').catch(() => ({ rows: [] }));
  return r.rows[0]?.through ?? '';
}

/**
 * Removes the target's rows that the peer lacks and that were created before the peer's collection
 * cut-off: such a row was created everywhere before the horizon, so the peer lacking it means the peer
 * collected its tombstone, and the target's copy is one whose deletion it missed (a database restored
 * from a backup, a region added again with its old database). Taken under the rows' per-key locks, and
 * checked again there.
 */
async function removeCollected(db: Db, peerDb: Client, store: RowStore, table: ReplicatedTable, through: string): Promise<number> {
  const t = `"${table.name}"`;
  const k = `"${table.key}"`;
  const old = `COALESCE(NULLIF(created_version, ''), version) < $1`;
  let removed = 0;
  let after = '';
  for (;;) {
    const page = await db.$queryRawUnsafe<{ key: string }[]>(
      `SELECT ${k}::text AS key FROM ${t} WHERE ${old} AND ${k}::text > $2 ORDER BY ${k}::text LIMIT ${PAGE}`, through, after,
    );
    if (page.length === 0) return removed;
    const keys = page.map((r) => r.key);
    const present = new Set((await peerDb.query<{ key: string }>(`SELECT ${k}::text AS key FROM ${t} WHERE ${k}::text = ANY($1::text[])`, [keys])).rows.map((r) => r.key));
    const gone = keys.filter((key) => !present.has(key));
    if (gone.length) {
      removed += await db.$transaction(async (tx) => {
        await store.lockAll(tx, gone.map((key) => ({ table: table.name, key })));
        return tx.$executeRawUnsafe(`DELETE FROM ${t} WHERE ${old} AND ${k}::text = ANY($2::text[])`, through, gone);
      });
    }
    after = keys[keys.length - 1] ?? after;
    if (page.length < PAGE) return removed;
  }
}

/**
 * Marks `region` joining for this re-seed in its own Redis, then in every other region's (`regions`), or
 * throws, naming each Redis where it could not be written: a region whose Redis lacks the mark could
 * collect during the copy a tombstone the target still lacks. Where the mark was written it stays (the
 * target holds the horizon until a re-seed completes).
 */
async function markJoining({ file, to: region, keys, links, writer }: ReseedRun, reseed: string): Promise<void> {
  const patch = { state: 'joining' as const, reseed };
  const regions = file.regions.map((r) => r.id);
  // Its own Redis first: its processes copy their entry from there (membership.ts).
  const outcomes = await eachRegion([region], () => updateMember(links.own, keys, region, patch, writer));
  if (outcomes.get(region)?.ok) {
    const others = await eachRegion(regions.filter((r) => r !== region && !links.sharesOwn(r)), (r) => updateMember(links.to(r), keys, region, patch, writer));
    for (const [r, o] of others) outcomes.set(r, o);
  }
  const failed = [...outcomes].filter(([, o]) => !o.ok || !o.value);
  if (failed.length === 0) return;
  const why = failed.map(([r, o]) => (o.ok ? `${r}'s Redis: it is not registered there (removed, or that Redis lost its data, since this re-seed began)` : `${r}'s Redis (${o.error.message})`));
  const unregistered = failed.some(([, o]) => o.ok);
  const written = outcomes.size - failed.length;
  throw new Error(
    `could not mark ${region} joining in ${why.join('; in ')}. Nothing was copied. ${unregistered ? `Start ${region} (it registers itself), then re-seed` : 'Re-seed once that Redis answers'}` +
      (written > 0 ? ` (where the mark was written, ${region} stays joining, and tombstone collection waits, until a re-seed completes)` : ''),
  );
}

/** Acks the group's pending entries at or below `through` (all trimmed): nothing is left to read. */
async function ackTrimmedPending(redis: Redis, stream: string, group: string, through: string): Promise<number> {
  if (through === '0-0') return 0;
  let acked = 0;
  let start = '-';
  for (;;) {
    const rows = (await redis.xpending(stream, group, start, through, 1000)) as [string, string, number, number][];
    const ids = rows.map((r) => r[0]).filter((id) => compareStreamIds(id, through) <= 0);
    if (ids.length) acked += Number(await redis.xack(stream, group, ...ids));
    const last = rows[rows.length - 1]?.[0];
    if (!last || rows.length < 1000) return acked;
    start = `(${last}`;
  }
}
