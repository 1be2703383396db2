/**
 * Delivery of change events from their origin into other regions' inboxes, and its record in the
 * origin's database. Every change goes, once, straight from its origin to each other member: into the
 * stream `<prefix>{repl}:changes:<destination>` in the destination's own Redis. `replication_deliveries`
 * holds one row per (change, destination): the inbox entry it was delivered as, when, and when the
 * destination acked it (its confirmation). The outbox row is `published` once every destination it
 * needed has a delivery, and `confirmed` once every member acked (see relay.ts).
 */
import type { Db } from '../db/client';
import type { Redis, ReplicationKeys } from '../redis';
import type { EventAuth, SignedEvent } from './event-auth';
import { ensureGroup } from './stream';

export interface Delivery {
  changeId: string;
  region: string;
  streamId: string;
}

export class Deliverer {
  /** Destinations whose consumer group this process made sure of (a group is created before the first entry). */
  private readonly ensured = new Set<string>();

  constructor(
    private readonly keys: ReplicationKeys,
    private readonly auth: EventAuth,
    private readonly maxLength: number,
  ) {}

  /**
   * Adds the events to `region`'s inbox in its Redis (`redis`); returns each one's entry id, in order.
   * The destination's consumer group is created first (reading from the start) if it has none yet, so a
   * configured region that starts after changes were delivered to it reads them all.
   */
  async deliver(redis: Redis, region: string, events: readonly SignedEvent[]): Promise<string[]> {
    if (events.length === 0) return [];
    const stream = this.keys.inbox(region);
    if (!this.ensured.has(stream)) {
      await ensureGroup(redis, stream, region);
      this.ensured.add(stream);
    }
    const pipe = redis.pipeline();
    for (const e of events) pipe.xadd(stream, 'MAXLEN', '~', this.maxLength, '*', ...this.auth.entryFields(e));
    const res = (await pipe.exec()) ?? [];
    return events.map((_, i) => {
      const [err, id] = res[i] ?? [new Error('missing reply')];
      if (err || typeof id !== 'string') {
        // A Redis that lost its data lost the group too: make sure of it again next time.
        this.ensured.delete(stream);
        throw err ?? new Error('XADD returned no id');
      }
      return id;
    });
  }
}

/**
 * Records deliveries (a redelivery replaces the entry id and clears the confirmation) and marks the
 * outbox rows in `published` as published, in one statement.
 */
export async function recordDeliveries(db: Db, deliveries: readonly Delivery[], published: readonly string[]): Promise<void> {
  if (deliveries.length === 0 && published.length === 0) return;
  await db.$executeRawUnsafe(
    `WITH d AS (
       INSERT INTO replication_deliveries (change_id, region, stream_id)
       SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[])
       ON CONFLICT (change_id, region) DO UPDATE SET stream_id = EXCLUDED.stream_id, delivered_at = now(), confirmed_at = NULL
     )
     UPDATE replication_outbox SET published_at = now() WHERE change_id = ANY($4::uuid[]) AND published_at IS NULL`,
    deliveries.map((d) => d.changeId),
    deliveries.map((d) => d.region),
    deliveries.map((d) => d.streamId),
    published,
  );
}
