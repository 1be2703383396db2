/**
 * Tombstone collection, run by every region that runs an applier. Each cycle it
 * 1. reports this region's watermark, with the state of its own inbox, into every member's Redis
 *    (`<prefix>{repl}:watermarks`, see horizon.ts; a Redis it cannot reach keeps an older report, which
 *    goes stale there and holds collection back in that region; signed under `ackSignatures`, see
 *    ack-auth.ts, so that in `require` mode a Redis writer without the key cannot advance the horizon), and
 * 2. computes the deployment's horizon from every member's report, and deletes this region's tombstones
 *    older than the horizon less `minAgeMs`, a batch per transaction.
 * A batch takes each row's per-key lock (the one local writes and the applier take) without waiting,
 * skips rows someone holds, and records its cut-off in replication_horizon in the same transaction: from
 * its commit on, a change of a row absent here that is older than the cut-off is not applied (row-store.ts),
 * so a late or replayed event cannot bring a collected row back.
 */
import type { Db, SqlReader } from '../db/client';
import { pgCode } from '../db/pg-errors';
import type { Logger } from '../logger';
import { redisProblem, type ReplicationKeys } from '../redis';
import { readReport, type AckSigning } from './ack-auth';
import {
  clockFloor, collectionCutoff, computeHorizon, IN_FLIGHT_MS, parseWatermark, regionWatermark, wallOf, type HorizonResult, type MemberView, type Watermark,
} from './horizon';
import { eachRegion, type RedisLinks } from './links';
import { Loop } from './loop';
import type { Member } from './member-record';
import type { PartSweep, PartsSwept } from './parts';
import type { RowStore } from './row-store';
import { behindTrim, groupFloor, groupInfo, streamBounds } from './stream';
import type { ReplicatedTable } from './tables';

export interface TombstoneCollectionOptions {
  enabled: boolean;
  /** How often a region reports its watermark and collects (ms). */
  intervalMs: number;
  /** Tombstones are collected only once older than the horizon by this much (ms). */
  minAgeMs: number;
  /** Tombstones deleted per transaction. */
  batchSize: number;
}

export const DEFAULT_TOMBSTONE_COLLECTION: TombstoneCollectionOptions = { enabled: true, intervalMs: 60_000, minAgeMs: 3_600_000, batchSize: 500 };

/** A report older than this many intervals no longer counts (its region may be down or cut off). */
const REPORT_MAX_AGE_INTERVALS = 3;

/**
 * How much later than its version's wall-clock part a tombstone's deleted_at may be and still be found by
 * the collection it is due in (collectBatch). A delete takes deleted_at from the clock before put stamps the
 * version, and the hybrid clock never runs behind that clock, so deleted_at is at most the version's wall
 * time unless the host's clock was stepped back in between; a tombstone beyond the margin is only collected
 * later, when the cut-off has moved past it.
 */
const DELETED_AT_MARGIN_MS = 10 * 60_000;

export interface CollectorDeps {
  db: Db;
  /** This region's Redis (reports are read there) and the others' (reports are copied there). */
  links: Pick<RedisLinks, 'own' | 'to' | 'sharesOwn'>;
  keys: ReplicationKeys;
  region: string;
  regions: readonly string[];
  /** The deployment's members, read fresh before each horizon; without it, `regions`, all active. */
  membership?: { refresh(): Promise<Pick<Member, 'region' | 'state' | 'unverified'>[]> };
  store: Pick<RowStore, 'belowHorizon'>;
  tables: readonly ReplicatedTable[];
  log: Logger;
  options: TombstoneCollectionOptions;
  /** How far behind its clock this region's watermark stays (default IN_FLIGHT_MS): more than its write timeout. */
  inFlightMs?: number;
  /**
   * How the reports are signed and judged (config `ackSignatures`, the tracker's; see ack-auth.ts): in `require`
   * mode a report whose signature does not hold counts as none. Absent: written unsigned, read unchecked.
   */
  signing?: AckSigning | null;
  /** Tombstones the parts that outlived their owner (parts.ts), each cycle before collecting. */
  parts?: Pick<PartSweep, 'sweep' | 'swept'>;
}

/** The outbox rows not yet settled and the events held failing or parked: the oldest version of each. */
const WATERMARK_SQL = `
SELECT (SELECT min((op->>'version') COLLATE "C") FROM replication_outbox o, jsonb_array_elements(o.event->'ops') op
         WHERE o.confirmed_at IS NULL OR o.confirmed_at > now() - make_interval(secs => $1::float8 / 1000)) AS outbox,
       (SELECT min((op->>'version') COLLATE "C") FROM replication_failures f, jsonb_array_elements(f.event->'ops') op) AS failures`;

export class TombstoneCollector {
  private readonly loop: Loop;
  /** The last horizon this process computed, with its cut-off, and when. */
  last: { at: Date; result: HorizonResult; cutoff: string | null } | null = null;
  lastError: string | null = null;
  /** Tombstones this process collected since it started. */
  collected = 0;
  cycles = 0;

  constructor(private readonly d: CollectorDeps) {
    this.loop = new Loop(() => this.cycle(), d.options.intervalMs);
  }

  get options(): TombstoneCollectionOptions {
    return this.d.options;
  }

  /** A report is used while younger than this (ms). */
  get maxAgeMs(): number {
    return REPORT_MAX_AGE_INTERVALS * this.d.options.intervalMs;
  }

  /** A confirmed outbox row holds its origin's watermark this long (ms): longer than a report may be old. */
  get settleMs(): number {
    return 2 * this.maxAgeMs;
  }

  get belowHorizon(): number {
    return this.d.store.belowHorizon;
  }

  /** What the part sweep took since this process started (a copy; none without a sweep). */
  get partsSwept(): PartsSwept {
    return { ...(this.d.parts?.swept ?? { tombstoned: 0, deletedHere: 0 }) };
  }

  start(): void {
    if (this.d.options.enabled) this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  async cycle(): Promise<void> {
    try {
      await this.report();
      await this.collect();
      this.lastError = null;
    } catch (err) {
      // Redis or the database unavailable: nothing is collected this time, which is always safe.
      // ioredis' words for a connection that is down ("Stream isn't writeable and enableOfflineQueue options is
      // false") said as what they mean, naming Redis (an operator review read the raw one in GET /admin/replication).
      const said = redisProblem(err as Error);
      this.lastError = said === (err as Error).message ? said : `Redis ${said}`;
      this.d.log.debug({ err: this.lastError }, 'tombstone collection cycle failed; will retry');
    } finally {
      this.cycles += 1;
    }
  }

  /** This region's Redis's clock (ms): the ages of the reports read there are measured on it. */
  private redisNow(): Promise<number> {
    return clockOf(this.d.links.own);
  }

  /**
   * Computes this region's watermark and posts it into its own Redis, then into every other member's.
   * Each copy is stamped with the clock of the Redis it goes to, read before the watermark is computed,
   * so the region reading it there ages it on one clock and never takes it for younger than it is.
   */
  async report(): Promise<Watermark> {
    const { db, links, keys, region } = this.d;
    const own = links.own;
    const members = this.d.membership ? (await this.d.membership.refresh()).map((m) => m.region) : this.d.regions;
    const peers = members.filter((r) => !links.sharesOwn(r));
    const [at, peerTimes] = await Promise.all([this.redisNow(), eachRegion(peers, (r) => clockOf(links.to(r)))]);
    const clock = clockFloor(Date.now() - (this.d.inFlightMs ?? IN_FLIGHT_MS));
    const inbox = keys.inbox(region);
    const [rows, groups, bounds] = await Promise.all([
      db.$queryRawUnsafe<{ outbox: string | null; failures: string | null }[]>(WATERMARK_SQL, this.settleMs),
      // No inbox yet (nothing delivered to this region): no group either.
      groupInfo(own, inbox).catch((err: Error) => {
        if (/no such key/i.test(err.message)) return [];
        throw err;
      }),
      streamBounds(own, inbox),
    ]);
    const g = groups.find((x) => x.name === region);
    const mark: Watermark = {
      watermark: regionWatermark({ outbox: rows[0]?.outbox ?? null, failures: rows[0]?.failures ?? null, clock }),
      at,
      inbox: { group: Boolean(g), behindTrim: g ? behindTrim(g, await groupFloor(own, inbox, g), bounds) : false },
    };
    const stored = (m: Watermark) => {
      const json = JSON.stringify(m);
      return this.d.signing?.writtenReport(region, json) ?? json;
    };
    await own.hset(keys.watermarks, region, stored(mark));
    await eachRegion(peers, async (r) => {
      const t = peerTimes.get(r);
      if (t?.ok) await links.to(r).hset(keys.watermarks, region, stored({ ...mark, at: t.value }));
    });
    return mark;
  }

  /** The deployment's horizon now, from this region's Redis: the members and the reports they copied there. */
  async horizon(): Promise<HorizonResult> {
    const { links, keys } = this.d;
    const members: Pick<Member, 'region' | 'state' | 'unverified'>[] = this.d.membership ? await this.d.membership.refresh() : this.d.regions.map((region) => ({ region, state: 'active' as const }));
    const [raw, now] = await Promise.all([links.own.hgetall(keys.watermarks), this.redisNow()]);
    const reports = new Map<string, Watermark | null>();
    const unverified = new Set<string>();
    const memberRegions = new Set(members.map((m) => m.region));
    for (const [region, value] of Object.entries(raw)) {
      // Only the members' reports count: a departed region's report left in this Redis (or any other field),
      // judged every cycle, would keep the unverified figure growing for ever.
      if (!memberRegions.has(region)) continue;
      const json = readReport(this.d.signing, region, value);
      if (json === null) unverified.add(region);
      else reports.set(region, parseWatermark(json));
    }
    const views: MemberView[] = members.map((m) => {
      const r = reports.get(m.region);
      // Without a report the member is held as unreported (computeHorizon), not as groupless.
      const group = !r ? { behindTrim: false } : r.inbox?.group ? { behindTrim: r.inbox.behindTrim } : null;
      return { region: m.region, state: m.state, group, unverified: m.unverified };
    });
    return computeHorizon({ members: views, reports, unverified, now, maxAgeMs: this.maxAgeMs });
  }

  /** Computes the horizon and deletes this region's tombstones below its cut-off; returns how many. */
  async collect(): Promise<number> {
    const result = await this.horizon();
    const cutoff = result.horizon === null ? null : collectionCutoff(result.horizon, this.d.options.minAgeMs);
    this.last = { at: new Date(), result, cutoff };
    // First: a part it tombstones now is collected in a later cycle, once the horizon passed its tombstone.
    await this.d.parts?.sweep(cutoff);
    if (cutoff === null) return 0;
    let total = 0;
    for (const table of this.d.tables) {
      if (table.prunedLocally) continue;
      for (;;) {
        const n = await this.collectBatch(table, cutoff);
        total += n;
        if (n < this.d.options.batchSize || this.loop.stopped) break;
      }
    }
    this.collected += total;
    if (total > 0) this.d.log.info({ collected: total, below: cutoff, horizon: result.horizon }, 'collected tombstones older than the replication horizon');
    return total;
  }

  /**
   * Deletes up to batchSize tombstones of `table` whose version is below `cutoff`. They are found through the
   * table's partial index on deleted_at (see the migration 20261202170000: an index keyed by version made
   * every update of a live row a non-HOT one), up to the cut-off's wall time plus DELETED_AT_MARGIN_MS; the
   * version decides what is deleted.
   */
  private async collectBatch(table: ReplicatedTable, cutoff: string): Promise<number> {
    const t = `"${table.name}"`;
    const k = `"${table.key}"`;
    // An owner (a deleted organization) stays while rows it owns are live here: the part sweep finds those
    // through its tombstone only (parts.ts), so collected first they would stay live, and its data, for ever.
    // An index probe per owned table, for the tombstones of owner tables only.
    const owners = this.d.tables.filter((o) => o.ownedBy?.table === table.name);
    const outlived = owners.map((o) => ` AND NOT EXISTS (SELECT FROM "${o.name}" x WHERE x."${o.ownedBy?.column}" = ${t}.${k} AND x.deleted_at IS NULL)`).join('');
    return this.d.db.$transaction(async (tx) => {
      const rows = await tx.$queryRawUnsafe<{ key: string }[]>(
        `DELETE FROM ${t} WHERE ${k} IN (SELECT ${k} FROM ${t} WHERE deleted_at IS NOT NULL AND deleted_at < $4::timestamptz AND version < $1${outlived}
                                          ORDER BY deleted_at LIMIT $2)
            AND deleted_at IS NOT NULL AND version < $1 AND pg_try_advisory_xact_lock(hashtextextended($3 || ${k}::text, 0))
          RETURNING ${k}::text AS key`,
        cutoff, this.d.options.batchSize, `${table.name}:`, new Date(wallOf(cutoff) + DELETED_AT_MARGIN_MS).toISOString(),
      );
      if (rows.length === 0) return 0;
      await tx.$executeRawUnsafe(
        `INSERT INTO replication_horizon AS h (id, collected_through, collected, last_collected_at)
         VALUES (1, $1, jsonb_build_object($2::text, $3::bigint), now())
         ON CONFLICT (id) DO UPDATE SET collected_through = GREATEST(h.collected_through, EXCLUDED.collected_through),
           collected = jsonb_set(h.collected, ARRAY[$2::text], to_jsonb(COALESCE((h.collected->>$2)::bigint, 0) + $3::bigint)),
           last_collected_at = now()`,
        cutoff, table.name, rows.length,
      );
      return rows.length;
    });
  }
}

/** The durable record of what this region collected (replication_horizon). */
export async function collectionRecord(db: SqlReader): Promise<{ collectedThrough: string; collected: Record<string, number>; lastCollectedAt: Date | null }> {
  // A database whose schema predates collection (MIGRATIONS_DIR of an older version) has collected nothing.
  const rows = await db
    .$queryRawUnsafe<{ collected_through: string; collected: Record<string, number>; last_collected_at: Date | null }[]>(
      'SELECT collected_through, collected, last_collected_at FROM replication_horizon WHERE id = 1',
    )
    .catch((err: unknown) => {
      if (pgCode(err) === '42P01') return [];
      throw err;
    });
  const r = rows[0];
  return { collectedThrough: r?.collected_through ?? '', collected: r?.collected ?? {}, lastCollectedAt: r?.last_collected_at ?? null };
}

/**
 * Raises this region's collection cut-off to $1 (never lowers it): what a region does when it starts
 * holding what a peer holds below the peer's cut-off (a re-seed), so that it refuses the same late changes.
 */
export const RAISE_COLLECTED_THROUGH_SQL = `INSERT INTO replication_horizon AS h (id, collected_through) VALUES (1, $1)
  ON CONFLICT (id) DO UPDATE SET collected_through = GREATEST(h.collected_through, EXCLUDED.collected_through)`;

/** A Redis server's clock (ms). */
async function clockOf(redis: Pick<RedisLinks['own'], 'time'>): Promise<number> {
  const [sec, usec] = await redis.time();
  return Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
}
