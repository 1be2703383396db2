/**
 * The operator's view of the background metadata refresh (metadata-refresh.ts): this region's schedule with
 * its failures and held documents, and the accept of a held document.
 */
import { Router } from 'express';
import type { Config } from '../config';
import type { Db } from '../db/client';
import { AppError } from '../http/errors';
import { noBody } from '../http/body';
import { noQuery } from '../http/no-query';
import { startedAt } from '../http/request-id';
import { isUuid, shownId } from '../http/validate';
import { NO_DEPARTURES, type DepartureState } from '../replication/departures';
import type { Replicator } from '../replication/replicator';
import { adminFollowUp, parseConsistency, setChangeId, writeWithConsistency } from '../replication/consistency';
import { credentialsTable, currentMetadata, metadataTable, refreshedHere, REFRESHED_SCHEDULES, refreshScope } from './store';
import { expiredAt, skewMsOf, validationTime } from './metadata';
import { acceptHeld, isCurrentMetadata, type MetadataRecord } from './trust';
import { organizationsTable } from '../organizations/store';

/** Credentials listed by GET /admin/metadata-refresh. */
const LISTED = 500;
/** The credentials holding a document for an operator (the partial index saml_credential_metadata_held_idx). */
const HELD_IDS = `SELECT h.credential_id FROM saml_credential_metadata h WHERE h.deleted_at IS NULL AND jsonb_typeof(h.metadata->'pending') = 'object'`;

interface AdminRow {
  credential_id: string;
  org_id: string;
  home_region: string;
  idp_metadata_url: string;
  next_at: Date;
  last_attempt_at: Date | null;
  last_success_at: Date | null;
  last_error: string | null;
  last_error_code: string | null;
  consecutive_failures: number;
  held_since: string | null;
  held_reason: string | null;
  /** The applied document's validUntil (expired_since is made of it). */
  valid_until: string | null;
}

/**
 * GET /admin/metadata-refresh: this region's refresh schedule, failures first, held documents next.
 * POST /admin/metadata-refresh/{credential_id}/accept: an operator applies a held document (its signing
 * certificates become trusted); 404 when the credential holds none. `config`: the clock and skew a document's
 * expiry is judged by, as SSO judges it.
 */
export function metadataRefreshAdminRoutes(db: Db, region: string, repl: Replicator | undefined, config: Pick<Config, 'metadataValidationTime' | 'samlClockSkewSeconds'>): Router {
  const router = Router();
  router.post('/admin/metadata-refresh/:credential_id/accept', noBody(), async (req, res) => {
    const id = String(req.params.credential_id).toLowerCase();
    const none = () => new AppError(404, 'not_found', `Credential ${shownId(id)} has no held IdP metadata to accept.`);
    // A write like any other: the consistency headers, X-Change-Id, a 408 to follow up (a fuzzing review
    // found them ignored here: an operator could not wait for every region to trust the new certificate).
    const consistency = parseConsistency(req, startedAt(res));
    if (!repl || !isUuid(id)) throw none();
    const write = () => repl.write(async (w) => {
      const credential = await w.lock(credentialsTable, id);
      const row = await w.lock(metadataTable, id);
      if (!credential || credential.deleted_at || !row || row.deleted_at) throw none();
      // A deleted organization's credential (one its delete's change did not take) is no one's to trust.
      const org = await w.lock(organizationsTable, String(credential.org_id));
      if (!org || org.deleted_at) throw none();
      if (!isCurrentMetadata(credential as { idp_metadata_url: string }, row as { idp_metadata_url: string; trust_id?: string | null })) throw none();
      const accepted = acceptHeld(row.metadata as MetadataRecord);
      if (!accepted) throw none();
      await w.put(metadataTable, { ...row, metadata: accepted });
    });
    await writeWithConsistency(repl, consistency, write, () => null, setChangeId(res), adminFollowUp);
    res.status(204).end();
  });
  router.get('/admin/metadata-refresh', noQuery(), async (_req, res) => {
    // The credentials this region refreshes: its home ones, and those it adopted (see metadata-refresh.ts's comment).
    const departures: DepartureState = repl ? await repl.departures() : NO_DEPARTURES;
    const scope = refreshScope(region, departures);
    // Failing first, then held documents (both wait for someone), then by schedule; each part read through
    // an index and capped, so the answer costs the same whatever the number of credentials (the console
    // asks every region for it every few seconds while it is open). A held document is shown (and counted)
    // only in a metadata row that is the credential's current one, as accept takes it: one of another URL
    // or of an older trust setting (a race the sweep repairs) is not the owner's to accept.
    const listed = (from: string) => `SELECT s.credential_id::text, c.org_id::text, c.home_region, c.idp_metadata_url, s.next_at, s.last_attempt_at, s.last_success_at,
              s.last_error, s.last_error_code, s.consecutive_failures,
              m.metadata->'pending'->>'held_at' AS held_since, m.metadata->'pending'->>'reason' AS held_reason, m.metadata->>'valid_until' AS valid_until
         FROM ${from} LEFT JOIN saml_credential_metadata m ON m.credential_id = c.id AND m.deleted_at IS NULL AND ${currentMetadata('m', 'c')}`;
    const now = validationTime(config);
    const skewMs = skewMsOf(config);
    const [failingFirst, heldNext, scheduled, failing, held, expired] = await Promise.all([
      db.$queryRawUnsafe<AdminRow[]>(`${listed(REFRESHED_SCHEDULES)} WHERE s.consecutive_failures > 0 ORDER BY s.consecutive_failures DESC, (m.metadata->'pending'->>'held_at') IS NULL, s.next_at LIMIT ${LISTED}`, ...scope),
      // From the held ones (few) to their schedules: ordering every schedule by next_at and filtering would
      // walk them all when fewer than the cap are held.
      db.$queryRawUnsafe<AdminRow[]>(
        `WITH held AS MATERIALIZED (${HELD_IDS}) ${listed(`held JOIN ${REFRESHED_SCHEDULES} ON s.credential_id = held.credential_id`)}
          WHERE s.consecutive_failures = 0 AND m.credential_id IS NOT NULL ORDER BY s.next_at LIMIT ${LISTED}`,
        ...scope,
      ),
      db.$queryRawUnsafe<AdminRow[]>(`${listed(REFRESHED_SCHEDULES)} WHERE s.consecutive_failures = 0 ORDER BY s.next_at LIMIT ${LISTED}`, ...scope),
      // Counted apart from the list, which is capped (each through its partial index).
      db.$queryRawUnsafe<{ n: bigint }[]>(`SELECT count(*) AS n FROM ${REFRESHED_SCHEDULES} WHERE s.consecutive_failures > 0`, ...scope),
      // From the held rows (the partial index) to their credentials: joined the other way round, the planner
      // walked every credential of the region once thousands were held (a review: 217 ms at 20,000 held).
      db.$queryRawUnsafe<{ n: bigint }[]>(
        `SELECT count(*) AS n FROM saml_credential_metadata h JOIN saml_provider_credentials c ON c.id = h.credential_id
          WHERE h.deleted_at IS NULL AND jsonb_typeof(h.metadata->'pending') = 'object'
            AND ${refreshedHere('c', 1)} AND c.deleted_at IS NULL AND ${currentMetadata('h', 'c')}`,
        ...scope,
      ),
      // Every expired one, not only those listed, by expiredAt's rule (pastValidUntil: validUntil at or before the
      // clock less the skew, in epoch milliseconds; metadata_valid_until_ms reads validUntil as Date.parse does,
      // see its migration 20261207220000_metadata_expired_index). From the expired rows (through that index: few)
      // to their credentials, materialized first: joined in one query, the planner read every credential of the
      // region to join the few (at 100,000 credentials, 900 expired: 39 ms against 13 ms; 1.5 s without the index).
      // Those of them whose refreshes fail too, in the same pass, so the console counts each credential once.
      db.$queryRawUnsafe<{ n: bigint; failing: bigint }[]>(
        `WITH m AS MATERIALIZED (SELECT credential_id, idp_metadata_url, trust_id FROM saml_credential_metadata
                                   WHERE deleted_at IS NULL AND metadata_valid_until_ms(metadata) <= $4::bigint)
         SELECT count(*) AS n, count(*) FILTER (WHERE s.consecutive_failures > 0) AS failing
           FROM m JOIN ${REFRESHED_SCHEDULES} ON s.credential_id = m.credential_id WHERE ${currentMetadata('m', 'c')}`,
        ...scope,
        String(now.getTime() - skewMs),
      ),
    ]);
    const seen = new Set<string>();
    const rows = [...failingFirst, ...heldNext, ...scheduled].filter((r) => !seen.has(r.credential_id) && seen.add(r.credential_id)).slice(0, LISTED);
    res.json({
      region,
      failing: Number(failing[0]?.n ?? 0),
      held: Number(held[0]?.n ?? 0),
      expired: Number(expired[0]?.n ?? 0),
      failing_expired: Number(expired[0]?.failing ?? 0),
      // Whether this region adopts now the credentials of regions that left the deployment, and why not.
      adoption: { departed: departures.departed, ready: departures.ready, waiting: departures.waiting, adopters: departures.adopters },
      credentials: rows.map(({ valid_until, ...r }) => ({
        ...r,
        held_since: r.held_since ? new Date(r.held_since).toISOString() : null,
        expired_since: expiredAt({ valid_until }, now, skewMs),
        next_at: r.next_at.toISOString(),
        last_attempt_at: r.last_attempt_at?.toISOString() ?? null,
        last_success_at: r.last_success_at?.toISOString() ?? null,
      })),
    });
  });
  return router;
}
