/**
 * Background duties of a region's outbox, so that nothing acknowledged is ever lost:
 * - publish: rows the fast path did not publish (Redis down, crash between commit and XADD) go out in order;
 * - confirm: a row is confirmed once every region has acked it; a row published long ago but neither
 *   confirmed nor still in the stream (Redis restarted without its data) is published again;
 * - trim: the stream is trimmed only below what every region's group has delivered and acked;
 * - status: this region's figures are posted to Redis so one admin call can show every region.
 */
import type { Db } from '../db/client';
import type { Logger } from '../logger';
import type { Redis, ReplicationKeys } from '../redis';
import { mustAck, updateMember, type Member, type Membership } from './membership';
import { compareStreamIds, DEFAULT_STREAM_MAX_LENGTH, groupInfo, streamBounds, type StreamBounds } from './stream';
import type { Tracker } from './tracker';
import type { EventAuth, SignedEvent } from './event-auth';
import { Loop } from './loop';

export interface RelayDeps {
  db: Db;
  redis: Redis;
  keys: ReplicationKeys;
  tracker: Tracker;
  region: string;
  regions: readonly string[];
  /** The deployment's members (read fresh before confirming and trimming); without it, `regions`. */
  membership?: Pick<Membership, 'refresh'>;
  log: Logger;
  intervalMs?: number;
  /** Published but unconfirmed for this long: check the stream still has it. */
  republishAfterMs?: number;
  /** Confirmed rows are kept this long for follow-up, then deleted; so are their ack records in Redis. */
  retentionMs?: number;
  /** Cap of the change stream (XADD MAXLEN ~). */
  streamMaxLength?: number;
  /** Events go out with the signature stored with them (see event-auth.ts). */
  auth: EventAuth;
}

interface OutboxRow {
  change_id: string;
  event: unknown;
}

export class OutboxRelay {
  private readonly loop: Loop;
  private lastTrim = 0;
  private lastConfirm = 0;
  /** Keyset cursor over unconfirmed rows, so old rows stuck on a down region do not hide newer ones. */
  private confirmCursor = 0n;
  published = 0;
  republished = 0;
  /** Changes trimmed by the stream cap before every region acked them (those regions need a re-seed). */
  trimmedUnconfirmed = 0;

  constructor(private readonly d: RelayDeps) {
    this.loop = new Loop(() => this.cycle(), d.intervalMs ?? 500);
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
    for (const step of [() => this.publishPending(1000), () => (confirmDue ? this.confirm() : undefined), () => this.trim()]) {
      try {
        await step();
      } catch (err) {
        this.d.log.debug({ err: (err as Error).message }, 'outbox relay step failed; will retry');
      }
    }
  }

  /** Publishes unpublished rows older than `minAgeMs` (the fast path handles fresh ones). Returns how many. */
  async publishPending(minAgeMs: number): Promise<number> {
    const { db, redis, keys, tracker, region } = this.d;
    let total = 0;
    for (;;) {
      const rows = await db.$queryRawUnsafe<OutboxRow[]>(
        `SELECT change_id::text, event FROM replication_outbox
          WHERE published_at IS NULL AND created_at < now() - make_interval(secs => $1::float8 / 1000)
          ORDER BY id LIMIT 500`,
        minAgeMs,
      );
      if (rows.length === 0) return total;
      const pipe = redis.pipeline();
      const cap = this.d.streamMaxLength ?? DEFAULT_STREAM_MAX_LENGTH;
      for (const r of rows) pipe.xadd(keys.stream, 'MAXLEN', '~', cap, '*', ...this.d.auth.entryFields(r.event as SignedEvent));
      const res = (await pipe.exec()) ?? [];
      const ids: string[] = [];
      const streamIds: string[] = [];
      res.forEach(([err, sid], i) => {
        const row = rows[i];
        if (!err && typeof sid === 'string' && row) {
          ids.push(row.change_id);
          streamIds.push(sid);
        }
      });
      if (ids.length === 0) throw new Error('XADD failed for the whole batch');
      await db.$executeRawUnsafe(
        `UPDATE replication_outbox o SET published_at = now(), stream_id = x.sid
           FROM unnest($1::uuid[], $2::text[]) AS x(cid, sid) WHERE o.change_id = x.cid`,
        ids,
        streamIds,
      );
      await tracker.ack(region, ids);
      total += ids.length;
      this.published += ids.length;
      if (rows.length < 500) return total;
    }
  }

  /** The members now (a fresh read; the last known ones while Redis is down). */
  private async members(): Promise<Pick<Member, 'region' | 'since'>[]> {
    return this.d.membership ? this.d.membership.refresh() : this.d.regions.map((region) => ({ region, since: null }));
  }

  async confirm(): Promise<void> {
    const { db, redis, keys } = this.d;
    const rows = await db.$queryRawUnsafe<{ id: bigint; change_id: string; stream_id: string | null; stale: boolean }[]>(
      `SELECT id, change_id::text, stream_id, published_at < now() - make_interval(secs => $1::float8 / 1000) AS stale
         FROM replication_outbox WHERE published_at IS NOT NULL AND confirmed_at IS NULL AND id > $2
        ORDER BY id LIMIT 2000`,
      this.d.republishAfterMs ?? 10_000,
      this.confirmCursor,
    );
    this.confirmCursor = rows.length === 2000 ? (rows[rows.length - 1]?.id ?? 0n) : 0n;
    if (rows.length) {
      // Read after the rows: a region that joins after this read registered after these rows were
      // published, so they are at or before its `since` and reach it by its re-seed (membership.ts).
      const members = await this.members();
      const pipe = redis.pipeline();
      for (const r of rows) pipe.hkeys(keys.ack(r.change_id));
      const acks = (await pipe.exec()) ?? [];
      const confirmed: string[] = [];
      const suspects: { change_id: string; stream_id: string | null }[] = [];
      rows.forEach((r, i) => {
        const [err, regionsAcked] = acks[i] ?? [new Error('missing reply')];
        if (err) return;
        const have = new Set(regionsAcked as string[]);
        if (members.every((m) => have.has(m.region) || !mustAck(m, r.stream_id, compareStreamIds))) confirmed.push(r.change_id);
        else if (r.stale) suspects.push(r);
      });
      if (confirmed.length) {
        await db.$executeRawUnsafe('UPDATE replication_outbox SET confirmed_at = now() WHERE change_id = ANY($1::uuid[])', confirmed);
        await this.expireAcks(confirmed);
      }
      if (suspects.length) await this.republishLost(suspects);
    }
    await db.$executeRawUnsafe(
      `DELETE FROM replication_outbox WHERE confirmed_at < now() - make_interval(secs => $1::float8 / 1000)`,
      this.d.retentionMs ?? 3_600_000,
    );
  }

  /**
   * A confirmed change's ack record is kept only as long as its outbox row (for follow-up), then expires:
   * Redis holds acks of the last retention period, not of the last ack TTL.
   */
  private async expireAcks(changeIds: string[]): Promise<void> {
    const pipe = this.d.redis.pipeline();
    const seconds = Math.max(1, Math.ceil((this.d.retentionMs ?? 3_600_000) / 1000));
    for (const id of changeIds) pipe.expire(this.d.keys.ack(id), seconds);
    await pipe.exec();
  }

  /** Records (once per stream incarnation) the first id it holds; returns the record. */
  private async markBorn(bounds: StreamBounds | null): Promise<string | null> {
    const { redis, keys } = this.d;
    if (!bounds) return null;
    await redis.set(keys.streamBorn, bounds.firstId ?? bounds.lastGeneratedId, 'NX');
    return redis.get(keys.streamBorn);
  }

  private async republishLost(rows: { change_id: string; stream_id: string | null }[]): Promise<void> {
    const { db, redis, keys, log } = this.d;
    const pipe = redis.pipeline();
    for (const r of rows) pipe.xrange(keys.stream, r.stream_id ?? '0-0', r.stream_id ?? '0-0');
    const res = (await pipe.exec()) ?? [];
    const missing = rows.filter((r, i) => {
      const [err, found] = res[i] ?? [new Error('missing reply')];
      return !err && (r.stream_id === null || (Array.isArray(found) && found.length === 0));
    });
    if (missing.length === 0) return;
    // Missing, and older than the oldest entry left but not than this stream's birth: trimmed by the cap,
    // not lost by Redis. The regions that had not read it are marked as needing a re-seed (the status shows
    // it); publishing it again would only feed the cap, so it counts as delivered. (A Redis that lost its
    // data lost the birth mark too: the new mark is newer than every row published before, which are lost.)
    const bounds = await streamBounds(redis, keys);
    const born = await this.markBorn(bounds);
    const trimmed = missing.filter((r) => {
      if (r.stream_id === null || born === null || !bounds || compareStreamIds(r.stream_id, born) < 0) return false;
      return compareStreamIds(r.stream_id, bounds.firstId ?? bounds.lastGeneratedId) < 0 || (!bounds.firstId && r.stream_id === bounds.lastGeneratedId);
    });
    if (trimmed.length) {
      const behind = await this.markBehind(trimmed);
      log.warn({ count: trimmed.length, regions: behind }, 'unconfirmed changes were trimmed by the stream cap; regions behind the cap need a re-seed');
      await db.$executeRawUnsafe('UPDATE replication_outbox SET confirmed_at = now() WHERE change_id = ANY($1::uuid[])', trimmed.map((r) => r.change_id));
      this.trimmedUnconfirmed += trimmed.length;
    }
    const lost = missing.filter((r) => !trimmed.includes(r));
    if (lost.length === 0) return;
    log.warn({ count: lost.length }, 'published changes are missing from the stream and unconfirmed; publishing them again');
    await db.$executeRawUnsafe(
      'UPDATE replication_outbox SET published_at = NULL, stream_id = NULL WHERE change_id = ANY($1::uuid[])',
      lost.map((r) => r.change_id),
    );
    this.republished += lost.length;
    await this.publishPending(0);
  }

  /**
   * The members that never acked these trimmed changes are marked `joining` again: they need a re-seed
   * (which marks them active), and until then no region collects tombstones (horizon.ts). Their consumer
   * group alone would not tell for long: once it reads past the trim it no longer looks behind. Done
   * before the rows are confirmed, so a horizon that passes them sees the mark.
   */
  private async markBehind(rows: { change_id: string; stream_id: string | null }[]): Promise<string[]> {
    const { redis, keys } = this.d;
    const members = await this.members();
    const pipe = redis.pipeline();
    for (const r of rows) pipe.hkeys(keys.ack(r.change_id));
    const acks = (await pipe.exec()) ?? [];
    const behind = new Set<string>();
    rows.forEach((r, i) => {
      const [err, acked] = acks[i] ?? [new Error('missing reply')];
      if (err) throw err;
      const have = new Set(acked as string[]);
      for (const m of members) if (!have.has(m.region) && mustAck(m, r.stream_id, compareStreamIds)) behind.add(m.region);
    });
    for (const region of behind) await updateMember(redis, keys, region, { state: 'joining' });
    return [...behind];
  }

  /** Trims the stream below the oldest entry some region still needs. Skipped unless every group exists. */
  async trim(force = false): Promise<number> {
    if (!force && Date.now() - this.lastTrim < 30_000) return 0;
    this.lastTrim = Date.now();
    const { redis, keys } = this.d;
    const members = await this.members();
    const groups = await groupInfo(redis, keys);
    await this.markBorn(await streamBounds(redis, keys));
    if (!members.every((m) => groups.some((g) => g.name === m.region))) return 0;
    let floor: string | null = null;
    // Every group on the stream counts, members' or not: a region that joins creates its group at the
    // stream's end, above any floor computed before, so nothing it has not read is trimmed. A removed
    // region's group is destroyed by the admin command that removes it.
    for (const g of groups) {
      let needed = g.lastDeliveredId;
      if (g.pending > 0) {
        const summary = (await redis.xpending(keys.stream, g.name)) as [number, string | null, string | null, unknown];
        if (summary[1]) needed = summary[1];
      }
      if (floor === null || compareStreamIds(needed, floor) < 0) floor = needed;
    }
    if (!floor || floor === '0-0') return 0;
    return Number(await redis.call('XTRIM', keys.stream, 'MINID', floor));
  }
}
