/**
 * The write side of replication. A feature's write runs in one local transaction through `write()`:
 * it locks and puts full rows, and the same transaction stores the change event in the outbox.
 * After commit the event is delivered right away (fast path) into every other member's inbox, each in
 * that member's own Redis; what fails there, the relay delivers later. `waitFor()` turns a consistency
 * level into a wait on the tracker (in this region's Redis, where the other regions' acks arrive).
 */
import { v7 as uuidv7 } from 'uuid';
import { poolOf, type Db } from '../db/client';
import type { Logger } from '../logger';
import type { HybridClock } from './hlc';
import type { Membership } from './membership';
import { AppError } from '../http/errors';
import { isSchemaChange, type Queryable, type RowStore, type Statement, type Winner } from './row-store';
import { inPipeline, queryable } from './pg-tx';
import type { ChangeEvent, ReplicatedTable, Row, RowChange } from './tables';
import { changeStatus, type ChangeStatus } from './change-status';
import type { Tracker, WaitResult } from './tracker';
import { recordDeliveries, type Deliverer, type Delivery } from './delivery';
import { eachRegion, type RedisLinks } from './links';
import type { EventAuth, SignedEvent } from './event-auth';
import { isTransient } from '../db/pg-errors';
import { WRITE_TX_TIMEOUT_MS } from './horizon';

const COLLISION_ATTEMPTS = 5;

/** How often fast-path deliveries are recorded (see markDelivered). */
const MARK_DELIVERED_MS = 200;

/** Runs a local write's transaction again (up to COLLISION_ATTEMPTS in all) when it collided with an apply. */
async function retryCollisions<T>(run: () => Promise<T>, log: Logger): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (err) {
      const collided = isTransient(err) || (err instanceof AppError && err.code === 'write_superseded') || /refused by the merge rule/.test(String((err as Error).message));
      if (!collided || attempt >= COLLISION_ATTEMPTS) throw err;
      log.debug({ err: (err as Error).message, attempt }, 'local write collided with an apply; running it again');
      await new Promise((r) => setTimeout(r, 5 * attempt + Math.random() * 10 * attempt));
    }
  }
}

export interface WriteContext {
  /** Raw queries in the write's transaction (one round trip each). */
  tx: Queryable;
  /** The id the change will travel under (known before commit, so rows can refer to it). */
  changeId: string;
  /** Locks the row for the rest of the transaction (also when absent) and returns it, tombstones included. */
  lock(table: ReplicatedTable, key: string): Promise<Row | null>;
  /**
   * Stores a full row as a new version (newer than whatever is stored) and returns what was stored. Over
   * an existing row it is an update (the row keeps its creation stamp); over no row it is a create, stamped
   * with the transaction's first version (all creates of one write share it, so concurrent writes win or
   * lose as a whole). A create never replaces a row another region created earlier: see row-store.ts.
   */
  put(table: ReplicatedTable, row: Row): Promise<Row>;
}

export interface ReplicatorDeps {
  db: Db;
  links: RedisLinks;
  /** Delivers events into other regions' inboxes (shared with the relay). */
  deliverer: Deliverer;
  store: RowStore;
  clock: HybridClock;
  tracker: Tracker;
  region: string;
  regions: readonly string[];
  /** The deployment's members; without it, `regions`. */
  membership?: Pick<Membership, 'regions'>;
  log: Logger;
  /** Signs each event where it is created: the outbox stores it signed (see event-auth.ts). */
  auth: EventAuth;
}

function refusedWrite(w: Winner): AppError {
  return new AppError(
    409,
    'write_superseded',
    `This write lost to a concurrent write from another region before it committed; nothing was written: ` +
      `${w.table} ${w.key} holds version ${w.version} written in ${w.originRegion}${w.deleted ? ' (deleted)' : ''}. ` +
      'Read the resource for its current state and retry the change if it still applies.',
  );
}

export class Replicator {
  constructor(private readonly d: ReplicatorDeps) {}

  get region(): string {
    return this.d.region;
  }

  /** The deployment's regions (its members: a region being added counts as soon as it joined). */
  get regions(): readonly string[] {
    return this.d.membership?.regions() ?? this.d.regions;
  }

  async write<T>(fn: (ctx: WriteContext) => Promise<T>): Promise<{ value: T; event: ChangeEvent | null }> {
    const { store, clock, region } = this.d;
    const changeId = uuidv7();
    // A write that collides with an apply of the same key (a deadlock, or the merge rule refusing it because
    // an outranking state landed first) runs again, whole: the feature then sees what is stored now.
    // One that fails because a migration changed a table under this process's cached statements runs once
    // more after the row store reloaded its column lists.
    // The transaction runs on the pool under the database client (poolOf), pipelined: BEGIN goes with the
    // first statement and COMMIT with the outbox row. Through the ORM's interactive transaction a PATCH took
    // five round trips and ~1 ms of CPU (its own bookkeeping around each statement); see J in the README.
    const run = () => retryCollisions(() => inPipeline(
      poolOf(this.d.db),
      async (pipe) => {
        // Upserts put() holds back (deferredPut): they go with the next statement, at the latest with COMMIT.
        const pending: Statement[] = [];
        const tx = queryable(pipe, pending);
        const ops: RowChange[] = [];
        let createdVersion: string | null = null;
        let orgId: string | null = null;
        // The rows this transaction locked, as stored now: a key is locked (and read) once per transaction,
        // and put() knows what it replaces without reading it again.
        const locked = new Map<string, Row | null>();
        const lock = async (table: ReplicatedTable, key: string): Promise<Row | null> => {
          const id = store.lockedIdOf(table.name, key);
          if (locked.has(id)) return locked.get(id) ?? null;
          const row = await store.lock(tx, table, key);
          locked.set(id, row);
          return row;
        };
        const ctx: WriteContext = {
          tx,
          changeId,
          lock,
          put: async (table, row) => {
            const key = String(row[table.key]);
            const current = await lock(table, key);
            const version = clock.next(typeof current?.version === 'string' ? current.version : null);
            createdVersion ??= version;
            // An update replaces the row as this region knows it: a column of this schema the feature left
            // out is cleared, as before. A create leaves it out (its default applies), and so does the event.
            const cleared = current ? Object.fromEntries(store.columnsOf(table.name).filter((c) => !(c in row)).map((c) => [c, null])) : {};
            const full: Row = {
              ...cleared,
              ...row,
              version,
              created_version: typeof current?.created_version === 'string' ? current.created_version : createdVersion,
              origin_region: region,
              // A new row was last updated when it was created; an existing one, now.
              updated_at: current ? new Date().toISOString() : (row.created_at ?? new Date().toISOString()),
              deleted_at: row.deleted_at ?? null,
            };
            const change: RowChange = { table: table.name, key, version, row: full };
            const org = full[table.orgColumn ?? 'org_id'];
            if (orgId === null && typeof org === 'string') orgId = org.toLowerCase();
            const deferred = store.deferredPut(change, current);
            if (deferred) {
              pending.push(deferred);
              locked.delete(store.lockedIdOf(table.name, key)); // read again (after the upsert) if locked again
              ops.push(change);
              return full;
            }
            const stored = await store.apply(tx, [change], locked);
            locked.delete(store.lockedIdOf(table.name, key)); // what the row holds now is read again if needed
            // Refused: the applier stored an outranking state of this row (an earlier create of the same
            // key, a deletion) after the feature looked. The write lost before it committed: 409, nothing
            // written. (The applier takes the same per-key locks, and write() runs the transaction again
            // first, so this answer is left for a state that outranks the write after the retries.)
            const lost = stored.outcomes[0];
            // A deletion whose row another region deleted meanwhile holds: nothing to write or replicate.
            if (stored.changed !== 1 && lost && !lost.applied && full.deleted_at && lost.winner.deleted && lost.winner.createdVersion === full.created_version) return full;
            if (stored.changed !== 1 && lost && !lost.applied) throw refusedWrite(lost.winner);
            if (stored.changed !== 1) throw new Error(`write to ${table.name} ${key} was refused by the merge rule`);
            ops.push(change);
            return full;
          },
        };
        const value = await fn(ctx);
        if (ops.length === 0) {
          if (pending.length) await pipe.run(pending.splice(0), true);
          return { value, event: null };
        }
        const event: SignedEvent = this.d.auth.sign({ changeId, origin: region, createdAt: new Date().toISOString(), ops, orgId, schema: store.schema });
        // The held-back upserts, the outbox row and COMMIT: one round trip.
        await pipe.run(
          [...pending.splice(0), { sql: 'INSERT INTO replication_outbox (change_id, event, org_id) VALUES ($1::uuid, $2::jsonb, $3::uuid)', values: [event.changeId, JSON.stringify(event), orgId], exec: true }],
          true,
        );
        return { value, event };
      },
      // The tombstone horizon counts on this bound (horizon.ts). A free connection is waited for up to the
      // pool's POOL_WAIT_MS (then 503).
      { timeoutMs: WRITE_TX_TIMEOUT_MS },
    ), this.d.log);
    let result: Awaited<ReturnType<typeof run>>;
    try {
      result = await run();
    } catch (err) {
      if (!isSchemaChange(err)) throw err;
      this.d.log.warn({ err: (err as Error).message }, 'a migration changed a replicated table; reloading its columns and running the write again');
      await store.reload();
      result = await run();
    }
    if (result.event) void this.publish(result.event);
    return result;
  }

  /** Fast path after commit. Failures are fine: the relay delivers whatever is left undelivered. */
  async publish(event: SignedEvent): Promise<boolean> {
    const { links, deliverer, region } = this.d;
    const destinations = this.regions.filter((r) => r !== region);
    // The deliveries go out first (they are what an all_regions write waits on); the origin's own ack
    // ("applied": its transaction put every row) goes alongside them.
    const delivering = eachRegion(destinations, async (dest) => (await deliverer.deliver(links.to(dest), dest, [event]))[0] as string);
    const ownAck = this.d.tracker.ack(region, [event.changeId], { orgs: event.orgId ? { [event.changeId]: event.orgId } : undefined }).then(
      () => true,
      (err: Error) => {
        this.d.log.debug({ err: err.message, changeId: event.changeId }, 'own ack deferred to the relay');
        return false;
      },
    );
    const res = await delivering;
    const made: Delivery[] = [];
    for (const [dest, r] of res) {
      if (r.ok) made.push({ changeId: event.changeId, region: dest, streamId: r.value });
      else this.d.log.debug({ err: r.error.message, changeId: event.changeId, destination: dest }, 'delivery deferred to the relay');
    }
    this.markDelivered(event.changeId, made, made.length === destinations.length);
    return (await ownAck) && made.length === destinations.length;
  }

  private pendingMarks: { changeId: string; made: Delivery[]; complete: boolean }[] = [];
  private markTimer: NodeJS.Timeout | null = null;

  /**
   * Deliveries are recorded in batches, one statement per MARK_DELIVERED_MS instead of one per write, and
   * not while the write's all_regions wait is at its busiest (the destinations apply ~20 ms after commit on
   * a 30 ms WAN; on one shared machine this statement competed with them). Under the relay's 1 s before it
   * delivers an unrecorded event again; a record that is lost (crash, database error) only means it does.
   */
  private markDelivered(changeId: string, made: Delivery[], complete: boolean): void {
    this.pendingMarks.push({ changeId, made, complete });
    this.markTimer ??= setTimeout(() => void this.flushPublished(), MARK_DELIVERED_MS);
  }

  async flushPublished(): Promise<void> {
    if (this.markTimer) clearTimeout(this.markTimer);
    this.markTimer = null;
    const marks = this.pendingMarks;
    this.pendingMarks = [];
    if (marks.length === 0) return;
    try {
      await recordDeliveries(this.d.db, marks.flatMap((m) => m.made), marks.filter((m) => m.complete).map((m) => m.changeId));
    } catch (err) {
      this.d.log.debug({ err: (err as Error).message, count: marks.length }, 'could not record deliveries; the relay will deliver them again');
    }
  }

  /**
   * Waits until every configured region holds the change, one reports it superseded, or the deadline
   * passes. `alreadyApplied`: the regions known to hold it (by default this one, which just committed it).
   */
  async waitForAllRegions(changeId: string, deadline: number, alreadyApplied: readonly string[] = [this.d.region]): Promise<WaitResult> {
    let waited = await this.d.tracker.wait(changeId, this.regions, alreadyApplied, deadline);
    // A region that joined while we waited counts too: never answer complete without a current member.
    for (;;) {
      const joined = this.regions.filter((r) => !waited.applied.includes(r) && !waited.pending.includes(r));
      if (!waited.complete || joined.length === 0) return waited;
      const more = await this.d.tracker.wait(changeId, [...waited.applied, ...joined], waited.applied, deadline);
      waited = { ...more, applied: [...new Set([...waited.applied, ...more.applied])] };
    }
  }

  /** A change's progress, for its organization only (null: unknown here, or another organization's). */
  changeStatus(changeId: string, orgId: string | null): Promise<ChangeStatus | null> {
    return changeStatus({ db: this.d.db, tracker: this.d.tracker, region: this.d.region, regions: this.regions }, changeId, orgId);
  }
}
