import { Router } from 'express';
import type { Db } from '../db/client';
import { AppError, badRequest, conflict, notFound } from '../http/errors';
import { isConnectionLost, isConnectRefused } from '../db/pg-errors';
import { describeErrors, isUuid, shownId } from '../http/validate';
import type { Logger } from '../logger';
import type { ReplicationKeys } from '../redis';
import type { Applier } from './applier';
import type { RedisLinks } from './links';
import type { Membership } from './membership';
import type { Member } from './member-record';
import { discardedEvent, discardParked } from './parked';
import { validateParkedDiscard } from './schema';
import { changeStatus } from './change-status';
import type { EventAuth } from './event-auth';
import type { AckSigning } from './ack-auth';
import type { OutboxRelay } from './relay';
import type { ReplicatedTable } from './tables';
import type { Tracker } from './tracker';
import type { TombstoneCollector } from './tombstones';
import { jsonBody, noBody } from '../http/body';
import { noQuery } from '../http/no-query';
import { iso, replicationStatus } from './admin-status';

export interface ReplicationAdminDeps {
  db: Db;
  links: RedisLinks;
  keys: ReplicationKeys;
  tracker: Tracker;
  relay: OutboxRelay;
  /** Null when this process runs no applier (then parked events are retried by the process that does). */
  applier: Applier | null;
  /** Null when this process runs no collector (it runs no applier). */
  tombstones?: TombstoneCollector | null;
  region: string;
  regions: readonly string[];
  /** The deployment's members; without it, `regions`. */
  membership?: Pick<Membership, 'regions' | 'members'>;
  tables: readonly ReplicatedTable[];
  log: Logger;
  /** The replication keys: which signs, which are accepted (their ids only are shown). */
  auth: Pick<EventAuth, 'signingKid' | 'kids'>;
}

/** Operator views of replication: overall status, one change's progress, and per-table digests. */
export function replicationAdminRoutes(d: ReplicationAdminDeps): Router {
  const router = Router();
  const regions = () => d.membership?.regions() ?? d.regions;

  router.get('/admin/replication', noQuery(), async (_req, res) => {
    res.json(await replicationStatus(d, replicationFigures(d)));
  });

  // After an upgrade that lets this region apply parked events (it also retries them at start).
  router.post('/admin/replication/parked/retry', noBody(), async (_req, res) => {
    if (!d.applier) throw conflict('This process runs no applier; retry on a process of this region that does.');
    const result = await d.applier.retryParked().catch((err: unknown) => {
      // Not errors.ts's "nothing was done": the events applied before the database went away stay applied.
      if (!isConnectRefused(err) && !isConnectionLost(err)) throw err;
      throw new AppError(503, 'database_unavailable', "This region's database stopped accepting connections, or ended the retry's connection, during the retry; events applied before that stay applied (applying one again changes nothing). Retry shortly.", { retryAfterSeconds: 2 });
    });
    res.json({ region: d.region, ...result });
  });

  // For a parked change no upgrade will apply: it stops holding the horizon and a removed region's adoption.
  router.post('/admin/replication/parked/discard', jsonBody(), async (req, res) => {
    if (!validateParkedDiscard(req.body)) {
      throw badRequest(`Invalid request body: ${describeErrors(validateParkedDiscard.errors).join('; ')}.`);
    }
    const ids = req.body.change_ids.map((id) => id.toLowerCase());
    if (new Set(ids).size !== ids.length) throw badRequest('Invalid request body: change_ids names a change twice.');
    const { discarded, notParked } = await discardParked(d.db, ids);
    for (const e of discarded) d.log.warn({ discarded: e }, 'parked change event discarded by an operator: not applied in this region');
    res.json({ region: d.region, discarded, not_parked: notParked });
  });

  router.get('/admin/replication/parked/discarded/:changeId', noQuery(), async (req, res) => {
    const changeId = String(req.params.changeId);
    const found = isUuid(changeId) ? await discardedEvent(d.db, changeId.toLowerCase()) : null;
    if (!found) throw notFound(`No discarded change ${shownId(changeId)} in this region.`);
    res.json({ region: d.region, ...found });
  });

  router.get('/admin/replication/changes/:changeId', noQuery(), async (req, res) => {
    const changeId = String(req.params.changeId);
    if (!isUuid(changeId)) throw notFound(`Change ${shownId(changeId)} not found.`);
    const status = await changeStatus({ ...d, regions: regions() }, changeId.toLowerCase(), null);
    if (!status) throw notFound(`Change ${changeId} is not known (or its record has expired).`);
    res.json(status);
  });

  router.get('/admin/replication/digest', noQuery(), async (_req, res) => {
    const tables: Record<string, { rows: number; digest: string }> = {};
    for (const t of d.tables) {
      const r = await d.db.$queryRawUnsafe<{ rows: bigint; digest: string | null }[]>(
        // Nulls left out: a region on an older schema lacks a column the others hold null, and the same data
        // should digest the same during a rolling upgrade (a helper's upgrade run).
        `SELECT count(*) AS rows, md5(coalesce(string_agg(jsonb_strip_nulls(to_jsonb(x))::text, E'\\n' ORDER BY x."${t.key}"), '')) AS digest FROM "${t.name}" x`,
      );
      tables[t.name] = { rows: Number(r[0]?.rows ?? 0), digest: r[0]?.digest ?? '' };
    }
    res.json({ region: d.region, tables });
  });

  return router;
}

/**
 * The part of GET /admin/replication this process keeps in memory (no I/O): members, the relay's and the
 * applier's counters, the waiters, the last tombstone horizon computed, and where each member's Redis is.
 * Plain data: the operator listener (src/operator) answers from a copy the main thread publishes.
 */
export function replicationFigures(d: Pick<ReplicationAdminDeps, 'links' | 'tracker' | 'relay' | 'applier' | 'tombstones' | 'regions' | 'membership' | 'auth'>) {
  const regions = d.membership?.regions() ?? [...d.regions];
  const c = d.tombstones;
  const last = c?.last;
  const members: Pick<Member, 'region' | 'state' | 'joinedAt' | 'registered' | 'verified' | 'unverified'>[] =
    d.membership?.members() ?? d.regions.map((region) => ({ region, state: 'active' as const, joinedAt: null, registered: false, verified: null }));
  return {
    regions,
    // The deployment's members (docs/operations.md, "Adding a region"): joining until re-seeded, then active.
    // `verified` says whether it counts; `verification` why not (an unsigned entry, a forged one, a key this
    // region lacks, or a replay of an older signed entry all read `verified: false`).
    members: members.map((m) => ({ region: m.region, state: m.state, joined_at: m.joinedAt, registered: m.registered, verified: m.verified === null ? null : m.verified === 'signed', verification: m.verified })),
    // The members whose `joining` counts (needs_reseed): not one held by its name only, whose entry does not
    // verify (require: the state it says is not taken; it shows under members with verified false, and holds the
    // horizon as unverified). A replayed one counts: its state is the newer entry's, which verified.
    joining: members.filter((m) => m.state === 'joining' && !(m.unverified && m.verified !== 'replayed')).map((m) => m.region),
    /** Each member's Redis as this process reaches it (not answered: it may carry credentials). */
    redisUrls: Object.fromEntries(regions.map((r) => [r, d.links.urlOf(r)])),
    // The replication key ids this process signs with and accepts (REPLICATION_KEYS; never the secrets), to
    // check each step of a rotation in every region.
    replication_keys: { signing: d.auth.signingKid, accepted: d.auth.kids },
    published_by_relay: d.relay.published,
    republished_after_loss: d.relay.republished,
    // Entries refused for their signature (unsigned, unknown key, altered) by this process's applier since
    // it started: never applied, moved to the dead-letter stream. Null when this process runs no applier.
    refused: d.applier
      ? {
          total: d.applier.refusedEvents,
          by_reason: { ...d.applier.refusedByReason },
          recent: d.applier.recentRefused.map((r) => ({ stream_id: r.streamId, claimed_origin: r.origin, reason: r.reason, kid: r.kid, at: r.at })).reverse(),
        }
      : null,
    // Changes this process's applier parked since it started, each once (not one parked before, by it or by
    // another process of the region, delivered again; nor one discarded here). Null when it runs no applier.
    parked_by_applier: d.applier ? d.applier.parkedEvents : null,
    waiting_requests: d.tracker.waiting,
    // Whether this process's start check of its database has run (restore-check.ts); null: it runs no applier.
    start_check: d.applier ? d.applier.startCheck : null,
    // Acks read that did not verify (docs/operations.md, "Signing acks"): `require` is safe once these stop growing.
    ack_signatures: ackSignatureFigures(d.tracker.signing),
    // The tombstone horizon as this process last computed it (what it collected is read from the database).
    tombstones: c
      ? {
          enabled: c.options.enabled,
          interval_ms: c.options.intervalMs,
          min_age_ms: c.options.minAgeMs,
          computed_at: iso(last?.at),
          horizon: last?.result.horizon ?? null,
          lowest_region: last?.result.lowest ?? null,
          collect_below: last?.cutoff ?? null,
          held_by: last?.result.heldBy ?? [],
          members: (last?.result.members ?? []).map((m) => ({
            region: m.region,
            watermark: m.watermark,
            reported_at: m.reportedAt === null ? null : new Date(m.reportedAt).toISOString(),
            age_ms: m.ageMs,
          })),
          last_error: c.lastError,
          refused_below_horizon: c.belowHorizon,
          // Parts that outlived their owner (parts.ts), since this process started.
          parts_swept: { tombstoned: c.partsSwept.tombstoned, deleted_here: c.partsSwept.deletedHere },
        }
      : null,
  };
}

/**
 * Config `ackSignatures` and, since start (`sign` and `require` modes), the ack values, announcements and
 * watermark reports read that did not verify, by reason, the deliveries confirmed on an ack that did not verify,
 * the membership entries read that did not verify or were replayed, and the removal records (departed,
 * departed-known) read that did not verify (each stored value once).
 */
function ackSignatureFigures(signing: AckSigning | null) {
  const none = { unsigned: 0, 'bad-signature': 0, 'unknown-key': 0 };
  return {
    mode: signing?.mode ?? 'off',
    unverified: { ...(signing?.unverified ?? none) },
    confirmed_on_unverified: signing?.confirmedUnverified ?? 0,
    member_entries: { unverified: { ...(signing?.unverifiedMembers ?? { ...none, replayed: 0 }) } },
    removal_records: { unverified: { ...(signing?.unverifiedRemovals ?? none) } },
  };
}

export type ReplicationFigures = ReturnType<typeof replicationFigures>;
