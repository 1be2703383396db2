/**
 * The outbox relay's confirmations (relay.ts): per destination, a delivery is confirmed once that region
 * acked the change; a row once every member did. And the judgement of the deliveries that stay unconfirmed:
 * a member with none yet gets one; one gone from its destination's inbox was trimmed by the cap (that
 * region needs a re-seed), refused there, or lost with that Redis (delivered again).
 */
import { poolOf, type Db } from '../db/client';
import { inPipeline } from './pg-tx';
import { isUuid } from '../http/validate';
import type { Logger } from '../logger';
import type { ReplicationKeys } from '../redis';
import { recordDeliveries, type Deliverer } from './delivery';
import { markJoining } from './member-record';
import type { Membership } from './membership';
import { eachRegion, type RedisLinks } from './links';
import type { InboxTrims } from './relay-trim';
import { compareStreamIds, pendingIds, streamBounds, streamHolds, type StreamBounds } from './stream';
import type { Tracker } from './tracker';
import { parseAck } from './ack-records';
import type { SignedEvent } from './event-auth';
import { judgeRows, type AckedDelivery, type SentEntry, type UnconfirmedRow } from './relay-judge';
import { readAck } from './ack-auth';

/** A destination and change: the key of redeliveredOnce. */
function onceKey(dest: string, r: { change_id: string }): string {
  return `${dest} ${r.change_id}`;
}

/** Each outbox row's organization by change id, for the origin's own ack (see tracker.ack's `orgs`). */
export function orgsOf(rows: readonly { change_id: string; org_id: string | null }[]): Map<string, string> {
  return new Map(rows.flatMap((r) => (r.org_id ? [[r.change_id, r.org_id] as const] : [])));
}

/** Changes applied after they were parked, copied into their deliveries per call of unparked(). */
const UNPARKED_PAGE = 500;

/** How long a delivery stays unconfirmed before its destination's inbox is searched for it (republishAfterMs). */
export const DEFAULT_REPUBLISH_AFTER_MS = 10_000;
/**
 * Marks deliveries confirmed, with their acks: $1 change ids, $2 regions, $3 acks. A HOT update on the row's own
 * page (the table's fillfactor, migration 20261206110000; test/db/delivery-pages.test.ts).
 */
export const CONFIRM_DELIVERIES = `UPDATE replication_deliveries d SET confirmed_at = now(), ack = x.ack FROM unnest($1::uuid[], $2::text[], $3::text[]) AS x(cid, region, ack)
  WHERE d.change_id = x.cid AND d.region = x.region AND d.confirmed_at IS NULL`;

/** Unconfirmed rows read per call of confirm(). */
const CONFIRM_PAGE_ROWS = 2000;

/** A row of unconfirmedPage's query: an outbox row with one of its deliveries (none: region null). */
interface PageRow {
  id: string;
  change_id: string;
  org_id: string | null;
  region: string | null;
  sid: string | null;
  confirmed: boolean | null;
  stale: boolean | null;
}

export interface DeliveryConfirmerDeps {
  db: Db;
  links: RedisLinks;
  keys: ReplicationKeys;
  tracker: Tracker;
  region: string;
  regions: readonly string[];
  membership?: Pick<Membership, 'regions' | 'hasJoined'> & Partial<Pick<Membership, 'knownGenuine'>>;
  log: Logger;
  /** Delivered but unconfirmed for this long: check the stream still has it (default DEFAULT_REPUBLISH_AFTER_MS). */
  republishAfterMs?: number;
  /** Confirmed rows are kept this long for follow-up, then deleted; so are their ack records in Redis. */
  retentionMs?: number;
}

/** What the confirmations use of their relay. */
export interface DeliveryConfirmerHost {
  deliverer: Deliverer;
  trims: InboxTrims;
  /** OutboxRelay's counters. */
  counts: { republished: number; trimmedUnconfirmed: number };
  /** The other members, read fresh. */
  destinations(): Promise<string[]>;
  /** Delivers the named rows to the destinations that lack them (OutboxPublisher.publishPage). */
  publish(changeIds: readonly string[], destinations: readonly string[]): Promise<unknown>;
}

export class DeliveryConfirmer {
  /** Keyset cursor over unconfirmed rows, so old rows stuck on a down region do not hide newer ones. */
  private confirmCursor = 0n;

  constructor(
    private readonly d: DeliveryConfirmerDeps,
    private readonly host: DeliveryConfirmerHost,
  ) {}

  async confirm(): Promise<void> {
    // Not before this process has joined (the applier's first step): a Redis restarted empty holds no record
    // of a region added at runtime until join() copies it back from the peers' copies, and a row confirmed
    // meanwhile, without that region, would never be delivered to it (a review's reasoning).
    if (this.d.membership && !this.d.membership.hasJoined) return;
    const rows = await this.unconfirmedPage();
    this.confirmCursor = rows.length === CONFIRM_PAGE_ROWS ? (rows[rows.length - 1]?.id ?? 0n) : 0n;
    if (rows.length) await this.confirmPage(rows);
    await this.d.db.$executeRawUnsafe(
      `DELETE FROM replication_outbox WHERE confirmed_at < now() - make_interval(secs => $1::float8 / 1000)`,
      this.d.retentionMs ?? 3_600_000,
    );
  }

  /** confirm() of a page of rows: by the acks in this Redis, each delivery and row confirmed, or seen to. */
  private async confirmPage(rows: UnconfirmedRow[]): Promise<void> {
    const { db, links, keys, region } = this.d;
    // Read after the rows: a region that registers after this read gets a delivery of every row not
    // confirmed by then (next time round), and the re-seed covers the rest (membership.ts).
    const destinations = await this.host.destinations();
    const pipe = links.own.pipeline();
    for (const r of rows) pipe.hgetall(keys.ack(r.change_id));
    const acks = (await pipe.exec()) ?? [];
    const { confirmed, acked, ownAck, missing, suspects } = judgeRows(rows, acks, destinations, region, this.d.tracker.signing);
    if (ownAck.length) await this.d.tracker.ack(region, ownAck, { orgs: orgsOf(rows) }).catch(() => undefined);
    await this.confirmDeliveries(acked);
    if (confirmed.length) {
      await db.$executeRawUnsafe('UPDATE replication_outbox SET confirmed_at = now() WHERE change_id = ANY($1::uuid[])', confirmed);
      await this.expireAcks(confirmed);
    }
    // Rows a member has no delivery of (it joined since they were published): deliver them now.
    if (missing.size) {
      await db.$executeRawUnsafe('UPDATE replication_outbox SET published_at = NULL WHERE change_id = ANY($1::uuid[])', [...missing]);
      await this.host.publish([...missing], destinations);
    }
    if (suspects.size) await this.redeliverLostEach(suspects);
  }

  /**
   * The next page of published, unconfirmed rows after the confirm cursor, each with its deliveries by
   * destination. One row per delivery, gathered here: a jsonb object built per row in Postgres took three
   * times as long (2,000 rows with two deliveries each: 37 against 13 ms).
   *
   * Read with bitmap and sequential scans off, on the pool (not through the ORM): each row confirmed leaves
   * an entry in the partial index of unconfirmed rows until a vacuum, and a round that finds few rows starts
   * over from the first id. The planner, expecting few rows, chose a bitmap scan, which visits the heap
   * tuple of every such entry and marks none of them dead, so every round read every row confirmed since the
   * last vacuum again (4,000 buffers and 30-200 ms of that database's CPU a round after a minute of PATCHes
   * with every region up: docs/performance.md, "fortieth session"); a sequential scan reads the whole table.
   * The index scan visits each such row once and marks its entry dead; later scans step over it in the index.
   */
  private async unconfirmedPage(): Promise<UnconfirmedRow[]> {
    // One round trip: BEGIN, the two settings (for this transaction only), the page, COMMIT.
    const [, , page] = await inPipeline(poolOf(this.d.db), (tx) =>
      tx.run(
        [
          { sql: 'SET LOCAL enable_bitmapscan = off', values: [] },
          { sql: 'SET LOCAL enable_seqscan = off', values: [] },
          {
            sql: `SELECT o.id::text, o.change_id::text, o.org_id::text, d.region, d.stream_id AS sid, d.confirmed_at IS NOT NULL AS confirmed,
                         d.delivered_at < now() - make_interval(secs => $1::float8 / 1000) AS stale
                    FROM (SELECT id, change_id, org_id FROM replication_outbox WHERE published_at IS NOT NULL AND confirmed_at IS NULL AND id > $2::bigint
                           ORDER BY id LIMIT ${CONFIRM_PAGE_ROWS}) o
                    LEFT JOIN replication_deliveries d ON d.change_id = o.change_id
                   ORDER BY o.id`,
            values: [this.d.republishAfterMs ?? DEFAULT_REPUBLISH_AFTER_MS, this.confirmCursor.toString()],
          },
        ],
        true,
      ),
    );
    const flat = (page ?? []) as PageRow[];
    const rows: UnconfirmedRow[] = [];
    for (const f of flat) {
      let row = rows[rows.length - 1];
      if (!row || row.change_id !== f.change_id) rows.push((row = { id: BigInt(f.id), change_id: f.change_id, org_id: f.org_id, deliveries: {} }));
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
  async checkStale(all: readonly { change_id: string; region: string; stream_id: string }[], destinations: readonly string[], down: ReadonlySet<string>): Promise<void> {
    // Members only: a region removed since keeps its delivery rows, and must not get its inbox back.
    const stale = all.filter((s) => destinations.includes(s.region) && !down.has(s.region));
    if (stale.length === 0) return;
    const res = await this.readAcks(stale.map((s) => ({ changeId: s.change_id, region: s.region })));
    const acked: AckedDelivery[] = [];
    const unacked = new Map<string, { change_id: string; stream_id: string }[]>();
    stale.forEach((s, i) => {
      const read = res[i];
      if (read === undefined) return;
      if (read) acked.push(read);
      else {
        const list = unacked.get(s.region) ?? [];
        list.push({ change_id: s.change_id, stream_id: s.stream_id });
        unacked.set(s.region, list);
      }
    });
    await this.confirmDeliveries(acked);
    if (unacked.size) await this.redeliverLostEach(unacked);
  }

  /**
   * Each delivery's ack in this Redis, as it reads (readAck): the delivery with its value when it counts, null
   * when there is none (or it does not count: `require` mode), undefined when the read failed.
   */
  private async readAcks(deliveries: readonly { changeId: string; region: string }[]): Promise<(AckedDelivery & { ack: string } | null | undefined)[]> {
    const { links, keys } = this.d;
    const pipe = links.own.pipeline();
    for (const a of deliveries) pipe.hget(keys.ack(a.changeId), a.region);
    const res = (await pipe.exec()) ?? [];
    return deliveries.map((a, i) => {
      const [err, ack] = res[i] ?? [new Error('missing reply')];
      if (err) return undefined;
      if (typeof ack !== 'string') return null;
      const read = readAck(this.d.tracker.signing, a.changeId, a.region, ack);
      return read === 'refused' ? null : { ...a, ack, unverified: read === 'unverified' };
    });
  }

  /** Marks deliveries confirmed, each with the ack that confirmed it when known (see change-status.ts). */
  private async confirmDeliveries(acked: readonly AckedDelivery[]): Promise<void> {
    if (acked.length === 0) return;
    // The figure that says when `require` is safe (AckSigning.confirmedUnverified).
    const signing = this.d.tracker.signing;
    if (signing) signing.confirmedUnverified += acked.filter((a) => a.unverified).length;
    await this.d.db.$executeRawUnsafe(
      CONFIRM_DELIVERIES,
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
    const res = await this.readAcks(named.map((n) => ({ changeId: n.changeId, region: n.dest })));
    const read = named.flatMap((n, i) => {
      const ack = res[i];
      return ack === undefined ? [] : [{ ...n, ack: ack && parseAck(ack.ack) ? ack.ack : null }];
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
   * Changes (destination and change id) delivered again because they were gone from an inbox its group had
   * read past, unacked: lost with the tail of an append-only file, or refused there (dead-lettered). Gone
   * again, they were refused. Each with the inbox entry of that delivery, kept once it went out and was
   * recorded: only that entry gone again counts (a delivery that failed is tried again). The newest 10,000;
   * a restart forgets them (one more delivery each).
   */
  private readonly redeliveredOnce = new Map<string, string>();

  /** redeliverLost for each destination at once; one whose Redis fails is tried again next round (logged). */
  private async redeliverLostEach(byDest: Map<string, { change_id: string; stream_id: string }[]>): Promise<void> {
    const outcomes = await eachRegion([...byDest.keys()], (dest) => this.redeliverLost(dest, byDest.get(dest) ?? []));
    for (const [dest, o] of outcomes) {
      if (!o.ok) this.d.log.debug({ destination: dest, err: o.error.message }, 'could not look up long-unconfirmed deliveries in a region\'s inbox; will retry');
    }
  }

  /** Deliveries to `dest` long unconfirmed: delivered again if its inbox no longer holds them. */
  private async redeliverLost(dest: string, rows: SentEntry[]): Promise<void> {
    const { links, keys } = this.d;
    const redis = links.to(dest);
    const stream = keys.inbox(dest);
    // Each entry looked up by its id: a Redis that restarts from an append-only file written once a second,
    // or a replica promoted in its place, can lose entries in the middle of an inbox, which its bounds would
    // not show. Whether each is there, not its bytes (streamHolds).
    const held = await streamHolds(redis, stream, rows.map((r) => r.stream_id));
    const gone = rows.filter((_, i) => !held[i]);
    if (gone.length === 0) return;
    // Read by dest's group and not yet acked: its consumer holds the event it read and may still apply and ack
    // it (an apply waiting on a lock), though the cap trimmed the entry meanwhile. Neither trimmed unacked nor
    // lost yet: judged once it has left the group's pending list (acked, or found gone by the region's own
    // claim of it; then it is delivered again once, as the group read past it). Taken for a cap trim, such a
    // delivery marked a healthy region `joining` (test/replication/pending-trim.test.ts).
    const pending = await pendingIds(redis, stream, dest, gone.map((r) => r.stream_id));
    const missing = gone.filter((_, i) => !pending[i]);
    if (missing.length < gone.length) this.d.log.debug({ count: gone.length - missing.length, destination: dest }, 'deliveries gone from a region\'s inbox are still read there and unacked; waiting for its ack');
    if (missing.length === 0) return;
    // Missing, and older than the oldest entry left but not than this inbox's birth: trimmed by the cap,
    // not lost by Redis. The destination needs a re-seed (its status shows it); delivering it again would
    // only feed the cap, so it counts as confirmed. (A Redis that lost its data lost the birth mark too:
    // the new mark is newer than every entry delivered before, which are lost.)
    const bounds = await streamBounds(redis, stream);
    const born = await this.host.trims.markBorn(dest, bounds);
    const ackedNow = await this.confirmAckedSince(dest, missing);
    const { beforeFirst, behind } = await this.beforeFirst(dest, missing, ackedNow, bounds, born);
    const trimmed = await this.confirmTrimmed(dest, beforeFirst, behind);
    const lost = missing.filter((r) => !trimmed.includes(r) && !ackedNow.includes(r));
    if (lost.length === 0) return;
    await this.redeliver(dest, lost, beforeFirst);
  }

  /** Of the deliveries missing from `dest`'s inbox, those acked there since: confirmed, and returned. */
  private async confirmAckedSince(dest: string, missing: SentEntry[]): Promise<SentEntry[]> {
    // Acked since confirm() read the acks (applied and XACKed, then trimmed below the group's floor): done.
    const res = await this.readAcks(missing.map((r) => ({ changeId: r.change_id, region: dest })));
    await this.confirmDeliveries(res.filter((a) => !!a));
    return missing.filter((_, i) => res[i]);
  }

  /**
   * Of the deliveries missing from `dest`'s inbox and not acked since, those older than its oldest entry left
   * (redeliverLost); and whether `dest`'s group fell behind the cap.
   */
  private async beforeFirst(
    dest: string,
    missing: SentEntry[],
    ackedNow: SentEntry[],
    bounds: StreamBounds | null,
    born: string | null,
  ): Promise<{ beforeFirst: SentEntry[]; behind: boolean }> {
    // Delivered before this Redis held our acks of deliveries there (it lost its data since, the acks with it),
    // and below how far the destination's group has read and acknowledged (readBelow), then trimmed by a
    // routine trim or the cap: not a cap trim of unread entries. Delivered again, the change is applied again
    // as a duplicate and acked anew. (Taken for cap trims, such changes marked a healthy region `joining` after
    // every loss of an origin's Redis, until someone re-seeded it.) Later deliveries keep the rule below: one
    // read but not acked was refused (dead-lettered). Without ackLost such a change is still delivered again once
    // (confirmTrimmed, unless the group is behind the cap), but counted as refused twice when that Redis is lost
    // again before it holds the new ack: test/replication/origin-redis-loss.test.ts, its third case.
    const acksBorn = await this.host.trims.acksBornAt(dest, bounds);
    const group = await this.host.trims.groupState(dest, bounds);
    const readBelow = acksBorn === null ? null : group.readBelow;
    const ackLost = (r: { stream_id: string }) =>
      readBelow !== null && acksBorn !== null && compareStreamIds(r.stream_id, readBelow) < 0 && compareStreamIds(r.stream_id, acksBorn) <= 0;
    const beforeFirst = missing.filter((r) => {
      if (ackedNow.includes(r) || born === null || !bounds || compareStreamIds(r.stream_id, born) < 0) return false;
      if (ackLost(r)) return false;
      return compareStreamIds(r.stream_id, bounds.firstId ?? bounds.lastGeneratedId) < 0 || (!bounds.firstId && r.stream_id === bounds.lastGeneratedId);
    });
    return { beforeFirst, behind: group.behind };
  }

  /** Of those before the oldest entry left, the ones trimmed unacked: confirmed, `dest` marked behind; returned. */
  private async confirmTrimmed(dest: string, beforeFirst: SentEntry[], behind: boolean): Promise<SentEntry[]> {
    // Before the oldest entry left: trimmed by the cap when the group fell behind it. Otherwise the group read
    // past it and a routine trim took it: it was refused there (dead-lettered), or lost before the group read
    // it (a Redis back from an append-only file a second behind, which a later routine trim hid). Such a
    // change is delivered again once; gone unacked again, it was refused.
    const trimmed = behind ? beforeFirst : beforeFirst.filter((r) => this.redeliveredOnce.get(onceKey(dest, r)) === r.stream_id);
    for (const r of trimmed) this.redeliveredOnce.delete(onceKey(dest, r));
    if (trimmed.length) {
      await this.markBehind(dest);
      this.d.log.warn({ count: trimmed.length, destination: dest }, 'unconfirmed changes are gone from a region\'s inbox unacked (trimmed by its cap, or refused there and dead-lettered); that region needs a re-seed');
      await this.confirmDeliveries(trimmed.map((r) => ({ changeId: r.change_id, region: dest })));
      this.host.counts.trimmedUnconfirmed += trimmed.length;
    }
    return trimmed;
  }

  /** Delivers the lost ones to `dest` again; those before the oldest entry left are remembered (redeliveredOnce). */
  private async redeliver(dest: string, lost: SentEntry[], beforeFirst: SentEntry[]): Promise<void> {
    const { db, links, log } = this.d;
    log.warn({ count: lost.length, destination: dest }, 'delivered changes are missing from a region\'s inbox and unconfirmed; delivering them again');
    const events = await db.$queryRawUnsafe<{ change_id: string; event: SignedEvent }[]>(
      'SELECT change_id::text, event FROM replication_outbox WHERE change_id = ANY($1::uuid[]) ORDER BY id',
      lost.map((r) => r.change_id),
    );
    const ids = await this.host.deliverer.deliver(links, dest, events.map((e) => e.event));
    await recordDeliveries(db, events.map((e, i) => ({ changeId: e.change_id, region: dest, streamId: ids[i] as string })), []);
    this.host.counts.republished += lost.length;
    const once = new Set(beforeFirst.map((r) => r.change_id));
    events.forEach((e, i) => {
      if (once.has(e.change_id) && ids[i]) this.redeliveredOnce.set(onceKey(dest, e), ids[i] as string);
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
    // A planted name (never configured, never read signed) is not signed into the record as joining: it stays held as unverified.
    const renewUnverified = this.d.membership?.knownGenuine?.(dest) ?? true;
    await markJoining(links.to(dest), links, keys, dest, this.d.membership?.regions() ?? this.d.regions, { log: this.d.log, signing: this.d.tracker.signing, renewUnverified });
  }
}
