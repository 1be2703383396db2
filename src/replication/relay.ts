/**
 * Background duties of a region's outbox, so that nothing acknowledged is ever lost. Each change goes
 * from its origin straight into every other member's inbox, in that member's own Redis (delivery.ts):
 * - publish: rows the fast path did not deliver everywhere (a destination's Redis down, a crash between
 *   commit and XADD) are delivered, in order, to the destinations that lack them;
 * - confirm: per destination, a delivery is confirmed once that region acked the change (its ack is in
 *   this region's Redis); a row is confirmed once every member did. A member with no delivery yet (it
 *   joined since) gets one; a delivery long unconfirmed and no longer in its destination's inbox (that
 *   Redis restarted without its data) is delivered again;
 * - trim: each destination's inbox is trimmed below what its region's group has delivered and acked.
 * One destination that is down or cut off never holds back the others.
 */
import type { Db } from '../db/client';
import { isUuid } from '../http/validate';
import type { Logger } from '../logger';
import type { ReplicationKeys } from '../redis';
import { Deliverer, recordDeliveries, type Delivery } from './delivery';
import { markJoining, type Membership } from './membership';
import { eachRegion, type RedisLinks } from './links';
import { behindTrim, compareStreamIds, DEFAULT_STREAM_MAX_LENGTH, groupFloor, groupInfo, streamBounds, streamHolds, type StreamBounds } from './stream';
import { parseAck, type Tracker } from './tracker';
import type { EventAuth, SignedEvent } from './event-auth';
import { Loop } from './loop';
import { IN_FLIGHT_MS } from './horizon';

export interface RelayDeps {
  db: Db;
  links: RedisLinks;
  keys: ReplicationKeys;
  tracker: Tracker;
  region: string;
  regions: readonly string[];
  /** The deployment's members (read fresh before confirming); without it, `regions`. */
  membership?: Pick<Membership, 'refresh' | 'regions' | 'hasJoined'>;
  log: Logger;
  intervalMs?: number;
  /** Delivered but unconfirmed for this long: check the stream still has it (default DEFAULT_REPUBLISH_AFTER_MS). */
  republishAfterMs?: number;
  /** Confirmed rows are kept this long for follow-up, then deleted; so are their ack records in Redis. */
  retentionMs?: number;
  /** Cap of the change stream (XADD MAXLEN ~). */
  streamMaxLength?: number;
  /** How often trim() runs (default DEFAULT_TRIM_INTERVAL_MS). */
  trimIntervalMs?: number;
  /** Events go out with the signature stored with them (see event-auth.ts). */
  auth: EventAuth;
  /** Shared with the fast path (Replicator.publish), so a destination's group is made sure of once. */
  deliverer?: Deliverer;
  /** See SWEEP_IDLE_MS (tests set less). */
  sweepIdleMs?: number;
  /** See settledEnd: IN_FLIGHT_MS (tests set less; in a deployment it must exceed WRITE_TX_TIMEOUT_MS). */
  tailSettleMs?: number;
}

interface DeliveryState {
  /** The inbox entry it was (last) delivered as. */
  sid: string;
  /** Delivered longer ago than republishAfterMs. */
  stale: boolean;
  confirmed: boolean;
}

/** A published, unconfirmed outbox row and its deliveries by destination (confirm()). */
interface UnconfirmedRow {
  id: bigint;
  change_id: string;
  org_id: string | null;
  deliveries: Record<string, DeliveryState>;
}

/** Each outbox row's organization by change id, for the origin's own ack (see tracker.ack's `orgs`). */
function orgsOf(rows: readonly { change_id: string; org_id: string | null }[]): Map<string, string> {
  return new Map(rows.flatMap((r) => (r.org_id ? [[r.change_id, r.org_id] as const] : [])));
}

/** Unpublished rows read per page; pages per call of the tail pass and of the sweep (see publishPending). */
const PAGE_ROWS = 500;
const TAIL_PAGES = 20;
const SWEEP_PAGES = 4;
/** The longest one call's sweep reads on while it delivers. */
const SWEEP_BUDGET_MS = 2000;
/** Changes applied after they were parked, copied into their deliveries per call of unparked(). */
const UNPARKED_PAGE = 500;

/** How long a delivery stays unconfirmed before its destination's inbox is searched for it (republishAfterMs). */
export const DEFAULT_REPUBLISH_AFTER_MS = 10_000;
/** Unconfirmed rows read per call of confirm(). */
const CONFIRM_PAGE_ROWS = 2000;
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
/** How often the inboxes are trimmed (config streamTrimIntervalMs); each trim also records their incarnations. */
export const DEFAULT_TRIM_INTERVAL_MS = 30_000;

export class OutboxRelay {
  private readonly loop: Loop;
  private lastTrim = 0;
  private lastConfirm = 0;
  /** Keyset cursor over unconfirmed rows, so old rows stuck on a down region do not hide newer ones. */
  private confirmCursor = 0n;
  private readonly deliverer: Deliverer;
  published = 0;
  republished = 0;
  /** Changes trimmed by an inbox's cap before its region acked them (that region needs a re-seed). */
  trimmedUnconfirmed = 0;

  constructor(private readonly d: RelayDeps) {
    this.loop = new Loop(() => this.cycle(), d.intervalMs ?? 500);
    this.deliverer = d.deliverer ?? new Deliverer(d.keys, d.auth, d.streamMaxLength ?? DEFAULT_STREAM_MAX_LENGTH);
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  async cycle(): Promise<void> {
    const confirmDue = Date.now() - this.lastConfirm >= 2000;
    if (confirmDue) this.lastConfirm = Date.now();
    for (const step of [() => this.publishPending(1000), () => (confirmDue ? this.confirm() : undefined), () => (confirmDue ? this.unparked() : undefined), () => this.trim()]) {
      try {
        await step();
      } catch (err) {
        this.d.log.debug({ err: (err as Error).message }, 'outbox relay step failed; will retry');
      }
    }
  }

  /**
   * The other members: a fresh read (the last known ones while this region's Redis is down), or with
   * `cached`, the process's cached members (re-read every second).
   */
  private async destinations(cached = false): Promise<string[]> {
    const m = this.d.membership;
    const regions = !m ? this.d.regions : cached ? m.regions() : (await m.refresh()).map((x) => x.region);
    return regions.filter((r) => r !== this.d.region);
  }

  /**
   * Delivers each event to each destination that lacks it, a destination at a time (at once for all);
   * returns the deliveries made and the destinations that failed (down, cut off).
   */
  private async deliverMissing(needs: Map<string, { changeId: string; event: SignedEvent }[]>): Promise<{ made: Delivery[]; failed: Set<string> }> {
    const made: Delivery[] = [];
    const failed = new Set<string>();
    const res = await this.deliverer.deliverAll(this.d.links, new Map([...needs].map(([dest, items]) => [dest, items.map((i) => i.event)])));
    for (const [dest, r] of res) {
      const items = needs.get(dest) ?? [];
      if (r.ok) r.value.forEach((streamId, k) => made.push({ changeId: items[k]?.changeId as string, region: dest, streamId }));
      else {
        failed.add(dest);
        this.d.log.debug({ err: r.error.message, destination: dest }, 'could not deliver to a region; will retry');
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
    const destinations = await this.destinations(true);
    const down = new Set<string>();
    let total = 0;
    this.tail ??= BigInt(
      (
        await this.d.db.$queryRawUnsafe<{ start: bigint | null }[]>(
          `SELECT COALESCE((SELECT min(id) - 1 FROM replication_outbox WHERE created_at > now() - make_interval(secs => $1::float8 / 1000)),
                           (SELECT max(id) FROM replication_outbox), 0) AS start`,
          IN_FLIGHT_MS + 60_000,
        )
      )[0]?.start ?? 0n,
    );
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
    // A destination that did not fail in this call is not failing (it had nothing to take, or took it): a
    // later failure starts a new blip.
    for (const dest of [...this.failingSince.keys()]) if (!down.has(dest)) this.failingSince.delete(dest);
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
  private async publishPage(
    which: { after: bigint; minAgeMs: number } | { changeIds: readonly string[] },
    destinations: readonly string[],
    down: Set<string>,
  ): Promise<{ published: number; made: number; heldFrom: bigint | null; last: bigint | null }> {
    const { db, tracker, region } = this.d;
    const delivered = 'ARRAY(SELECT d.region FROM replication_deliveries d WHERE d.change_id = o.change_id) AS delivered';
    const rows =
      'changeIds' in which
        ? await db.$queryRawUnsafe<{ id: bigint; change_id: string; org_id: string | null; delivered: string[]; stale?: string[] }[]>(
            `SELECT o.id, o.change_id::text, o.org_id::text, ${delivered} FROM replication_outbox o WHERE o.change_id = ANY($1::uuid[]) ORDER BY o.id`,
            which.changeIds,
          )
        : await db.$queryRawUnsafe<{ id: bigint; change_id: string; org_id: string | null; delivered: string[]; stale?: string[] }[]>(
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
    // Per row, the destinations (not down) it lacks; the events only of the rows that lack one.
    const lacking = rows.map((r) => destinations.filter((dest) => !r.delivered.includes(dest) && !down.has(dest)));
    const wanted = rows.filter((_, i) => lacking[i]?.length).map((r) => r.change_id);
    const events = new Map<string, SignedEvent>();
    if (wanted.length) {
      const read = await db.$queryRawUnsafe<{ change_id: string; event: SignedEvent }[]>(
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
    const { made, failed } = needs.size ? await this.deliverMissing(needs) : { made: [], failed: new Set<string>() };
    const now = Date.now();
    for (const f of failed) {
      down.add(f);
      if (!this.failingSince.has(f)) this.failingSince.set(f, now);
    }
    for (const m of made) this.failingSince.delete(m.region);
    const have = new Map(rows.map((r) => [r.change_id, new Set(r.delivered)]));
    for (const m of made) have.get(m.changeId)?.add(m.region);
    const published = rows.filter((r) => destinations.every((dest) => have.get(r.change_id)?.has(dest))).map((r) => r.change_id);
    await recordDeliveries(db, made, published);
    // The origin's own ack is "applied": its transaction put every row. With the organization, which the
    // change-status routes of the other regions check (the fast path's ack, which records it, failed).
    if (published.length) await tracker.ack(region, published, { orgs: orgsOf(rows) }).catch(() => undefined);
    this.published += published.length;
    const stale = rows.flatMap((r) => (r.stale ?? []).map((s) => ({ change_id: r.change_id, region: s.slice(0, s.indexOf(' ')), stream_id: s.slice(s.indexOf(' ') + 1) })));
    // Its failure (this region's Redis down) does not hold up the publishing; the next round tries again.
    await this.checkStale(stale, destinations, down).catch((err: unknown) => this.d.log.debug({ err: (err as Error).message }, 'could not check stale deliveries; will retry'));
    // The first row a destination that only began failing lacks (see publishPending's tail).
    const blipping = [...down].filter((dest) => now - (this.failingSince.get(dest) ?? now) < TAIL_HOLD_MS);
    const heldRow = blipping.length ? rows.find((r) => blipping.some((dest) => !have.get(r.change_id)?.has(dest))) : undefined;
    const last = rows[rows.length - 1];
    return {
      published: published.length,
      made: made.length,
      heldFrom: heldRow ? BigInt(heldRow.id) : null,
      last: 'changeIds' in which || rows.length < PAGE_ROWS || !last ? null : last.id,
    };
  }

  async confirm(): Promise<void> {
    const { db, links, keys, region } = this.d;
    // Not before this process has joined (the applier's first step): a Redis restarted empty holds no record
    // of a region added at runtime until join() copies it back from the peers' copies, and a row confirmed
    // meanwhile, without that region, would never be delivered to it (a review's reasoning).
    if (this.d.membership && !this.d.membership.hasJoined) return;
    const rows = await this.unconfirmedPage();
    this.confirmCursor = rows.length === CONFIRM_PAGE_ROWS ? (rows[rows.length - 1]?.id ?? 0n) : 0n;
    if (rows.length) {
      // Read after the rows: a region that registers after this read gets a delivery of every row not
      // confirmed by then (next time round), and the re-seed covers the rest (membership.ts).
      const destinations = await this.destinations();
      const pipe = links.own.pipeline();
      for (const r of rows) pipe.hgetall(keys.ack(r.change_id));
      const acks = (await pipe.exec()) ?? [];
      const confirmed: string[] = [];
      const acked: { changeId: string; region: string; ack?: string }[] = [];
      const ownAck: string[] = [];
      const missing = new Set<string>();
      const suspects = new Map<string, { change_id: string; stream_id: string }[]>();
      rows.forEach((r, i) => {
        const [err, record] = acks[i] ?? [new Error('missing reply')];
        if (err) return;
        const ackOf = new Map(Object.entries((record ?? {}) as Record<string, string>));
        const have = new Set(ackOf.keys());
        if (!have.has(region)) ownAck.push(r.change_id);
        let done = true;
        for (const dest of destinations) {
          const dl = r.deliveries[dest];
          if (dl?.confirmed) continue;
          if (have.has(dest)) {
            acked.push({ changeId: r.change_id, region: dest, ack: ackOf.get(dest) });
            continue;
          }
          done = false;
          if (!dl) missing.add(r.change_id);
          else if (dl.stale) {
            const list = suspects.get(dest);
            if (list) list.push({ change_id: r.change_id, stream_id: dl.sid });
            else suspects.set(dest, [{ change_id: r.change_id, stream_id: dl.sid }]);
          }
        }
        if (done) confirmed.push(r.change_id);
      });
      if (ownAck.length) await this.d.tracker.ack(region, ownAck, { orgs: orgsOf(rows) }).catch(() => undefined);
      await this.confirmDeliveries(acked);
      if (confirmed.length) {
        await db.$executeRawUnsafe('UPDATE replication_outbox SET confirmed_at = now() WHERE change_id = ANY($1::uuid[])', confirmed);
        await this.expireAcks(confirmed);
      }
      // Rows a member has no delivery of (it joined since they were published): deliver them now.
      if (missing.size) {
        await db.$executeRawUnsafe('UPDATE replication_outbox SET published_at = NULL WHERE change_id = ANY($1::uuid[])', [...missing]);
        await this.publishPage({ changeIds: [...missing] }, destinations, new Set());
      }
      if (suspects.size) await this.redeliverLostEach(suspects);
    }
    await db.$executeRawUnsafe(
      `DELETE FROM replication_outbox WHERE confirmed_at < now() - make_interval(secs => $1::float8 / 1000)`,
      this.d.retentionMs ?? 3_600_000,
    );
  }

  /**
   * The next page of published, unconfirmed rows after the confirm cursor, each with its deliveries by
   * destination. One row per delivery, gathered here: a jsonb object built per row in Postgres took three
   * times as long (2,000 rows with two deliveries each: 37 against 13 ms).
   */
  private async unconfirmedPage(): Promise<UnconfirmedRow[]> {
    const flat = await this.d.db.$queryRawUnsafe<
      { id: bigint; change_id: string; org_id: string | null; region: string | null; sid: string | null; confirmed: boolean | null; stale: boolean | null }[]
    >(
      `SELECT o.id, o.change_id::text, o.org_id::text, d.region, d.stream_id AS sid, d.confirmed_at IS NOT NULL AS confirmed,
              d.delivered_at < now() - make_interval(secs => $1::float8 / 1000) AS stale
         FROM (SELECT id, change_id, org_id FROM replication_outbox WHERE published_at IS NOT NULL AND confirmed_at IS NULL AND id > $2
                ORDER BY id LIMIT ${CONFIRM_PAGE_ROWS}) o
         LEFT JOIN replication_deliveries d ON d.change_id = o.change_id
        ORDER BY o.id`,
      this.d.republishAfterMs ?? DEFAULT_REPUBLISH_AFTER_MS,
      this.confirmCursor,
    );
    const rows: UnconfirmedRow[] = [];
    for (const f of flat) {
      let row = rows[rows.length - 1];
      if (!row || row.change_id !== f.change_id) rows.push((row = { id: f.id, change_id: f.change_id, org_id: f.org_id, deliveries: {} }));
      if (f.region !== null) row.deliveries[f.region] = { sid: f.sid ?? '', confirmed: f.confirmed === true, stale: f.stale === true };
    }
    return rows;
  }

  /**
   * Deliveries of unpublished rows (a destination still lacks one: it is down), long unconfirmed: confirm()
   * reads only published rows, so without this a delivery lost with its destination's Redis would wait
   * for the down destination to return before it is sent again. The acked ones are confirmed; the others
   * are looked up in their inboxes as confirm() does (redeliverLost).
   */
  private async checkStale(all: readonly { change_id: string; region: string; stream_id: string }[], destinations: readonly string[], down: ReadonlySet<string>): Promise<void> {
    // Members only: a region removed since keeps its delivery rows, and must not get its inbox back.
    const stale = all.filter((s) => destinations.includes(s.region) && !down.has(s.region));
    if (stale.length === 0) return;
    const { links, keys } = this.d;
    const pipe = links.own.pipeline();
    for (const s of stale) pipe.hget(keys.ack(s.change_id), s.region);
    const res = (await pipe.exec()) ?? [];
    const acked: { changeId: string; region: string; ack: string }[] = [];
    const unacked = new Map<string, { change_id: string; stream_id: string }[]>();
    stale.forEach((s, i) => {
      const [err, ack] = res[i] ?? [new Error('missing reply')];
      if (err) return;
      if (typeof ack === 'string') acked.push({ changeId: s.change_id, region: s.region, ack });
      else {
        const list = unacked.get(s.region) ?? [];
        list.push({ change_id: s.change_id, stream_id: s.stream_id });
        unacked.set(s.region, list);
      }
    });
    await this.confirmDeliveries(acked);
    if (unacked.size) await this.redeliverLostEach(unacked);
  }

  /** Marks deliveries confirmed, each with the ack that confirmed it when known (see change-status.ts). */
  private async confirmDeliveries(acked: readonly { changeId: string; region: string; ack?: string }[]): Promise<void> {
    if (acked.length === 0) return;
    await this.d.db.$executeRawUnsafe(
      `UPDATE replication_deliveries d SET confirmed_at = now(), ack = x.ack FROM unnest($1::uuid[], $2::text[], $3::text[]) AS x(cid, region, ack)
        WHERE d.change_id = x.cid AND d.region = x.region AND d.confirmed_at IS NULL`,
      acked.map((a) => a.changeId),
      acked.map((a) => a.region),
      acked.map((a) => a.ack ?? null),
    );
  }

  /**
   * Deliveries confirmed on a parked ack whose region has applied the change since (the retry of parked
   * changes, parked-retry.ts): that region names them in this Redis (keys.unparked), and the ack it recorded there
   * replaces the parked one kept with the delivery. The change's status reads the delivery's once this Redis
   * lost the ack records; it showed the region as parked again, until the outbox row's retention ended.
   */
  async unparked(): Promise<void> {
    const { db, links, keys, region } = this.d;
    const key = keys.unparked(region);
    const members = await links.own.srandmember(key, UNPARKED_PAGE);
    if (members.length === 0) return;
    const named = members.map((m) => {
      const [changeId = '', dest = ''] = m.split(' ');
      return { m, changeId: changeId.toLowerCase(), dest };
    });
    const pipe = links.own.pipeline();
    for (const n of named) pipe.hget(keys.ack(n.changeId), n.dest);
    const res = (await pipe.exec()) ?? [];
    const read = named.flatMap((n, i) => {
      const [err, ack] = res[i] ?? [new Error('missing reply')];
      return err ? [] : [{ ...n, ack: typeof ack === 'string' && parseAck(ack) ? ack : null }];
    });
    const acks = read.filter((n): n is typeof n & { ack: string } => n.ack !== null && isUuid(n.changeId));
    if (acks.length) {
      await db.$executeRawUnsafe(
        `UPDATE replication_deliveries d SET ack = x.ack FROM unnest($1::uuid[], $2::text[], $3::text[]) AS x(cid, region, ack)
          WHERE d.change_id = x.cid AND d.region = x.region AND d.ack LIKE 'parked %'`,
        acks.map((a) => a.changeId),
        acks.map((a) => a.dest),
        acks.map((a) => a.ack),
      );
    }
    // Those read (an outcome copied, or none left to copy); an unanswered read is tried again.
    if (read.length) await links.own.srem(key, ...read.map((n) => n.m));
  }

  /**
   * A confirmed change's ack record is kept only as long as its outbox row (for follow-up), then expires:
   * Redis holds acks of the last retention period, not of the last ack TTL.
   */
  private async expireAcks(changeIds: string[]): Promise<void> {
    const pipe = this.d.links.own.pipeline();
    const seconds = Math.max(1, Math.ceil((this.d.retentionMs ?? 3_600_000) / 1000));
    for (const id of changeIds) pipe.expire(this.d.keys.ack(id), seconds);
    await pipe.exec();
  }

  /**
   * Records (once per incarnation of a destination's inbox) the first id it holds; returns the record (null
   * while there is none). An empty inbox is not marked: one its Redis recreated empty after losing its data
   * (the applier's MKSTREAM) has no id of its own yet, and a mark below its first entry would take every
   * entry the old incarnation lost for one the cap trimmed (none would be delivered again).
   */
  private async markBorn(dest: string, bounds: StreamBounds | null): Promise<string | null> {
    const { links, keys } = this.d;
    if (!bounds) return null;
    const redis = links.to(dest);
    if (bounds.firstId) await redis.set(keys.inboxBorn(dest), bounds.firstId, 'NX');
    return redis.get(keys.inboxBorn(dest));
  }

  /**
   * `dest`'s group: how far it has read and acknowledged (`readBelow`: its floor, the oldest pending entry,
   * else the last one delivered, which only moves forward; null before it has read anything), and whether
   * a trim took entries it had not read (`behind`: it fell behind the cap, see behindTrim).
   */
  private async groupState(dest: string, bounds: StreamBounds | null): Promise<{ readBelow: string | null; behind: boolean }> {
    if (!bounds) return { readBelow: null, behind: false }; // no inbox (XINFO GROUPS would fail)
    const { links, keys } = this.d;
    const redis = links.to(dest);
    const stream = keys.inbox(dest);
    const g = (await groupInfo(redis, stream)).find((x) => x.name === dest);
    const floor = g ? await groupFloor(redis, stream, g) : null;
    const id = floor ? (floor.oldestPending ?? floor.lastDelivered) : null;
    return { readBelow: id === '0-0' ? null : id, behind: g !== undefined && floor !== null && behindTrim(g, floor, bounds) };
  }

  /**
   * Changes (destination and change id) delivered again because they were gone from an inbox its group had
   * read past, unacked: lost with the tail of an append-only file, or refused there (dead-lettered). Gone
   * again, they were refused. Each with the inbox entry of that delivery, kept once it went out and was
   * recorded: only that entry gone again counts (a delivery that failed is tried again). The newest 10,000;
   * a restart forgets them (one more delivery each).
   */
  private readonly redeliveredOnce = new Map<string, string>();

  /** See keys.acksBornAt: set (if absent) to the last id of `dest`'s inbox now, and read. */
  private async acksBornAt(dest: string, bounds: StreamBounds | null): Promise<string | null> {
    const { links, keys } = this.d;
    if (bounds) await links.own.set(keys.acksBornAt(dest), bounds.lastGeneratedId, 'NX');
    return links.own.get(keys.acksBornAt(dest));
  }

  /** redeliverLost for each destination at once; one whose Redis fails is tried again next round (logged). */
  private async redeliverLostEach(byDest: Map<string, { change_id: string; stream_id: string }[]>): Promise<void> {
    const outcomes = await eachRegion([...byDest.keys()], (dest) => this.redeliverLost(dest, byDest.get(dest) ?? []));
    for (const [dest, o] of outcomes) {
      if (!o.ok) this.d.log.debug({ destination: dest, err: o.error.message }, 'could not look up long-unconfirmed deliveries in a region\'s inbox; will retry');
    }
  }

  /** Deliveries to `dest` long unconfirmed: delivered again if its inbox no longer holds them. */
  private async redeliverLost(dest: string, rows: { change_id: string; stream_id: string }[]): Promise<void> {
    const { db, links, keys, log } = this.d;
    const redis = links.to(dest);
    const stream = keys.inbox(dest);
    // Each entry looked up by its id: a Redis that restarts from an append-only file written once a second,
    // or a replica promoted in its place, can lose entries in the middle of an inbox, which its bounds would
    // not show. Whether each is there, not its bytes (streamHolds).
    const held = await streamHolds(redis, stream, rows.map((r) => r.stream_id));
    const missing = rows.filter((_, i) => !held[i]);
    if (missing.length === 0) return;
    // Missing, and older than the oldest entry left but not than this inbox's birth: trimmed by the cap,
    // not lost by Redis. The destination needs a re-seed (its status shows it); delivering it again would
    // only feed the cap, so it counts as confirmed. (A Redis that lost its data lost the birth mark too:
    // the new mark is newer than every entry delivered before, which are lost.)
    const bounds = await streamBounds(redis, stream);
    const born = await this.markBorn(dest, bounds);
    // Acked since confirm() read the acks (applied and XACKed, then trimmed below the group's floor): done.
    const ackPipe = links.own.pipeline();
    for (const r of missing) ackPipe.hget(keys.ack(r.change_id), dest);
    const ackRes = (await ackPipe.exec()) ?? [];
    const ackNow = new Map(missing.flatMap((r, i) => {
      const [err, ack] = ackRes[i] ?? [new Error('missing reply')];
      return !err && typeof ack === 'string' ? [[r, ack] as const] : [];
    }));
    const ackedNow = missing.filter((r) => ackNow.has(r));
    if (ackedNow.length) await this.confirmDeliveries(ackedNow.map((r) => ({ changeId: r.change_id, region: dest, ack: ackNow.get(r) })));
    // Delivered before this Redis held our acks of deliveries there (it lost its data since, the acks with it),
    // and below how far the destination's group has read and acknowledged (readBelow), then trimmed by a
    // routine trim or the cap: not a cap trim of unread entries. Delivered again, the change is applied again
    // as a duplicate and acked anew. (Taken for cap trims, such changes marked a healthy region `joining` after
    // every loss of an origin's Redis, until someone re-seeded it.) Later deliveries keep the rule below: one
    // read but not acked was refused (dead-lettered).
    const acksBorn = await this.acksBornAt(dest, bounds);
    const group = await this.groupState(dest, bounds);
    const readBelow = acksBorn === null ? null : group.readBelow;
    const ackLost = (r: { stream_id: string }) =>
      readBelow !== null && acksBorn !== null && compareStreamIds(r.stream_id, readBelow) < 0 && compareStreamIds(r.stream_id, acksBorn) <= 0;
    const beforeFirst = missing.filter((r) => {
      if (ackedNow.includes(r) || born === null || !bounds || compareStreamIds(r.stream_id, born) < 0) return false;
      if (ackLost(r)) return false;
      return compareStreamIds(r.stream_id, bounds.firstId ?? bounds.lastGeneratedId) < 0 || (!bounds.firstId && r.stream_id === bounds.lastGeneratedId);
    });
    // Before the oldest entry left: trimmed by the cap when the group fell behind it. Otherwise the group read
    // past it and a routine trim took it: it was refused there (dead-lettered), or lost before the group read
    // it (a Redis back from an append-only file a second behind, which a later routine trim hid). Such a
    // change is delivered again once; gone unacked again, it was refused.
    const onceKey = (r: { change_id: string }) => `${dest} ${r.change_id}`;
    const trimmed = group.behind ? beforeFirst : beforeFirst.filter((r) => this.redeliveredOnce.get(onceKey(r)) === r.stream_id);
    for (const r of trimmed) this.redeliveredOnce.delete(onceKey(r));
    if (trimmed.length) {
      await this.markBehind(dest);
      log.warn({ count: trimmed.length, destination: dest }, 'unconfirmed changes are gone from a region\'s inbox unacked (trimmed by its cap, or refused there and dead-lettered); that region needs a re-seed');
      await this.confirmDeliveries(trimmed.map((r) => ({ changeId: r.change_id, region: dest })));
      this.trimmedUnconfirmed += trimmed.length;
    }
    const lost = missing.filter((r) => !trimmed.includes(r) && !ackedNow.includes(r));
    if (lost.length === 0) return;
    log.warn({ count: lost.length, destination: dest }, 'delivered changes are missing from a region\'s inbox and unconfirmed; delivering them again');
    const events = await db.$queryRawUnsafe<{ change_id: string; event: SignedEvent }[]>(
      'SELECT change_id::text, event FROM replication_outbox WHERE change_id = ANY($1::uuid[]) ORDER BY id',
      lost.map((r) => r.change_id),
    );
    const ids = await this.deliverer.deliver(links, dest, events.map((e) => e.event));
    await recordDeliveries(db, events.map((e, i) => ({ changeId: e.change_id, region: dest, streamId: ids[i] as string })), []);
    this.republished += lost.length;
    const once = new Set(beforeFirst.map((r) => r.change_id));
    events.forEach((e, i) => {
      if (once.has(e.change_id) && ids[i]) this.redeliveredOnce.set(onceKey(e), ids[i] as string);
    });
    while (this.redeliveredOnce.size > 10_000) this.redeliveredOnce.delete(this.redeliveredOnce.keys().next().value as string);
  }

  /**
   * A destination whose inbox cap trimmed changes it never acked is marked `joining` again: it needs a
   * re-seed (which marks it active), and until then no region collects tombstones (horizon.ts). Its
   * consumer group alone would not tell for long: once it reads past the trim it no longer looks behind.
   * Written first into the destination's own Redis (its entry's authoritative copy, which its processes
   * copy everywhere), then into every other region's it can reach; done before the rows are confirmed, so
   * a horizon that passes them sees the mark.
   */
  private async markBehind(dest: string): Promise<void> {
    const { links, keys } = this.d;
    await markJoining(links.to(dest), links, keys, dest, this.d.membership?.regions() ?? this.d.regions);
  }

  /** Trims each destination's inbox below the oldest entry its region still needs (its group's floor). */
  async trim(force = false): Promise<number> {
    if (!force && Date.now() - this.lastTrim < (this.d.trimIntervalMs ?? DEFAULT_TRIM_INTERVAL_MS)) return 0;
    this.lastTrim = Date.now();
    const res = await eachRegion(await this.destinations(), (dest) => this.trimInbox(dest));
    let total = 0;
    for (const r of res.values()) if (r.ok) total += r.value;
    return total;
  }

  private async trimInbox(dest: string): Promise<number> {
    const { links, keys } = this.d;
    const redis = links.to(dest);
    const stream = keys.inbox(dest);
    const bounds = await streamBounds(redis, stream);
    if (!bounds) return 0;
    await this.markBorn(dest, bounds);
    await this.acksBornAt(dest, bounds);
    const needed = (await this.groupState(dest, bounds)).readBelow;
    if (needed === null) return 0;
    return Number(await redis.call('XTRIM', stream, 'MINID', needed));
  }
}

