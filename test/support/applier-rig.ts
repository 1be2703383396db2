/**
 * One region's applier in the test process, against real Postgres and Redis: for behaviour local to one
 * applier (failures, parking, restarts), with events put on the stream by hand as another region would.
 */
import pino from 'pino';
import { v7 as uuidv7 } from 'uuid';
import { createDb, type Db } from '../../src/db/client';
import { ensureDatabase, migrate } from '../../src/db/migrate';
import { FEATURES } from '../../src/features';
import { createRedis, replicationKeys, type Redis, type ReplicationKeys } from '../../src/redis';
import { Applier, type ApplierDeps } from '../../src/replication/applier';
import { RedisLinks } from '../../src/replication/links';
import { createApplyPool } from '../../src/replication/pg-tx';
import { formatVersion, HybridClock } from '../../src/replication/hlc';
import { RowStore } from '../../src/replication/row-store';
import type { ChangeEvent, ReplicatedTable, Row } from '../../src/replication/tables';
import { Tracker } from '../../src/replication/tracker';
import { createDeployment, REDIS_URL, testEventAuth, type TestDeployment } from './env';

export const REGION = 'europe-belgium';
export const ORIGIN = 'us-iowa';

export interface ApplierRig {
  dep: TestDeployment;
  db: Db;
  databaseUrl: string;
  redis: Redis;
  keys: ReplicationKeys;
  tracker: Tracker;
  /** An applier for REGION (not started); stopped by cleanup(). */
  applier(opts?: Partial<ApplierDeps> & { tables?: readonly ReplicatedTable[] }): Promise<Applier>;
  /** Puts an event on the stream as ORIGIN would; returns its stream id. */
  publish(event: ChangeEvent): Promise<string>;
  /** Puts events on the stream in one entry (a pack, see event-auth.ts); `body` replaces the pack's bytes (signed as given). */
  publishPack(events: ChangeEvent[], body?: string): Promise<string>;
  pendingCount(): Promise<number>;
  /** The name of organization `id` in REGION's database, or null when it has no row there (not applied). */
  orgName(id: string): Promise<string | null>;
  /** Stops the appliers started so far and empties the inbox (its group made anew): a test's leftovers do not reach the next. */
  reset(): Promise<void>;
  cleanup(): Promise<void>;
}

/** A unique id for test rows and changes. */
export const testId = (): string => uuidv7();

/** A change event from ORIGIN writing one row of `table` (full row, replication columns filled in). */
export function eventFor(table: string, key: string, fields: Row, opts: { wall?: number; origin?: string } = {}): ChangeEvent {
  const origin = opts.origin ?? ORIGIN;
  const version = formatVersion({ wall: opts.wall ?? Date.now(), counter: 0, region: origin });
  const now = new Date().toISOString();
  return {
    changeId: testId(),
    origin,
    createdAt: now,
    ops: [{ table, key, version, row: { created_at: now, updated_at: now, deleted_at: null, version, origin_region: origin, ...fields } }],
  };
}

export function orgEvent(name: string | undefined, opts: { wall?: number } = {}): ChangeEvent & { orgId: string } {
  const id = testId();
  const fields: Row = { id, parent_id: null };
  if (name !== undefined) fields.name = name;
  return { ...eventFor('organizations', id, fields, opts), orgId: id };
}

/**
 * Makes the first write of `table` that `when` (a condition on NEW) matches fail as a serialization failure
 * would (40001), once: a sequence, not a row, remembers it (its nextval is not rolled back with the transaction).
 * Answers how many times the condition was met, and the drop of the trigger, its function and the sequence.
 */
export async function failFirstWrite(db: Db, name: string, table: string, on: 'INSERT OR UPDATE' | 'UPDATE', when: string) {
  await db.$executeRawUnsafe(`CREATE SEQUENCE ${name}`);
  await db.$executeRawUnsafe(`CREATE FUNCTION ${name}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF ${when} AND nextval('${name}') = 1 THEN RAISE EXCEPTION 'could not serialize access' USING ERRCODE = '40001'; END IF;
      RETURN NEW;
    END $$`);
  await db.$executeRawUnsafe(`CREATE TRIGGER ${name} BEFORE ${on} ON ${table} FOR EACH ROW EXECUTE FUNCTION ${name}()`);
  return {
    // last_value reads 1 before the first nextval too: is_called tells the two apart.
    met: async (): Promise<number> => Number((await db.$queryRawUnsafe<{ met: bigint }[]>(`SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS met FROM ${name}`))[0]?.met),
    drop: async (): Promise<void> => {
      await db.$executeRawUnsafe(`DROP TRIGGER ${name} ON ${table}`);
      await db.$executeRawUnsafe(`DROP FUNCTION ${name}()`);
      await db.$executeRawUnsafe(`DROP SEQUENCE ${name}`);
    },
  };
}

/** Stores `event` parked, its row as another process's park (or this one's before a restart) wrote it. */
export async function storeParked(db: Db, event: ChangeEvent, reason: string, error: string): Promise<void> {
  await db.$executeRawUnsafe(
    `INSERT INTO replication_failures (change_id, origin_region, stream_id, event, failures, reason, last_error, parked_at)
     VALUES ($1::uuid, $2, '1-0', $3::jsonb, 1, $4, $5, now())`,
    event.changeId, event.origin, JSON.stringify(event), reason, error,
  );
}

export async function startApplierRig(label: string): Promise<ApplierRig> {
  // The origin is played by the test (no region runs there): no database of its own.
  const dep = await createDeployment(label, [ORIGIN, REGION], {}, {}, { absentDatabases: [ORIGIN] });
  const databaseUrl = dep.file.regions[1]?.databaseUrl ?? '';
  await ensureDatabase(databaseUrl);
  await migrate(databaseUrl);
  const db = createDb(databaseUrl);
  const keys = replicationKeys(dep.file.redisKeyPrefix);
  const conns: Redis[] = [];
  const appliers: Applier[] = [];
  const conn = (sub = false) => {
    const c = createRedis(REDIS_URL, `${label}-test`, { queueWhileOffline: sub });
    conns.push(c);
    return c;
  };
  const pool = createApplyPool(databaseUrl);
  const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const redis = conn();
  await new Promise((r) => redis.once('ready', r));
  const tracker = new Tracker(redis, conn(true), keys, REGION, log);
  // One Redis serves both regions here; the applier reads its inbox and acks into the origin's (the same).
  const links = new RedisLinks({ region: REGION, own: redis, name: `${label}-test`, defaultUrl: REDIS_URL, configured: new Map() });
  await redis.xgroup('CREATE', keys.inbox(REGION), REGION, '0', 'MKSTREAM');
  return {
    dep, db, databaseUrl, redis, keys, tracker,
    async applier(opts = {}) {
      const store = await RowStore.load(db, opts.tables ?? FEATURES.flatMap((f) => f.tables));
      const a = new Applier({
        db, pool, reader: conn(), links, keys, store, clock: new HybridClock(REGION), tracker, region: REGION,
        regions: [ORIGIN, REGION], consumer: 'test', log, claimIdleMs: 50, claimEveryMs: 100, auth: testEventAuth(), ...opts,
      });
      appliers.push(a);
      return a;
    },
    async publish(event) {
      return String(await redis.xadd(keys.inbox(REGION), '*', ...testEventAuth().entryFields(event)));
    },
    async publishPack(events, body) {
      const auth = testEventAuth();
      return String(await redis.xadd(keys.inbox(REGION), '*', ...auth.packFields(body ?? `[${events.map((e) => auth.eventBytes(e)).join(',')}]`)));
    },
    async orgName(id) {
      return (await db.organization.findUnique({ where: { id } }))?.name ?? null;
    },
    async pendingCount() {
      return Number(((await redis.xpending(keys.inbox(REGION), REGION)) as [number])[0]);
    },
    async reset() {
      for (const a of appliers.splice(0)) await a.stop();
      await redis.del(keys.inbox(REGION));
      await redis.xgroup('CREATE', keys.inbox(REGION), REGION, '0', 'MKSTREAM');
    },
    async cleanup() {
      for (const a of appliers) await a.stop();
      for (const c of conns) c.disconnect();
      await pool.end();
      await db.$disconnect();
      await dep.cleanup();
    },
  };
}
