/**
 * Delivery of change events from their origin into other regions' inboxes, and its record in the
 * origin's database. Every change goes, once, straight from its origin to each other member: into the
 * stream `<prefix>{repl}:changes:<destination>` in the destination's own Redis. `replication_deliveries`
 * holds one row per (change, destination): the inbox entry it was delivered as, when, and when the
 * destination acked it (its confirmation). The outbox row is `published` once every destination it
 * needed has a delivery, and `confirmed` once every member acked (see relay.ts).
 *
 * Packs: the events of one delivery (a turn's commits on the fast path, a page of the relay) go to a
 * destination several to an entry (event-auth.ts), up to PACK_MAX_EVENTS events and PACK_MAX_BYTES, when
 * the deployment allows it (config `replicationPacks`). The stream cap counts entries, so a delivery makes
 * at most streamMaxLength / PACK_MAX_EVENTS minus the inbox's length packs (the length as the previous
 * delivery's pipeline read it, XLEN, acked entries included until the relay trims them) and sends the rest
 * as single entries: per origin process, the packs in an inbox stay within about one cap's worth of events,
 * and a region is never trimmed earlier than with single entries. An event that would be a pack of one
 * goes as a single entry, so does everything while the length is not known yet, and so does an event read
 * from the outbox whose stored signature does not hold (a pack is signed anew: it must not launder it).
 */
import { poolOf, type Db } from '../db/client';
import type { Redis, ReplicationKeys } from '../redis';
import type { EventAuth, SignedEvent } from './event-auth';
import type { Outcome, RedisLinks } from './links';
import { ensureGroup } from './stream';

export interface Delivery {
  changeId: string;
  region: string;
  streamId: string;
}

/** At most this many events go in one entry (a pack). */
export const PACK_MAX_EVENTS = 64;
/** A pack ends before its bytes pass this (an event larger than it goes alone). */
export const PACK_MAX_BYTES = 64 * 1024;

/** One inbox entry to write: its fields and how many events it carries. */
interface Entry {
  fields: string[];
  events: number;
}

/** Consecutive events that may share an entry, and the pack's fields once built (signed once for every destination). */
interface Group {
  events: SignedEvent[];
  bytes: string[];
  fields?: string[];
}

export class Deliverer {
  /** Destinations whose consumer group this process made sure of (a group is created before the first entry). */
  private readonly ensured = new Set<string>();
  /** Each destination's inbox length (entries) as the last delivery's pipeline read it. */
  private readonly lengths = new Map<string, number>();
  /** Per destination, the entries and events this process delivered since start (metrics: how much packs hold). */
  readonly delivered = new Map<string, { entries: number; events: number }>();

  constructor(
    private readonly keys: ReplicationKeys,
    private readonly auth: EventAuth,
    private readonly maxLength: number,
    /** Whether events may go several to an entry (config `replicationPacks`; the region passes it, default true there). */
    private readonly packs = false,
  ) {}

  /** How many packs a delivery to `region` may make now (see the file's comment). */
  packBudget(region: string): number {
    const length = this.lengths.get(region);
    if (!this.packs || length === undefined) return 0;
    return Math.max(0, Math.floor(this.maxLength / PACK_MAX_EVENTS) - length);
  }

  /** Consecutive events up to the limits; an event whose stored signature does not hold is a group of its own. */
  private groups(events: readonly SignedEvent[]): Group[] {
    const out: Group[] = [];
    let group: Group | null = null;
    let size = 0;
    for (const e of events) {
      if (!this.auth.holds(e)) {
        out.push({ events: [e], bytes: [] });
        group = null;
        continue;
      }
      const b = this.auth.eventBytes(e);
      if (!group || group.events.length >= PACK_MAX_EVENTS || size + b.length + 1 > PACK_MAX_BYTES) {
        group = { events: [], bytes: [] };
        out.push(group);
        size = 0;
      }
      group.events.push(e);
      group.bytes.push(b);
      size += b.length + 1;
    }
    return out;
  }

  /** The entry of one event alone. */
  private single(e: SignedEvent): Entry {
    return { fields: this.auth.entryFields(e), events: 1 };
  }

  /** The entries that carry `groups` to a destination allowed `budget` packs: packs first, then single entries. */
  private entries(groups: readonly Group[], budget: number): Entry[] {
    const out: Entry[] = [];
    for (const g of groups) {
      if (g.events.length > 1 && budget > 0) {
        budget -= 1;
        g.fields ??= this.auth.packFields(`[${g.bytes.join(',')}]`);
        out.push({ fields: g.fields, events: g.events.length });
      } else out.push(...g.events.map((e) => this.single(e)));
    }
    return out;
  }

  /**
   * Adds each region's events to its inbox in its Redis; per region, each event's entry id in order, or
   * the error that region's delivery met. Regions whose inboxes share a Redis get theirs in one pipeline:
   * one socket write for all of them (on a small VM each write that wakes Redis costs the writer ~0.1-0.25
   * ms, and with one Redis for every region the second destination's entry waited behind the first's
   * write). A destination's consumer group is created first (reading from the start) if it has none yet,
   * so a configured region that starts after changes were delivered to it reads them all.
   */
  async deliverAll(links: RedisLinks, batches: ReadonlyMap<string, readonly SignedEvent[]>): Promise<Map<string, Outcome<string[]>>> {
    const out = new Map<string, Outcome<string[]>>();
    const byRedis = new Map<Redis, string[]>();
    for (const [region, events] of batches) {
      if (events.length === 0) {
        out.set(region, { ok: true, value: [] });
        continue;
      }
      try {
        const redis = links.to(region);
        const regions = byRedis.get(redis);
        if (regions) regions.push(region);
        else byRedis.set(redis, [region]);
      } catch (err) {
        out.set(region, { ok: false, error: err as Error });
      }
    }
    // The same events go to several destinations (the fast path): their packs are built and signed once.
    const grouped = new Map<readonly SignedEvent[], Group[]>();
    const plan = (region: string): Entry[] => {
      const events = batches.get(region) ?? [];
      const budget = this.packBudget(region);
      if (budget === 0 || events.length < 2) return events.map((e) => this.single(e));
      let groups = grouped.get(events);
      if (!groups) grouped.set(events, (groups = this.groups(events)));
      return this.entries(groups, budget);
    };
    await Promise.all([...byRedis].map(async ([redis, regions]) => {
      try {
        await this.deliverVia(redis, regions, plan, out);
      } catch (err) {
        for (const region of regions) if (!out.has(region)) out.set(region, { ok: false, error: err as Error });
      }
    }));
    return out;
  }

  /** deliverAll's part for the regions whose inboxes are in `redis`: one pipeline, results into `out`. */
  private async deliverVia(redis: Redis, regions: readonly string[], plan: (region: string) => Entry[], out: Map<string, Outcome<string[]>>): Promise<void> {
    // Groups not made sure of yet are created first, at once. When there are none (every call but the
    // first), the pipeline is written before this function first waits: the deliveries leave before
    // whatever the caller sends next (the origin's own ack).
    const unsure = regions.filter((r) => !this.ensured.has(this.keys.inbox(r)));
    if (unsure.length) {
      const made = await Promise.allSettled(unsure.map(async (r) => {
        await ensureGroup(redis, this.keys.inbox(r), r);
        this.ensured.add(this.keys.inbox(r));
      }));
      made.forEach((m, k) => {
        if (m.status === 'rejected') out.set(unsure[k] as string, { ok: false, error: m.reason as Error });
      });
    }
    const ready = regions.filter((r) => !out.has(r));
    if (ready.length === 0) return;
    const pipe = redis.pipeline();
    const entries = ready.map(plan);
    ready.forEach((region, k) => {
      const stream = this.keys.inbox(region);
      for (const e of entries[k] as Entry[]) pipe.xadd(stream, 'MAXLEN', '~', this.maxLength, '*', ...e.fields);
      pipe.xlen(stream);
    });
    let res: [Error | null, unknown][];
    try {
      res = (await pipe.exec()) ?? [];
    } catch (err) {
      for (const region of ready) out.set(region, { ok: false, error: err as Error });
      return;
    }
    let i = 0;
    ready.forEach((region, k) => {
      const ids: string[] = [];
      let error: Error | null = null;
      for (const e of entries[k] as Entry[]) {
        const [err, id] = res[i++] ?? [new Error('missing reply')];
        if (err || typeof id !== 'string') error ??= err ?? new Error('XADD returned no id');
        else for (let n = 0; n < e.events; n++) ids.push(id);
      }
      const [lenErr, length] = res[i++] ?? [new Error('missing reply')];
      if (!lenErr && typeof length === 'number') this.lengths.set(region, length);
      else this.lengths.delete(region);
      // A Redis that lost its data lost the group too: make sure of it again next time.
      if (error) this.ensured.delete(this.keys.inbox(region));
      else {
        const d = this.delivered.get(region) ?? { entries: 0, events: 0 };
        d.entries += (entries[k] as Entry[]).length;
        d.events += ids.length;
        this.delivered.set(region, d);
      }
      out.set(region, error ? { ok: false, error } : { ok: true, value: ids });
    });
  }

  /** deliverAll for one region: its entry ids, or its error thrown. */
  async deliver(links: RedisLinks, region: string, events: readonly SignedEvent[]): Promise<string[]> {
    const r = (await this.deliverAll(links, new Map([[region, events]]))).get(region);
    if (!r?.ok) throw r?.error ?? new Error('not delivered');
    return r.value;
  }
}

/** recordDeliveries' statement, prepared (parsed and planned once per connection). */
const RECORD_DELIVERIES = {
  name: 'record_deliveries',
  text: `WITH d AS (
       INSERT INTO replication_deliveries (change_id, region, stream_id)
       SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[])
       ON CONFLICT (change_id, region) DO UPDATE SET stream_id = EXCLUDED.stream_id, delivered_at = now(), confirmed_at = NULL, ack = NULL
     )
     UPDATE replication_outbox SET published_at = now() WHERE change_id = ANY($4::uuid[]) AND published_at IS NULL`,
};

/**
 * Records deliveries (a redelivery replaces the entry id and clears the confirmation and its ack) and marks the
 * outbox rows in `published` as published, in one statement. On the pool, not through the ORM: the fast path
 * records a batch of several hundred deliveries every 200 ms under load, and the ORM's handling of its
 * arrays cost the region ~60 µs of CPU per PATCH in `npm run bench` (docs/performance.md, "sixteenth session").
 */
export async function recordDeliveries(db: Db, deliveries: readonly Delivery[], published: readonly string[]): Promise<void> {
  if (deliveries.length === 0 && published.length === 0) return;
  await poolOf(db).query({
    ...RECORD_DELIVERIES,
    values: [deliveries.map((d) => d.changeId), deliveries.map((d) => d.region), deliveries.map((d) => d.streamId), published],
  });
}
