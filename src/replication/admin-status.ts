/**
 * GET /admin/replication's answer: what replicationFigures holds (this process's, or the copy the operator
 * listener holds) with what is read from the database and the members' Redis. A module of its own so that the
 * operator worker (src/operator/worker.ts), which answers the same path, does not load the admin routes'
 * request validation (ajv and typebox: ~260 modules, ~0.1 s of CPU at every region start).
 */
import type { SqlReader } from '../db/client';
import { redisProblem, type ReplicationKeys } from '../redis';
import type { ReplicationFigures } from './admin-routes';
import { eachRegion, redisWithin, type RedisLinks } from './links';
import { failureStatus } from './parked';
import { outboxBacklog, outboxBacklogByKey } from './outbox-backlog';
import { behindTrim, groupFloor, groupInfo, streamBounds, undelivered, undeliveredIsBound } from './stream';
import { collectionRecord } from './tombstones';

export const iso = (d: Date | string | null | undefined) => (d ? new Date(d).toISOString() : null);

export async function replicationStatus(d: { db: SqlReader; links: Pick<RedisLinks, 'own' | 'to'>; keys: ReplicationKeys; region: string }, figures: ReplicationFigures) {
  const memory = figures.tombstones;
  const [progress, outbox, outboxByKey, stream, failures, record] = await Promise.all([
    d.db.$queryRawUnsafe<{ origin_region: string; applied_count: bigint | string; last_change_id: string; last_event_at: Date; last_applied_at: Date }[]>(
      'SELECT origin_region, applied_count, last_change_id::text, last_event_at, last_applied_at FROM replication_progress ORDER BY origin_region',
    ),
    outboxBacklog(d.db, { oldest: true }),
    outboxBacklogByKey(d.db),
    streamStatus({ ...d, regions: figures.regions }),
    failureStatus(d.db),
    memory ? collectionRecord(d.db) : null,
  ]);
  return {
    region: d.region,
    regions: figures.regions,
    members: figures.members,
    applied: progress.map((p) => ({
      origin_region: p.origin_region,
      events_applied: Number(p.applied_count),
      last_change_id: p.last_change_id,
      last_event_at: iso(p.last_event_at),
      last_applied_at: iso(p.last_applied_at),
      lag_ms: new Date(p.last_applied_at).getTime() - new Date(p.last_event_at).getTime(),
    })),
    pending: stream.groups,
    stream: { connected: stream.connected, length: stream.length, first_id: stream.firstId, dead_letters: stream.deadLetters, error: stream.error },
    // Regions to re-seed from a peer (docs/operations.md, "Re-seeding a region"): their group fell behind the
    // stream cap, or they are members still `joining` (added and not re-seeded yet, or marked so by an origin
    // that found changes gone from their inbox unacked; a re-seed under way marks its target joining too, and
    // one that stopped half-way leaves it so), by an entry whose state this process takes (see joining).
    replication_keys: figures.replication_keys,
    needs_reseed: [...new Set([
      ...stream.groups.filter((g) => g.needs_reseed).map((g) => g.region),
      ...figures.joining,
    ])],
    start_check: figures.start_check,
    outbox: {
      unpublished: outbox.unpublished,
      unconfirmed: outbox.unconfirmed,
      oldest_unpublished_at: iso(outbox.oldestUnpublished),
      // Per replication key, this region's rows above (unpublished + unconfirmed) signed with it: a key
      // rotation drops the old key once every region counts 0 under it (docs/security.md, Rotating REPLICATION_KEYS).
      unsettled_by_key: outboxByKey,
      published_by_relay: figures.published_by_relay,
      republished_after_loss: figures.republished_after_loss,
    },
    // Events this region could not apply: failing (retried) and parked (kept, acked to origin as parked).
    failures,
    refused: figures.refused,
    parked_by_applier: figures.parked_by_applier,
    waiting_requests: figures.waiting_requests,
    ack_signatures: figures.ack_signatures,
    tombstones: memory && record ? tombstoneStatus(memory, record) : null,
  };
}

/**
 * This region's inbox (in its own Redis) and, per member, its consumer group on its own inbox (in its
 * Redis; nulls when that Redis does not answer, or not within REDIS_STATUS_MS).
 */
async function streamStatus(d: { links: Pick<RedisLinks, 'own' | 'to'>; keys: ReplicationKeys; region: string; regions: readonly string[] }) {
  const own = d.links.own;
  const inbox = d.keys.inbox(d.region);
  // The inbox's figures alongside the groups' (not after them): a hung Redis costs one bound, not two.
  const ownFigures = redisWithin(Promise.all([own.xlen(inbox), own.xlen(d.keys.deadLetter), streamBounds(own, inbox)]));
  ownFigures.catch(() => undefined); // read below, after the groups
  const groups = await eachRegion(d.regions, (r) => redisWithin(groupStatus(r)));
  async function groupStatus(r: string) {
    const redis = d.links.to(r);
    const stream = d.keys.inbox(r);
    const [g, bounds] = await Promise.all([groupInfo(redis, stream).then((gs) => gs.find((x) => x.name === r)), streamBounds(redis, stream)]);
    // A group that lost entries to the inbox cap before reading them: re-seed it (npm run reseed).
    const needsReseed = g ? behindTrim(g, await groupFloor(redis, stream, g), bounds) : null;
    return { region: r, pending_acks: g?.pending ?? null, undelivered: g ? undelivered(g, bounds) : null, undelivered_is_bound: g ? undeliveredIsBound(g, bounds) : null, last_delivered_id: g?.lastDeliveredId ?? null, needs_reseed: needsReseed };
  }
  const perRegion = d.regions.map((r) => {
    const g = groups.get(r);
    return g?.ok ? g.value : { region: r, pending_acks: null, undelivered: null, undelivered_is_bound: null, last_delivered_id: null, needs_reseed: null };
  });
  try {
    const [length, deadLetters, bounds] = await ownFigures;
    return { connected: true, error: null, length, deadLetters, firstId: bounds?.firstId ?? null, groups: perRegion };
  } catch (err) {
    return { connected: false, error: `Redis unavailable: ${redisProblem(err as Error)}`, length: null, deadLetters: null, firstId: null, groups: perRegion };
  }
}

/** The tombstone block: the horizon as this process last computed it, and what this region collected (durable). */
function tombstoneStatus(memory: NonNullable<ReplicationFigures['tombstones']>, record: Awaited<ReturnType<typeof collectionRecord>>) {
  const { last_error, refused_below_horizon, parts_swept, ...computed } = memory;
  return {
    ...computed,
    last_error,
    collected_through: record.collectedThrough || null,
    last_collected_at: iso(record.lastCollectedAt),
    collected: { total: Object.values(record.collected).reduce((a, b) => a + Number(b), 0), by_table: record.collected },
    refused_below_horizon,
    parts_swept,
  };
}
