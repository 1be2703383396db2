/**
 * The outbox relay's publishing (relay.ts): the unpublished outbox rows, those the fast path did not deliver
 * everywhere, delivered in order to the destinations that lack them, in two bounded passes (publishPending).
 */
import { REDIS_OUTAGE_WARN_MS, redisProblem } from '../redis';
import { recordDeliveries, type Deliverer, type Delivery } from './delivery';
import { DEFAULT_REPUBLISH_AFTER_MS, orgsOf, type DeliveryConfirmerDeps } from './relay-confirm';
import type { SignedEvent } from './event-auth';
import { IN_FLIGHT_MS } from './horizon';
import { withoutCredentials } from './links';

/** Unpublished rows read per page; pages per call of the tail pass and of the sweep (see publishPending). */
const PAGE_ROWS = 500;
const TAIL_PAGES = 20;
const SWEEP_PAGES = 4;
/** The longest one call's sweep reads on while it delivers. */
const SWEEP_BUDGET_MS = 2000;
/** A destination failing for less than this is taken for a blip: the tail waits for it (publishPending). */
const TAIL_HOLD_MS = 30_000;
/**
 * How often the sweep starts a new round over the backlog after a round that found nothing to deliver while
 * no destination failed (publishPending). Each round's first query walks the unpublished-rows index from its
 * start, through the entries every published row leaves there until a vacuum: under a steady write load the
 * sweep's and the tail's queries cost Postgres 23–51 µs per write when both ran every cycle
 * (pg_stat_statements, 2026-12-02).
 */
const SWEEP_IDLE_MS = 15_000;

/** Which rows publishPage reads: a page after an id, old enough; or named ones. */
type PageQuery = { after: bigint; minAgeMs: number } | { changeIds: readonly string[] };

/** An outbox row as publishPage reads it: the destinations that have a delivery of it; `stale`, see readPage. */
interface PageRow {
  id: bigint;
  change_id: string;
  org_id: string | null;
  delivered: string[];
  stale?: string[];
}

export interface OutboxPublisherDeps extends Pick<DeliveryConfirmerDeps, 'db' | 'links' | 'tracker' | 'region' | 'log' | 'republishAfterMs'> {
  /** See SWEEP_IDLE_MS (tests set less). */
  sweepIdleMs?: number;
  /** See settledEnd: IN_FLIGHT_MS (tests set less; in a deployment it must exceed WRITE_TX_TIMEOUT_MS). */
  tailSettleMs?: number;
}

/** What the publishing uses of its relay. */
export interface OutboxPublisherHost {
  deliverer: Deliverer;
  /** OutboxRelay's counter. */
  counts: { published: number };
  /** The other members (OutboxRelay's destinations). */
  destinations(cached: boolean): Promise<string[]>;
  /** Looks up long-unconfirmed deliveries of unpublished rows (DeliveryConfirmer.checkStale). */
  checkStale(all: readonly { change_id: string; region: string; stream_id: string }[], destinations: readonly string[], down: ReadonlySet<string>): Promise<void>;
}

export class OutboxPublisher {
  /** The failing destinations this process warned of (cannotDeliver): their end is said once (notFailing). */
  private readonly warned = new Set<string>();

  constructor(
    private readonly d: OutboxPublisherDeps,
    private readonly host: OutboxPublisherHost,
  ) {}

  /**
   * Each try is a debug line; a destination failing for REDIS_OUTAGE_WARN_MS (since failingSince, which a call that
   * does not fail there clears) a warning, once an outage, so that a region cut off from a peer's Redis says so
   * at the default level.
   */
  private cannotDeliver(dest: string, err: Error, now: number): void {
    this.d.log.debug({ err: err.message, destination: dest }, 'could not deliver to a region; will retry');
    const since = this.failingSince.get(dest);
    if (since === undefined || now - since < REDIS_OUTAGE_WARN_MS || this.warned.has(dest)) return;
    this.warned.add(dest);
    this.d.log.warn({ err: redisProblem(err), destination: dest, redis_url: this.redisUrlOf(dest) }, "could not deliver to a region's Redis; its changes wait in this region's outbox until it answers");
  }

  /** Where `dest`'s Redis is, without credentials, for the outage's two lines. */
  private redisUrlOf(dest: string): string {
    return withoutCredentials(this.d.links.urlOf(dest));
  }

  /** `dest` is no longer failing (it took a delivery, or a call did not fail there): its outage, if warned of, is said to be over. */
  private notFailing(dest: string, now: number): void {
    const since = this.failingSince.get(dest);
    this.failingSince.delete(dest);
    if (since !== undefined && this.warned.delete(dest)) this.d.log.info({ destination: dest, redis_url: this.redisUrlOf(dest), failing_ms: now - since }, "delivering to a region's Redis again");
  }

  /**
   * Delivers each event to each destination that lacks it, a destination at a time (at once for all);
   * returns the deliveries made and the destinations that failed (down, cut off).
   */
  private async deliverMissing(needs: Map<string, { changeId: string; event: SignedEvent }[]>): Promise<{ made: Delivery[]; failed: Set<string> }> {
    const made: Delivery[] = [];
    const failed = new Set<string>();
    const res = await this.host.deliverer.deliverAll(this.d.links, new Map([...needs].map(([dest, items]) => [dest, items.map((i) => i.event)])));
    const now = Date.now();
    for (const [dest, r] of res) {
      const items = needs.get(dest) ?? [];
      if (r.ok) r.value.forEach((streamId, k) => made.push({ changeId: items[k]?.changeId as string, region: dest, streamId }));
      else {
        failed.add(dest);
        this.cannotDeliver(dest, r.error, now);
      }
    }
    return { made, failed };
  }

  /**
   * Delivers unpublished rows older than `minAgeMs` (the fast path handles fresh ones) to the destinations
   * that lack them, in order within each pass. Returns how many rows became published. While a destination
   * is down, every row waits for it and the unpublished backlog grows without bound, so a call reads only a
   * bounded part of what needs nothing, in two passes, and a row another destination lacks is never stuck
   * behind rows that only the down one lacks:
   * - the tail: the rows added since the last call, where the fast path's misses are (a destination's
   *   Redis blipped, the process crashed after commit). It does not move past a row that a destination
   *   failing for less than TAIL_HOLD_MS lacks (a blip: that row is tried again next call); a destination
   *   failing longer is down, and its rows are left to the sweep. At the first call it starts before the
   *   rows of the last IN_FLIGHT_MS + a minute (those of a process that just restarted);
   * - the sweep: resumes where the last call's stopped and wraps around the whole backlog, reading on as
   *   long as its pages deliver something (a destination back after an outage gets its backlog in calls of
   *   up to SWEEP_BUDGET_MS, so confirm and trim still run between them) and SWEEP_PAGES pages that deliver
   *   nothing.
   */
  async publishPending(minAgeMs: number): Promise<number> {
    // Every cycle: the cached members will do (confirm() reads them fresh and delivers to newcomers).
    const destinations = await this.host.destinations(true);
    const down = new Set<string>();
    let total = await this.tailPass(minAgeMs, destinations, down);
    total += await this.sweepPass(minAgeMs, destinations, down);
    // A destination that did not fail in this call is not failing (it had nothing to take, or took it): a
    // later failure starts a new blip.
    const now = Date.now();
    for (const dest of [...this.failingSince.keys()]) if (!down.has(dest)) this.notFailing(dest, now);
    return total;
  }

  /** publishPending's tail pass: up to TAIL_PAGES pages after the tail, which it moves on; returns the rows published. */
  private async tailPass(minAgeMs: number, destinations: readonly string[], down: Set<string>): Promise<number> {
    let total = 0;
    this.tail ??= await this.firstTail();
    // Where the tail may move on to when its pages end (a page not full), past the rows the fast path
    // published: the newest id seen at least tailSettleMs ago (see settledEnd). (It used to stay where it
    // was, and its query walked, every cycle, the index entries each row published since then left until a
    // vacuum: 5 ms a cycle after a minute of PATCHes in `npm run bench`, growing until a vacuum.)
    const end = await this.settledEnd();
    // The tail never moves past a held row, even when a later page fails.
    let held: bigint | null = null;
    for (let i = 0, after = this.tail; i < TAIL_PAGES; i++) {
      const page = await this.publishPage({ after, minAgeMs }, destinations, down);
      total += page.published;
      held ??= page.heldFrom;
      if (page.last === null) {
        this.tail = held !== null ? held - 1n : end > this.tail ? end : this.tail;
        break;
      }
      after = page.last;
      this.tail = held === null ? after : held - 1n;
    }
    return total;
  }

  /** Where the tail starts at the first call: before the rows of the last IN_FLIGHT_MS + a minute. */
  private async firstTail(): Promise<bigint> {
    const rows = await this.d.db.$queryRawUnsafe<{ start: bigint | null }[]>(
      `SELECT COALESCE((SELECT min(id) - 1 FROM replication_outbox WHERE created_at > now() - make_interval(secs => $1::float8 / 1000)),
                           (SELECT max(id) FROM replication_outbox), 0) AS start`,
      IN_FLIGHT_MS + 60_000,
    );
    return BigInt(rows[0]?.start ?? 0n);
  }

  /** publishPending's sweep: pages from where the last call's stopped, within its budget; returns the rows published. */
  private async sweepPass(minAgeMs: number, destinations: readonly string[], down: Set<string>): Promise<number> {
    let total = 0;
    const sweepUntil = Date.now() + SWEEP_BUDGET_MS;
    // A new round only every SWEEP_IDLE_MS while the last one found nothing and nothing fails: what it is for
    // (rows behind a down destination, a commit that became visible after the tail passed its id and whose
    // fast path failed, rows of before a restart) then waits at most that long.
    const resting = this.sweep === 0n && down.size === 0 && this.failingSince.size === 0 && this.sweepIdleAt !== null && Date.now() - this.sweepIdleAt < (this.d.sweepIdleMs ?? SWEEP_IDLE_MS);
    for (let idle = 0; !resting && idle < SWEEP_PAGES && Date.now() < sweepUntil; ) {
      const page = await this.publishPage({ after: this.sweep, minAgeMs }, destinations, down);
      total += page.published;
      if (page.made === 0) idle++;
      this.sweepRoundMade += page.made;
      // At the backlog's end the sweep starts over from its beginning (next call).
      this.sweep = page.last ?? 0n;
      if (page.last === null) {
        this.sweepIdleAt = this.sweepRoundMade === 0 && down.size === 0 ? Date.now() : null;
        this.sweepRoundMade = 0;
        break;
      }
    }
    return total;
  }

  /** The newest outbox id, as read at times (performance.now(), ms): oldest first (see settledEnd). */
  private readonly newestIds: { at: number; id: bigint }[] = [];

  /**
   * The newest outbox id this relay saw committed at least tailSettleMs (IN_FLIGHT_MS) ago, 0 when none;
   * takes a new reading. Every lower id was taken before then by a transaction that has ended since (a
   * write runs at most WRITE_TX_TIMEOUT_MS), so each such row is committed or never will be, and older
   * than the tail's minimum age: when the tail's pages end, each of them that is unpublished was in them.
   * (The newest row old enough by created_at is no such point: created_at is a transaction's start, and
   * a younger transaction can take a lower id and commit after an older one took a higher.)
   */
  private async settledEnd(): Promise<bigint> {
    const rows = await this.d.db.$queryRawUnsafe<{ id: bigint | null }[]>('SELECT max(id) AS id FROM replication_outbox');
    // Timed once the answer is in (the query may have waited for a connection: its snapshot is no later
    // than this), on a clock that no step of the wall clock moves.
    const now = performance.now();
    this.newestIds.push({ at: now, id: BigInt(rows[0]?.id ?? 0n) });
    const settled = now - (this.d.tailSettleMs ?? IN_FLIGHT_MS);
    // The newest settled reading stays first; the older ones are of no more use.
    while (this.newestIds.length > 1 && (this.newestIds[1] as { at: number }).at <= settled) this.newestIds.shift();
    const first = this.newestIds[0] as { at: number; id: bigint };
    return first.at <= settled ? first.id : 0n;
  }

  /** Keyset cursors of publishPending's two passes over the unpublished rows. */
  private tail: bigint | null = null;
  private sweep = 0n;
  /** Deliveries the sweep's round under way made; when the last round that made none ended (null: it made some). */
  private sweepRoundMade = 0;
  private sweepIdleAt: number | null = null;
  /** Per destination: since when its deliveries fail (cleared by one that succeeds). */
  private readonly failingSince = new Map<string, number>();

  /**
   * One page of unpublished rows (after an id, or named ones): each is delivered to the destinations that
   * lack a delivery of it (but those `down` already failed in this call; a new failure joins them), and
   * marked published once every destination has one. `last`: the page's last id, null when the page was
   * not full (nothing after it).
   */
  async publishPage(
    which: PageQuery,
    destinations: readonly string[],
    down: Set<string>,
  ): Promise<{ published: number; made: number; heldFrom: bigint | null; last: bigint | null }> {
    const rows = await this.readPage(which);
    const needs = await this.needsOf(rows, destinations, down);
    const { made, failed } = needs.size ? await this.deliverMissing(needs) : { made: [], failed: new Set<string>() };
    const now = Date.now();
    this.noteFailures(made, failed, down, now);
    const { published, have } = await this.markPublished(rows, made, destinations);
    await this.checkStaleOf(rows, destinations, down);
    const last = rows[rows.length - 1];
    return {
      published: published.length,
      made: made.length,
      heldFrom: this.heldFrom(rows, have, down, now),
      last: 'changeIds' in which || rows.length < PAGE_ROWS || !last ? null : last.id,
    };
  }

  /** publishPage's rows: the named ones, or a page of unpublished ones old enough, after an id. */
  private async readPage(which: PageQuery): Promise<PageRow[]> {
    const { db } = this.d;
    const delivered = 'ARRAY(SELECT d.region FROM replication_deliveries d WHERE d.change_id = o.change_id) AS delivered';
    return 'changeIds' in which
      ? await db.$queryRawUnsafe<PageRow[]>(
          `SELECT o.id, o.change_id::text, o.org_id::text, ${delivered} FROM replication_outbox o WHERE o.change_id = ANY($1::uuid[]) ORDER BY o.id`,
          which.changeIds,
        )
      : await db.$queryRawUnsafe<PageRow[]>(
          // The events are read only for the rows that need a delivery: most rows of a backlog behind a
          // down destination need none this time. `stale`: its deliveries long unconfirmed ("region id").
          `SELECT o.id, o.change_id::text, o.org_id::text, ${delivered},
                    ARRAY(SELECT d.region || ' ' || d.stream_id FROM replication_deliveries d
                           WHERE d.change_id = o.change_id AND d.confirmed_at IS NULL
                             AND d.delivered_at < now() - make_interval(secs => $3::float8 / 1000)) AS stale
               FROM replication_outbox o
              WHERE o.published_at IS NULL AND o.id > $2 AND o.created_at < now() - make_interval(secs => $1::float8 / 1000)
              ORDER BY o.id LIMIT ${PAGE_ROWS}`,
          which.minAgeMs,
          which.after,
          this.d.republishAfterMs ?? DEFAULT_REPUBLISH_AFTER_MS,
        );
  }

  /** Per destination, the rows it lacks, each with its event. */
  private async needsOf(rows: readonly PageRow[], destinations: readonly string[], down: ReadonlySet<string>): Promise<Map<string, { changeId: string; event: SignedEvent }[]>> {
    // Per row, the destinations (not down) it lacks; the events only of the rows that lack one.
    const lacking = rows.map((r) => destinations.filter((dest) => !r.delivered.includes(dest) && !down.has(dest)));
    const wanted = rows.filter((_, i) => lacking[i]?.length).map((r) => r.change_id);
    const events = new Map<string, SignedEvent>();
    if (wanted.length) {
      const read = await this.d.db.$queryRawUnsafe<{ change_id: string; event: SignedEvent }[]>(
        'SELECT change_id::text, event FROM replication_outbox WHERE change_id = ANY($1::uuid[])',
        wanted,
      );
      for (const e of read) events.set(e.change_id, e.event);
    }
    const needs = new Map<string, { changeId: string; event: SignedEvent }[]>();
    rows.forEach((r, i) => {
      const event = events.get(r.change_id);
      if (!event) return; // needs nothing, or gone meanwhile
      for (const dest of lacking[i] ?? []) {
        let list = needs.get(dest);
        if (!list) needs.set(dest, (list = []));
        list.push({ changeId: r.change_id, event });
      }
    });
    return needs;
  }

  /** The destinations that failed are down for the rest of this call, failing since now unless already; those that took a delivery are not. */
  private noteFailures(made: readonly Delivery[], failed: ReadonlySet<string>, down: Set<string>, now: number): void {
    for (const f of failed) {
      down.add(f);
      if (!this.failingSince.has(f)) this.failingSince.set(f, now);
    }
    for (const m of made) this.notFailing(m.region, now);
  }

  /**
   * Records the deliveries made, and marks published the rows every destination now has; returns those and,
   * per row, the destinations that have it.
   */
  private async markPublished(rows: readonly PageRow[], made: readonly Delivery[], destinations: readonly string[]): Promise<{ published: string[]; have: Map<string, Set<string>> }> {
    const { db, tracker, region } = this.d;
    const have = new Map(rows.map((r) => [r.change_id, new Set(r.delivered)]));
    for (const m of made) have.get(m.changeId)?.add(m.region);
    const published = rows.filter((r) => destinations.every((dest) => have.get(r.change_id)?.has(dest))).map((r) => r.change_id);
    await recordDeliveries(db, made, published);
    // The origin's own ack is "applied": its transaction put every row. With the organization, which the
    // change-status routes of the other regions check (the fast path's ack, which records it, failed).
    if (published.length) await tracker.ack(region, published, { orgs: orgsOf(rows) }).catch(() => undefined);
    this.host.counts.published += published.length;
    return { published, have };
  }

  /** Hands the page's long-unconfirmed deliveries to checkStale. */
  private async checkStaleOf(rows: readonly PageRow[], destinations: readonly string[], down: ReadonlySet<string>): Promise<void> {
    const stale = rows.flatMap((r) => (r.stale ?? []).map((s) => ({ change_id: r.change_id, region: s.slice(0, s.indexOf(' ')), stream_id: s.slice(s.indexOf(' ') + 1) })));
    // Its failure (this region's Redis down) does not hold up the publishing; the next round tries again.
    await this.host.checkStale(stale, destinations, down).catch((err: unknown) => this.d.log.debug({ err: (err as Error).message }, 'could not check stale deliveries; will retry'));
  }

  /** publishPage's heldFrom: the id of the row the tail must not move past, null when none. */
  private heldFrom(rows: readonly PageRow[], have: Map<string, Set<string>>, down: ReadonlySet<string>, now: number): bigint | null {
    // The first row a destination that only began failing lacks (see publishPending's tail).
    const blipping = [...down].filter((dest) => now - (this.failingSince.get(dest) ?? now) < TAIL_HOLD_MS);
    const heldRow = blipping.length ? rows.find((r) => blipping.some((dest) => !have.get(r.change_id)?.has(dest))) : undefined;
    return heldRow ? BigInt(heldRow.id) : null;
  }
}
