/**
 * Background refresh of IdP metadata, run by each region for the credentials it is home to (the region
 * that created them), and for those it adopted: credentials whose home region was removed from the
 * deployment are refreshed by one of the remaining regions each (store.ts refreshedHere), once that region
 * has applied what the removed region sent it (replication/departures.ts). A changed document (a rotated
 * certificate, say) is written like any other change and replicates; an unchanged one only moves the local
 * schedule. A failed refresh keeps the last good
 * metadata, backs off, and shows up in GET /admin/metadata-refresh (metadata-refresh-admin.ts) — it is never silent. A document that
 * changes the signing certificates without a trusted signature is held, not applied (trust.ts).
 */
import type { Config } from '../config';
import type { Db } from '../db/client';
import { AppError, asAppError } from '../http/errors';
import { isDatabaseTrouble, isTransient, pgCode } from '../db/pg-errors';
import type { Logger } from '../logger';
import type { Redis } from '../redis';
import type { Replicator } from '../replication/replicator';
import { fetchLimiterFor } from './fetch-limiter';
import { loadIdpMetadata, nextRefreshAt, OrganizationLookupsBusy, type MetadataConfig, type StoredMetadata } from './metadata';
import { refreshClaims, type RefreshClaims } from './refresh-claims';
import { inTurns, refreshConcurrency } from './refresh-turns';
import { putMetadata } from './service';
import { credentialsTable, currentMetadata, metadataTable, ORG_DELETED_SQLSTATE, organizationLiveCheck, recordRefresh, refreshedHere, refreshScope } from './store';
import { decideRefresh, firstUse, isCurrentMetadata, pinsFor, trustIdFor, type MetadataRecord, type RefreshOutcome } from './trust';

export interface RefreshDeps {
  db: Db;
  repl: Replicator;
  config: MetadataConfig & Pick<Config, 'redisKeyPrefix'>;
  log: Logger;
  /** The region's Redis, shared by its processes: where they claim a credential before refreshing it (refresh-claims.ts). */
  redis: Redis;
}

interface Due {
  id: string;
  org_id: string;
  idp_metadata_url: string;
  idp_trust: unknown;
  /** The stored document, when it is the credential's (isCurrentMetadata). */
  metadata: StoredMetadata | null;
  /** When its refresh was last tried (its schedule's), as read with it. */
  last_attempt_at: Date | null;
}

const MAX_BACKOFF_MS = 3600_000;
/**
 * Refusals that say the region is busy, not that the credential is wrong (fetch-limiter.ts, and loadIdpMetadata
 * for the lookup gate): not recorded as the credential's failure, and the batch stops (a later tick goes on).
 */
const BUSY_CODES = new Set(['too_many_metadata_fetches', 'metadata_fetches_busy', 'metadata_lookups_busy']);

/** How far a due schedule of a removed region's credential is put off while this region's adoption waits (at most the refresh interval). */
const ADOPTION_WAIT_MS = 600_000;
/** Schedules put off per batch at most (see dueBySchedule). */
const PUT_OFF_BATCH = 5_000;

/** refreshedHere's parameters (store.ts): this region, the departed regions, the adopters. */
type RefreshScope = ReturnType<typeof refreshScope>;

/**
 * Credentials per sweep page: each tick looks at one page (while fewer than a tick's worth of found ones
 * wait), so a credential without a schedule or with another URL's document is found within
 * (credentials / SWEEP_PAGE) ticks, and a tick's cost does not grow with the table.
 */
const SWEEP_PAGE = 10_000;
const SWEEP_START = '00000000-0000-0000-0000-000000000000';

/** A credential to refresh, with its stored document when that is the credential's current one. */
const DUE_SELECT = `SELECT c.id::text, c.org_id::text, c.idp_metadata_url, c.idp_trust,
    CASE WHEN ${currentMetadata('m', 'c')} THEN m.metadata END AS metadata, s.last_attempt_at
  FROM saml_provider_credentials c
  LEFT JOIN saml_credential_metadata m ON m.credential_id = c.id AND m.deleted_at IS NULL
  LEFT JOIN metadata_refresh_state s ON s.credential_id = c.id`;

/** Schedules boundSchedules moves per statement. */
const BOUND_PAGE = 1000;

export class MetadataRefresher {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  /** boundSchedules at start, while it runs. */
  private bounding: Promise<void> | null = null;
  private stopped = false;
  refreshed = 0;
  failed = 0;
  held = 0;
  /**
   * Home credentials the sweep found without a schedule (re-seeded, imported, or written by an older
   * version) or whose stored document is for another URL than the credential's (a PATCH of the URL in
   * another region raced a refresh here): refreshed before anything due by schedule.
   */
  private readonly found = new Set<string>();
  /** Where the next sweep page starts (credential ids in order; wraps to the start). */
  private sweepCursor = SWEEP_START;

  private readonly claims: RefreshClaims;

  constructor(private readonly d: RefreshDeps) {
    this.claims = refreshClaims(d.redis, d.config.redisKeyPrefix);
  }

  start(): void {
    const periodMs = (this.d.config.metadataRefreshIntervalSeconds ?? 86_400) * 1000;
    const tickMs = Math.min(30_000, Math.max(500, periodMs / 4));
    this.bounding = this.boundSchedules(periodMs).then(
      (n) => void (n && this.d.log.info({ schedules: n }, 'metadata refresh schedules set under a longer interval brought within this one')),
      (err: Error) => this.d.log.warn({ err: err.message }, 'could not bring the metadata refresh schedules within the interval'),
    );
    const tick = async () => {
      this.running = this.runTick(tickMs / 2).then(() => undefined, (err: Error) => this.d.log.warn({ err: err.message }, 'metadata refresh cycle failed'));
      await this.running;
      if (!this.stopped) this.timer = setTimeout(tick, tickMs);
    };
    this.timer = setTimeout(tick, tickMs);
  }

  /**
   * One tick: runOnce again while its batch was full, no fetch slot was busy and the tick's budget lasts.
   * One batch of 20 a tick was 57,600 refreshes a day, fewer than a region home to more credentials needs
   * at the default 24 h interval. Returns how many credentials it looked at.
   */
  async runTick(budgetMs: number, limit = 20): Promise<number> {
    const until = Date.now() + budgetMs;
    let total = 0;
    for (;;) {
      const { looked, busy, claimedElsewhere } = await this.batch(limit, SWEEP_PAGE);
      total += looked;
      // Credentials another process of the region is refreshing stay at the head of the schedule until it is
      // done: another batch now would meet them again.
      if (looked < limit || busy || claimedElsewhere || this.stopped || Date.now() >= until) return total;
    }
  }

  /**
   * Schedules due later than `periodMs` from now (set under a longer metadataRefreshIntervalSeconds: the
   * setting was lowered, as an operator does to pick up a certificate rotation sooner) are moved within it,
   * spread over it so that the IdPs are not all asked at once. Without this a lowered interval took effect
   * only after the old one (a fuzzing review: a day). Through the next_at index: nothing to do costs nothing.
   */
  async boundSchedules(periodMs: number): Promise<number> {
    // A page at a time, skipping rows a writer holds: one statement over a million schedules held each of
    // them for 13 s, and a PATCH upserting its schedule waited that long inside its transaction (a review
    // measured it). Each page goes on down the next_at index from where the last one stopped (restarting
    // from the top, a page met every earlier page's old row versions again: 390 ms a page at page 400 while
    // a transaction kept them from being cleaned up). What a writer held is tried again in a pass or two.
    let moved = 0;
    for (let pass = 0; pass < 3 && !this.stopped; pass++) {
      if (pass > 0) await new Promise((r) => setTimeout(r, 100));
      let after: { at: Date; id: string } | null = null;
      const movedBefore = moved;
      while (!this.stopped) {
        const rows: { n: number; at: Date | null; id: string | null }[] = await this.d.db.$queryRawUnsafe(
          `WITH late AS (SELECT credential_id, next_at FROM metadata_refresh_state
                          WHERE next_at > now() + make_interval(secs => $1::float8 / 1000)
                            AND ($2::timestamptz IS NULL OR (next_at, credential_id) < ($2::timestamptz, $3::uuid))
                          ORDER BY next_at DESC, credential_id DESC LIMIT ${BOUND_PAGE} FOR UPDATE SKIP LOCKED),
                moved AS (UPDATE metadata_refresh_state s SET next_at = now() + make_interval(secs => random() * $1::float8 / 1000)
                            FROM late WHERE s.credential_id = late.credential_id RETURNING 1)
           SELECT (SELECT count(*)::int FROM moved) AS n, l.next_at AS at, l.credential_id::text AS id
             FROM (SELECT 1) one LEFT JOIN (SELECT next_at, credential_id FROM late ORDER BY next_at, credential_id LIMIT 1) l ON true`,
          periodMs, after?.at ?? null, after?.id ?? null,
        );
        const page = rows[0];
        moved += page?.n ?? 0;
        if (!page?.at || !page.id) break;
        after = { at: page.at, id: page.id };
      }
      // Nothing moved in this pass: none left, or only rows a writer holds (left to the next start).
      if (moved === movedBefore) break;
    }
    return moved;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.bounding;
    await this.running;
  }

  /** The credentials the sweep found that wait for their refresh. */
  get foundWaiting(): string[] {
    return [...this.found];
  }

  /**
   * Refreshes up to `limit` credentials this region is home to: first those the sweep found, then those
   * due by schedule (oldest first); returns how many it looked at. Every query here is bounded (an index
   * or one sweep page), whatever the number of credentials: the whole-table join this replaced took
   * 1.3 s of Postgres per tick at 200,000 home credentials, and grew with them.
   */
  async runOnce(limit = 20, sweepPage = SWEEP_PAGE): Promise<number> {
    return (await this.batch(limit, sweepPage)).looked;
  }

  /**
   * runOnce, whether a fetch slot or the lookup lanes were busy (or an organization's share of them, for a
   * credential another batch would meet again), and whether another process of the region held the claim of one
   * of the credentials (either way the tick goes no further).
   */
  private async batch(limit: number, sweepPage: number): Promise<{ looked: number; busy: boolean; claimedElsewhere: boolean }> {
    const { db, repl } = this.d;
    // Which credentials are this region's to refresh: its home ones, and those it adopts now.
    const scope = refreshScope(repl.region, await repl.departures());
    let busy = false;
    // A credential refused for its organization's held lookup share that another batch now would meet again,
    // refused at once (a found one, back on the list; a due one whose put-off failed): the tick ends with this
    // batch, else it would spin. One put off is not met again: the tick goes on with the others' credentials.
    let metAgain = false;
    let claimedElsewhere = false;
    if (this.found.size < limit) await this.sweep(scope, sweepPage);
    const scheduled = await this.dueBySchedule(scope, limit);
    // Found ones first, but those due by schedule (failures backing off among them) keep half the slots.
    const slots = limit - Math.min(scheduled.filter((c) => !this.found.has(c.id)).length, Math.floor(limit / 2));
    const first: string[] = [];
    for (const id of this.found) {
      if (first.length === slots) break;
      first.push(id);
    }
    const picked = first.length
      ? await db.$queryRawUnsafe<Due[]>(`${DUE_SELECT} WHERE c.id = ANY($1::uuid[]) AND ${refreshedHere('c', 2)} AND c.deleted_at IS NULL`, first, ...scope)
      : [];
    // Found ones no longer this region's and live need nothing; the others leave the list once attempted.
    const live = new Set(picked.map((p) => p.id));
    for (const id of first) if (!live.has(id)) this.found.delete(id);
    const due = [...picked, ...scheduled.filter((c) => !live.has(c.id))].slice(0, limit);
    // Each credential on its own: whatever one tenant's IdP serves (or makes the write throw), the others are
    // still refreshed in this cycle, and the failing one is recorded, backed off and shown. Several at once,
    // but one per organization at a time: refreshed one after the other, one tenant's IdPs, each holding its
    // fetch to the timeout, delayed every other tenant's refresh by the sum of them.
    const concurrency = refreshConcurrency(fetchLimiterFor(this.d.config).perRegion);
    // Once a fetch slot was refused, the rest of the batch waits for a later tick (as one at a time did).
    await inTurns(due, concurrency, (c) => c.org_id, async (c) => {
      const wasFound = this.found.delete(c.id);
      // Another process of the region is refreshing it: that one records the outcome (a found one that is still
      // stale afterwards is found again).
      const release = await this.claims.take(c.id);
      if (release === null) {
        claimedElsewhere = true;
        return;
      }
      // Or it did, between this batch's read and the claim: its outcome is recorded, nothing is due.
      let attempted: boolean;
      try {
        attempted = await this.attemptedSince(c);
      } catch (err) {
        // The claim goes back and the credential stays due (a later tick takes it). Kept, the claim turned this
        // process and the others away from it for its lease, and a found one left the list.
        if (wasFound) this.found.add(c.id);
        await release();
        this.d.log.warn({ credentialId: c.id, err: (err as Error).message }, 'could not read when an IdP metadata refresh was last tried; left for a later tick');
        return;
      }
      if (attempted) {
        claimedElsewhere = true;
        await release();
        return;
      }
      try {
        await this.refreshOne(c);
      } catch (err) {
        // Its organization's own lookups not answering hold its share of the lookup lanes (lookup-gate.ts): not
        // this credential's failure, and not the region's state, so the others' credentials go on. Stopping the
        // batch here let one organization's hung names stop every organization's refreshes, tick after tick.
        // Put off past the Retry-After rather than left due: left at the head of the schedule, that
        // organization's due credentials, each refused at once, would take every batch's places.
        // Ending the tick on every such refusal let one organization's hung names cut every tick to one batch
        // for as long as its share stayed held: the region's refreshes, every organization's, fell behind.
        if (err instanceof OrganizationLookupsBusy) {
          if (wasFound) this.found.add(c.id);
          if (wasFound || !(await this.putOff(c.id, err.extra.retryAfterSeconds ?? 30))) metAgain = true;
          return;
        }
        // No fetch slot (the region or the org is at its bound), or no host-name lookup free (other hosts'
        // lookups not answering hold them all): the region's state, not this credential's failure. Still due,
        // taken on a later tick (a found one goes back to the end of the list).
        if (err instanceof AppError && BUSY_CODES.has(err.code)) {
          if (wasFound) this.found.add(c.id);
          busy = true;
          return;
        }
        await this.recordFailure(c, err).catch((e: Error) =>
          this.d.log.error({ credentialId: c.id, err: e.message }, 'could not record a failed IdP metadata refresh'),
        );
      } finally {
        await release();
      }
    }, () => busy);
    return { looked: due.length, busy: busy || metAgain, claimedElsewhere };
  }

  /**
   * Moves a due schedule `seconds` on, no attempt or failure recorded (a refusal that was not the credential's);
   * answers false when it could not (the schedule stays due).
   */
  private async putOff(credentialId: string, seconds: number): Promise<boolean> {
    return this.d.db
      .$executeRawUnsafe(
        `UPDATE metadata_refresh_state SET next_at = now() + make_interval(secs => $2::int) WHERE credential_id = $1::uuid AND next_at <= now()`,
        credentialId,
        seconds,
      )
      .then(
        () => true,
        (err: Error) => {
          this.d.log.warn({ credentialId, err: err.message }, 'could not put off an IdP metadata refresh; it stays due');
          return false;
        },
      );
  }

  /**
   * Up to `limit` credentials this region refreshes that are due by schedule, oldest first, through the
   * next_at index. The due schedules met on the way that belong to credentials this region does not refresh
   * (another region's home, or adopted by another region, deleted, gone) are dropped, so each is passed
   * over once, and a tick reads a bounded number. While adoption waits (no adopters: departures.ts), the
   * schedules of a removed region's live credentials are put off instead (ADOPTION_WAIT_MS, at most the
   * refresh interval): their failures and back-off are kept for when this region adopts again (after a
   * restart, any change of the members).
   */
  private async dueBySchedule(scope: RefreshScope, limit: number): Promise<Due[]> {
    const { db } = this.d;
    const [region, departed, adopters] = scope;
    const waiting = departed.length > 0 && adopters.length === 0;
    const heads = await db.$queryRawUnsafe<{ id: string; mine: boolean; adoptable: boolean }[]>(
      `SELECT s.credential_id::text AS id, coalesce(${refreshedHere('c', 1)} AND c.deleted_at IS NULL, false) AS mine,
              coalesce(c.home_region = ANY($2::text[]) AND c.deleted_at IS NULL, false) AS adoptable
         FROM metadata_refresh_state s LEFT JOIN saml_provider_credentials c ON c.id = s.credential_id
        WHERE s.next_at <= now() ORDER BY s.next_at LIMIT $4`,
      ...scope,
      limit * 4,
    );
    if (waiting && heads.some((h) => !h.mine && h.adoptable)) {
      // Put off in one statement over a bounded slice of the oldest due schedules (through the next_at
      // index): one by one among the heads they would crowd out this region's own due schedules while
      // adoption waits. SKIP LOCKED: another process of the region may be at the same rows.
      await db.$executeRawUnsafe(
        `WITH due AS (SELECT credential_id FROM metadata_refresh_state WHERE next_at <= now() ORDER BY next_at LIMIT $4 FOR UPDATE SKIP LOCKED)
         UPDATE metadata_refresh_state s SET next_at = now() + make_interval(secs => $3::float8 / 1000)
           FROM due JOIN saml_provider_credentials c ON c.id = due.credential_id
          WHERE s.credential_id = due.credential_id AND c.home_region = ANY($2::text[]) AND c.home_region <> $1 AND c.deleted_at IS NULL`,
        region,
        departed,
        Math.min(ADOPTION_WAIT_MS, (this.d.config.metadataRefreshIntervalSeconds ?? 86_400) * 1000),
        PUT_OFF_BATCH,
      );
    }
    // While adoption waits, a removed region's schedule met here (more were due than one put-off takes) is
    // left for the next one, neither dropped nor refreshed.
    const foreign = heads.filter((h) => !h.mine && !(waiting && h.adoptable)).map((h) => h.id);
    if (foreign.length) {
      // Checked again under the delete: a schedule written meanwhile (not due any more) stays.
      await db.$executeRawUnsafe(
        `DELETE FROM metadata_refresh_state s WHERE s.credential_id = ANY($1::uuid[]) AND s.next_at <= now()
            AND NOT EXISTS (SELECT 1 FROM saml_provider_credentials c WHERE c.id = s.credential_id AND ${refreshedHere('c', 2)} AND c.deleted_at IS NULL)`,
        foreign,
        ...scope,
      );
    }
    const mine = heads.filter((h) => h.mine).slice(0, limit).map((h) => h.id);
    if (mine.length === 0) return [];
    return db.$queryRawUnsafe<Due[]>(`${DUE_SELECT} WHERE c.id = ANY($1::uuid[]) ORDER BY array_position($1::uuid[], c.id)`, mine);
  }

  /** One page of the sweep: credentials of the page this region refreshes with no schedule or another URL's document. */
  private async sweep(scope: RefreshScope, page: number): Promise<void> {
    const rows = await this.d.db.$queryRawUnsafe<{ last: string | null; n: number; found: string[] | null }[]>(
      `WITH page AS (SELECT id, org_id, idp_metadata_url, idp_trust, home_region, deleted_at FROM saml_provider_credentials WHERE id > $1::uuid ORDER BY id LIMIT $2)
       SELECT (SELECT id::text FROM page ORDER BY id DESC LIMIT 1) AS last, (SELECT count(*)::int FROM page) AS n,
              ARRAY(SELECT p.id::text FROM page p
                      LEFT JOIN saml_credential_metadata m ON m.credential_id = p.id AND m.deleted_at IS NULL
                     WHERE ${refreshedHere('p', 3)} AND p.deleted_at IS NULL
                       AND (m.credential_id IS NULL OR NOT ${currentMetadata('m', 'p')}
                            OR NOT EXISTS (SELECT 1 FROM metadata_refresh_state s WHERE s.credential_id = p.id))
                       -- One whose refresh failed waits out its back-off: its schedule brings it back.
                       AND NOT EXISTS (SELECT 1 FROM metadata_refresh_state s WHERE s.credential_id = p.id AND s.consecutive_failures > 0 AND s.next_at > now())
                     ORDER BY p.id) AS found`,
      this.sweepCursor,
      page,
      ...scope,
    );
    const r = rows[0];
    // A short page was the table's end: the next tick starts over (a table of one page is swept whole every tick).
    this.sweepCursor = r?.last && r.n >= page ? r.last : SWEEP_START;
    for (const id of r?.found ?? []) this.found.add(id);
  }

  /** Whether a refresh of `c` was tried (here or by another process of the region) since the batch read it. */
  private async attemptedSince(c: Due): Promise<boolean> {
    const rows = await this.d.db.$queryRawUnsafe<{ last_attempt_at: Date | null }[]>(
      'SELECT last_attempt_at FROM metadata_refresh_state WHERE credential_id = $1::uuid',
      c.id,
    );
    const now = rows[0]?.last_attempt_at ?? null;
    return now !== null && (c.last_attempt_at === null || now.getTime() > c.last_attempt_at.getTime());
  }

  private async recordFailure(c: Due, err: unknown): Promise<void> {
    const { db, config, log } = this.d;
    // Our own refusals (AppError) say what was wrong with the document. A statement the database canceled
    // (its statement_timeout), a lock wait past its lock_timeout, a read-only or unreachable database: the
    // database's trouble, not the refresh's (nor the IdP's), recorded as the API calls it
    // (database_unavailable) and tried again after the first back-off step, not after a back-off grown by
    // earlier failures. Anything else is logged in full and recorded as an internal failure, without its
    // wording (it may be a database message).
    // A write that met a lock timeout on each of its attempts comes as CollisionsExhausted (replicator.ts).
    const cause = (err as Error | null)?.name === 'CollisionsExhausted' ? (err as Error).cause : err;
    const dbTrouble = !(err instanceof AppError) && (isDatabaseTrouble(cause) || isTransient(cause));
    const e = err instanceof AppError
      ? err
      : dbTrouble
        ? databaseTrouble(cause)
        : new AppError(500, 'internal', 'The refresh failed inside the service (see the region log).');
    if (!(err instanceof AppError) && !dbTrouble) log.error({ credentialId: c.id, err }, 'IdP metadata refresh failed');
    const state = await db.metadataRefreshState.findUnique({ where: { credentialId: c.id } });
    const backoff = Math.min(MAX_BACKOFF_MS, 60_000 * 2 ** Math.min(20, dbTrouble ? 0 : (state?.consecutiveFailures ?? 0)));
    const period = (config.metadataRefreshIntervalSeconds ?? 86_400) * 1000;
    await recordRefresh(db, c.id, new Date(Date.now() + Math.min(backoff, period)), { ok: false, code: e.code, message: e.message });
    this.failed += 1;
    log.warn({ credentialId: c.id, code: e.code, err: dbTrouble ? (err as Error).message : e.message }, 'IdP metadata refresh failed; keeping the last good metadata');
  }

  private async refreshOne(c: Due): Promise<void> {
    const { db, repl, config, log } = this.d;
    const fresh: StoredMetadata = await fetchLimiterFor(config).run(c.org_id, () => loadIdpMetadata(config, c.org_id, c.idp_metadata_url));
    const next = nextRefreshAt(fresh, config);
    // Judged first on what the query read (most refreshes change nothing and write nothing), then again under
    // the lock. Without a current document (a new URL or new pins set in another region, whose row a refresh
    // here replaced): judged as the owner's setting says, by the owner's pins when there are (a document
    // they do not vouch for is refused and recorded as a failed refresh), else on first use.
    const judge = (stored: MetadataRecord | null): { record: MetadataRecord; outcome: RefreshOutcome } =>
      stored ? decideRefresh(stored, fresh) : { record: firstUse(fresh, pinsFor(c)), outcome: 'applied' };
    let outcome: RefreshOutcome | 'deleted' = judge(c.metadata as MetadataRecord | null).outcome;
    if (outcome !== 'unchanged') {
      outcome = await repl.write(async (w) => {
        // Only the metadata row is written: the credential row, which users PATCH, is only read.
        const current = await w.lock(credentialsTable, c.id);
        // Deleted, re-pointed or re-pinned meanwhile: this fetch was judged for another setting.
        if (!current || current.deleted_at || current.idp_metadata_url !== c.idp_metadata_url || trustIdFor(current) !== trustIdFor(c)) return 'unchanged' as const;
        const row = await w.lock(metadataTable, c.id);
        const live = row && !row.deleted_at && isCurrentMetadata(c, row as { idp_metadata_url: string; trust_id?: string | null }) ? row : null;
        const decided = judge(live ? (live.metadata as MetadataRecord) : null);
        // Made under the stored document's setting (it may be newer than the credential's: trust.ts), else the
        // credential's; never null, which only older versions write.
        const trustId = typeof live?.trust_id === 'string' ? live.trust_id : trustIdFor(current);
        if (decided.outcome !== 'unchanged') {
          await putMetadata(w, current, { metadata: decided.record, nextRefreshAt: next }, trustId);
          // Its organization deleted while the document was fetched: nothing is written (see the check).
          w.later(organizationLiveCheck(String(current.org_id)));
        }
        return decided.outcome;
      }).then((r) => r.value, (err: unknown) => {
        if (pgCode(err) === ORG_DELETED_SQLSTATE) return 'deleted' as const;
        throw err;
      });
      if (outcome === 'deleted') {
        // No schedule either: the next batch drops it (no longer this region's to refresh).
        log.info({ credentialId: c.id }, "IdP metadata fetched for a credential whose organization was deleted meanwhile; not stored");
        return;
      }
      if (outcome === 'applied') log.info({ credentialId: c.id }, 'IdP metadata changed; replicated the new document');
      if (outcome === 'held') {
        this.held += 1;
        log.warn({ credentialId: c.id }, 'IdP metadata changes the signing certificates without a trusted signature; held, not applied');
      }
    }
    await recordRefresh(db, c.id, next, { ok: true });
    this.refreshed += 1;
  }
}

/**
 * A refresh the database stopped (recordFailure): in the API's words for it (asAppError's database_unavailable,
 * never the database's own message); a lock wait past the database's lock_timeout, which the API words as
 * contention of a request, is the database's state here too.
 */
function databaseTrouble(err: unknown): AppError {
  const known = asAppError(err);
  if (known?.code === 'database_unavailable') return known;
  return new AppError(503, 'database_unavailable', "This region's database did not let the refresh finish (a lock wait ran past its lock_timeout, or the statement collided with another); it is tried again shortly.");
}
