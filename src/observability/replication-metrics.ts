/**
 * Replication figures for /metrics, read when Prometheus scrapes: the durable progress per origin
 * (replication_progress), the outbox backlog, parked events, this region's inbox length and every
 * region's consumer group on its own inbox, and the counters the relay, tracker and applier keep in memory. One Postgres and one Redis
 * snapshot serve every family of a scrape. The only figure measured on the replication path is the apply
 * batch duration (the applier calls `onApplied`).
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Db } from '../db/client';
import type { ReplicationKeys } from '../redis';
import { eachRegion, redisWithin, type RedisLinks } from '../replication/links';
import { groupInfo, streamBounds, undelivered, type GroupInfo } from '../replication/stream';
import { wallOf } from '../replication/horizon';
import { outboxBacklog } from '../replication/outbox-backlog';
import type { PartsSwept } from '../replication/parts';
import { collectionRecord } from '../replication/tombstones';
import { shared } from './metrics';
import type { AckSigning } from '../replication/ack-auth';

export interface ReplicationMetricSources {
  db: Db;
  /** This region's Redis (its inbox) and the other regions' (their groups). */
  links: RedisLinks;
  keys: ReplicationKeys;
  /** This process's region. */
  region: string;
  regions: readonly string[];
  tracker: {
    readonly waiting: number;
    readonly acksRepaired: number;
    /** Config `ackSignatures` and its counts of acks that did not verify (null: off). */
    readonly signing: Pick<AckSigning, 'unverified' | 'confirmedUnverified' | 'unverifiedMembers' | 'unverifiedRemovals'> | null;
  };
  relay: { readonly published: number; readonly republished: number };
  /** Entries and events this process delivered, per destination (a pack is one entry of several events). */
  deliverer?: { readonly delivered: ReadonlyMap<string, { entries: number; events: number }> };
  /** The applier calls these observers when it has them (set here). */
  applier: {
    onApplied?: (origins: readonly string[], seconds: number) => void;
    /** An event refused: unauthenticated (unsigned, unknown-key, bad-signature; origin 'unknown' unless a known region) or clock-skew. */
    onRefused?: (origin: string, reason: string) => void;
    /** Pending entries found trimmed from the inbox before they were applied (since start). */
    readonly lostEntries: number;
    /** Changes this process parked, each once (since start). */
    readonly parkedEvents: number;
  } | null;
  /** The tombstone collector, when this process runs one. */
  tombstones?: {
    readonly last: { result: { horizon: string | null; members: { region: string; watermark: string | null }[] } } | null;
    readonly belowHorizon: number;
    readonly partsSwept: PartsSwept;
  } | null;
}

interface DbSnapshot {
  progress: { origin: string; applied: number; lastEventAt: Date; lastAppliedAt: Date }[];
  unpublished: number;
  unconfirmed: number;
  /** Per origin and reason (apply-failed, unknown-table, clock-skew: a version too far ahead is refused and parked). */
  failures: { origin: string; reason: string; failing: number; parked: number }[];
  /** Per origin: parked changes an operator discarded here (replication_discarded). */
  discarded: { origin: string; count: number }[];
  /** Tombstones this region collected, per table (durable: replication_horizon). */
  collected: Record<string, number>;
}

interface RedisSnapshot {
  /** This region's inbox figures; null when its own Redis does not answer (replication_redis_up 0). */
  own: { length: number; deadLetters: number } | null;
  /** Each region's group on its own inbox, in that region's Redis (those that answered). */
  groups: GroupInfo[];
}

async function loadDb(db: Db): Promise<DbSnapshot> {
  const [progress, outbox, failures, discarded, record] = await Promise.all([
    db.replicationProgress.findMany(),
    outboxBacklog(db),
    db.$queryRawUnsafe<{ origin_region: string; reason: string; failing: bigint; parked: bigint }[]>(
      `SELECT origin_region, reason, count(*) FILTER (WHERE parked_at IS NULL) AS failing, count(*) FILTER (WHERE parked_at IS NOT NULL) AS parked
         FROM replication_failures GROUP BY origin_region, reason`,
    ),
    db.$queryRawUnsafe<{ origin_region: string; n: bigint }[]>('SELECT origin_region, count(*) AS n FROM replication_discarded GROUP BY origin_region'),
    collectionRecord(db),
  ]);
  return {
    progress: progress.map((p) => ({ origin: p.originRegion, applied: Number(p.appliedCount), lastEventAt: p.lastEventAt, lastAppliedAt: p.lastAppliedAt })),
    unpublished: outbox.unpublished,
    unconfirmed: outbox.unconfirmed,
    failures: failures.map((f) => ({ origin: f.origin_region, reason: f.reason, failing: Number(f.failing), parked: Number(f.parked) })),
    discarded: discarded.map((d) => ({ origin: d.origin_region, count: Number(d.n) })),
    collected: record.collected,
  };
}

async function loadRedis(s: ReplicationMetricSources): Promise<RedisSnapshot> {
  const own = s.links.own;
  // Bounded: a Redis that hangs fails the scrape's Redis part (replication_redis_up 0), not the scrape.
  const [ownFigures, groups] = await Promise.all([
    redisWithin(Promise.all([own.xlen(s.keys.inbox(s.region)), own.xlen(s.keys.deadLetter)])).then(([length, deadLetters]) => ({ length, deadLetters }), () => null),
    // Each region's group is on its own inbox, in its own Redis; one that does not answer is left out (and
    // the others are still shown when this region's own Redis is the one down).
    eachRegion(s.regions, async (r) => {
      const [groups, bounds] = await redisWithin(Promise.all([groupInfo(s.links.to(r), s.keys.inbox(r)), streamBounds(s.links.to(r), s.keys.inbox(r))]));
      const g = groups.find((x) => x.name === r);
      // Redis's lag, corrected where a trim made it count entries the group will never read (undelivered).
      return g ? { ...g, lag: undelivered(g, bounds) } : undefined;
    }),
  ]);
  return { own: ownFigures, groups: [...groups.values()].flatMap((g) => (g.ok && g.value ? [g.value] : [])) };
}

/** The families' makers, over snapshots shared by every family of a scrape (see registerReplicationMetrics). */
type Makers = ReturnType<typeof makers>;

function makers(registry: Registry, s: ReplicationMetricSources) {
  const dbSnapshot = shared(() => loadDb(s.db));
  const redisSnapshot = shared(() => loadRedis(s));
  const registers = [registry];

  /** A gauge (or counter) set from a snapshot at scrape time; no samples when the source is unreachable. */
  const fromDb = <L extends string>(name: string, help: string, labelNames: readonly L[], set: (g: Gauge<L>, d: DbSnapshot) => void) =>
    new Gauge({ name, help, labelNames, registers, async collect() {
      this.reset();
      const d = await dbSnapshot();
      if (d) set(this, d);
    } });
  /** A durable count kept in the database, read at scrape time. */
  const countFromDb = <L extends string>(name: string, help: string, labelNames: readonly L[], counts: (d: DbSnapshot) => [Record<L, string>, number][]) =>
    new Counter({ name, help, labelNames, registers, async collect() {
      this.reset();
      const d = await dbSnapshot();
      if (d) for (const [labels, n] of counts(d)) this.inc(labels, n);
    } });
  const fromRedis = <L extends string>(name: string, help: string, labelNames: readonly L[], set: (g: Gauge<L>, r: RedisSnapshot) => void) =>
    new Gauge({ name, help, labelNames, registers, async collect() {
      this.reset();
      const r = await redisSnapshot();
      if (r) set(this, r);
    } });
  const fromCount = (name: string, help: string, read: () => number) =>
    new Counter({ name, help, registers, collect() {
      this.reset();
      this.inc(read());
    } });
  return { registers, redisSnapshot, fromDb, countFromDb, fromRedis, fromCount };
}

/** What this region applied, per origin (replication_progress). */
function applyProgressMetrics({ fromDb, countFromDb }: Makers): void {
  fromDb('replication_lag_seconds', 'Per origin region: how long the last applied change took from its commit there to its apply here.', ['origin_region'], (g, d) => {
    for (const p of d.progress) g.set({ origin_region: p.origin }, Math.max(0, (p.lastAppliedAt.getTime() - p.lastEventAt.getTime()) / 1000));
  });
  fromDb('replication_last_applied_timestamp_seconds', 'Per origin region: when this region last applied one of its changes (Unix time).', ['origin_region'], (g, d) => {
    for (const p of d.progress) g.set({ origin_region: p.origin }, p.lastAppliedAt.getTime() / 1000);
  });
  countFromDb('replication_events_applied_total', 'Per origin region: change events applied by this region (durable: kept in replication_progress).', ['origin_region'], (d) =>
    d.progress.map((p) => [{ origin_region: p.origin }, p.applied]),
  );
}

/** This region's changes on their way to the others (the outbox). */
function outboxMetrics({ fromDb }: Makers): void {
  fromDb('replication_outbox_unpublished', 'Changes committed here whose deliveries to every region are not yet recorded (a write delivered at once is counted here for ~0.2 s). With unconfirmed (disjoint), the changes not yet confirmed by every region.', [], (g, d) => g.set(d.unpublished));
  fromDb('replication_outbox_unconfirmed', 'Changes delivered to every region and not yet applied (or parked) by every one (disjoint from unpublished).', [], (g, d) => g.set(d.unconfirmed));
}

/** Changes this region has not applied: parked, discarded by an operator, failing (replication_failures). */
function unappliedMetrics({ fromDb }: Makers): void {
  fromDb('replication_events_parked', 'Per origin region and reason: change events this region parked unapplied (replication_failures).', ['origin_region', 'reason'], (g, d) => {
    for (const f of d.failures) if (f.parked > 0) g.set({ origin_region: f.origin, reason: f.reason }, f.parked);
  });
  fromDb('replication_events_discarded', 'Per origin region: parked change events an operator discarded here (replication_discarded): never applied in this region.', ['origin_region'], (g, d) => {
    for (const x of d.discarded) g.set({ origin_region: x.origin }, x.count);
  });
  fromDb('replication_events_failing', 'Per origin region: change events that failed to apply here and are being retried.', ['origin_region'], (g, d) => {
    for (const f of d.failures) if (f.failing > 0) g.inc({ origin_region: f.origin }, f.failing);
  });
}

/** The inbox streams in Redis: this region's, and each region's consumer group on its own. */
function streamMetrics({ registers, redisSnapshot, fromRedis }: Makers, s: ReplicationMetricSources): void {
  fromRedis('replication_stream_length', 'Entries in this region\'s inbox stream.', [], (g, r) => {
    if (r.own) g.set(r.own.length);
  });
  fromRedis('replication_dead_letter_length', 'Entries in the dead-letter stream (unreadable events).', [], (g, r) => {
    if (r.own) g.set(r.own.deadLetters);
  });
  fromRedis('replication_stream_pending', 'Per destination region: entries delivered to its consumer group and not yet acknowledged.', ['destination_region'], (g, r) => {
    for (const x of r.groups) if (s.regions.includes(x.name)) g.set({ destination_region: x.name }, x.pending);
  });
  fromRedis('replication_stream_undelivered', 'Per destination region: entries not yet delivered to its consumer group (at most: the inbox length when Redis cannot count them).', ['destination_region'], (g, r) => {
    for (const x of r.groups) if (s.regions.includes(x.name) && x.lag !== null) g.set({ destination_region: x.name }, x.lag);
  });
  new Gauge({
    name: 'replication_redis_up',
    help: '1 when this scrape could read the change stream from Redis, else 0.',
    registers,
    async collect() {
      this.set((await redisSnapshot())?.own ? 1 : 0);
    },
  });
}

/**
 * The requests the tracker holds for all_regions, the ack values the writers replaced, and the acks the
 * tracker and the relay read that did not verify.
 */
function trackerMetrics({ registers, fromCount }: Makers, s: ReplicationMetricSources): void {
  fromCount('replication_acks_repaired_total', "Ack values found kept in an origin's Redis without a valid signature and replaced with this region's signed judgement (since start).", () => s.tracker.acksRepaired);
  new Gauge({
    name: 'replication_waiting_requests',
    help: 'Requests waiting for all_regions consistency right now.',
    registers,
    collect() {
      this.set(s.tracker.waiting);
    },
  });
  const signing = s.tracker.signing;
  const byReason = (name: string, help: string, read: () => Record<string, number> | undefined) =>
    new Counter({
      name, help, labelNames: ['reason'] as const, registers,
      collect() {
        this.reset();
        for (const [reason, n] of Object.entries(read() ?? {})) this.inc({ reason }, n);
      },
    });
  byReason(
    'replication_acks_unverified_total',
    'Per reason: ack values, announcements and watermark reports read that did not verify (ackSignatures sign or require; since start). Switch to require once it stops growing in every region.',
    () => signing?.unverified,
  );
  byReason(
    'replication_member_entries_unverified_total',
    "Per reason: entries of this region's copy of the membership record read that did not verify, each stored value once (ackSignatures sign or require; since start); replayed (require): signed but older than one this process took.",
    () => signing?.unverifiedMembers,
  );
  byReason(
    'replication_removal_records_unverified_total',
    "Per reason: removal records (departed, departed-known) in this region's Redis read that did not verify, each stored value once (ackSignatures sign or require; since start); under require such a record counts as absent.",
    () => signing?.unverifiedRemovals,
  );
  fromCount('replication_deliveries_confirmed_unverified_total', 'Deliveries the relay confirmed on an ack value that did not verify (ackSignatures sign; since start).', () => signing?.confirmedUnverified ?? 0);
}

/** What this process published (the relay) and delivered, per destination, since start. */
function deliveryMetrics({ registers, fromCount }: Makers, s: ReplicationMetricSources): void {
  fromCount('replication_relay_published_total', 'Changes the outbox relay published (those the write path could not publish at once).', () => s.relay.published);
  fromCount('replication_relay_republished_total', 'Changes published again because they went missing from the stream unconfirmed.', () => s.relay.republished);
  const deliveredCount = (name: string, help: string, read: (d: { entries: number; events: number }) => number) =>
    new Counter({ name, help, labelNames: ['destination_region'], registers, collect() {
      this.reset();
      for (const [region, d] of s.deliverer?.delivered ?? []) this.inc({ destination_region: region }, read(d));
    } });
  deliveredCount('replication_delivered_entries_total', 'Inbox entries this process delivered, per destination (since start).', (d) => d.entries);
  deliveredCount('replication_delivered_events_total', 'Changes this process delivered, per destination (since start); over replication_delivered_entries_total: the events per entry (packs).', (d) => d.events);
}

/** Tombstone collection: what was collected, the horizon and the members' watermarks. */
function tombstoneMetrics({ registers, countFromDb, fromCount }: Makers, s: ReplicationMetricSources): void {
  countFromDb('replication_tombstones_collected_total', 'Per table: tombstones this region collected once older than the replication horizon (durable: replication_horizon).', ['table'], (d) =>
    Object.entries(d.collected).map(([table, n]) => [{ table }, Number(n)]),
  );
  const tomb = s.tombstones;
  if (tomb) {
    new Gauge({
      name: 'replication_tombstone_horizon_timestamp_seconds',
      help: 'The replication horizon this process last computed (wall-clock part, Unix time); 0 before the first computation and while a member holds it back.',
      registers,
      collect() {
        this.reset();
        const h = tomb.last?.result.horizon;
        if (h) this.set(wallOf(h) / 1000);
      },
    });
    new Gauge({
      name: 'replication_watermark_timestamp_seconds',
      help: "Per member region: its last reported watermark (wall-clock part, Unix time), as this process last read it.",
      // Not `region`: that is the reporting region's, the registry's default label (it overrode it).
      labelNames: ['member_region'] as const,
      registers,
      collect() {
        this.reset();
        for (const m of tomb.last?.result.members ?? []) if (m.watermark) this.set({ member_region: m.region }, wallOf(m.watermark) / 1000);
      },
    });
    fromCount('replication_events_below_horizon_total', 'Changes of rows whose tombstone was collected here, not applied (a late, redelivered or replayed event).', () => tomb.belowHorizon);
    new Counter({
      name: 'replication_parts_swept_total',
      help: 'Parts (SSO settings) that outlived their owner, taken by the collection cycle since start: kind="tombstoned" by a replicated write (owner a tombstone here; also the changes tombstoning a deleted organization\'s remaining rows), kind="deleted_here" in this region only (owner absent).',
      labelNames: ['kind'] as const,
      registers,
      collect() {
        this.reset();
        const { tombstoned, deletedHere } = tomb.partsSwept;
        this.inc({ kind: 'tombstoned' }, tombstoned);
        this.inc({ kind: 'deleted_here' }, deletedHere);
      },
    });
  }
}

/** What the applier observes as it goes: its batches' durations, its refusals and parks, entries lost to a trim. */
function applierMetrics({ registers, fromCount }: Makers, s: ReplicationMetricSources): void {
  const batches = new Histogram({
    name: 'replication_apply_batch_duration_seconds',
    help: 'Per origin region: how long applying a batch of change events took (one transaction).',
    labelNames: ['origin_region'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers,
  });
  const refused = new Counter({
    name: 'replication_events_refused_total',
    help: 'Per origin region and reason: change events this region refused to apply.',
    labelNames: ['origin_region', 'reason'] as const,
    registers,
  });
  if (s.applier) {
    s.applier.onApplied = (origins, seconds) => {
      for (const origin of new Set(origins)) batches.observe({ origin_region: origin }, seconds);
    };
    s.applier.onRefused = (origin, reason) => refused.inc({ origin_region: origin, reason });
    const applier = s.applier;
    fromCount('replication_applier_parked_total', 'Changes this process\'s applier parked (since start), each once: not one parked before, by it or by another process of the region, delivered again.', () => applier.parkedEvents);
    fromCount('replication_entries_lost_total', 'Pending inbox entries trimmed before this region applied them (since start): re-seed the region.', () => applier.lostEntries);
  }
}

export function registerReplicationMetrics(registry: Registry, s: ReplicationMetricSources): void {
  const m = makers(registry, s);
  applyProgressMetrics(m);
  outboxMetrics(m);
  unappliedMetrics(m);
  streamMetrics(m, s);
  trackerMetrics(m, s);
  deliveryMetrics(m, s);
  tombstoneMetrics(m, s);
  applierMetrics(m, s);
}
