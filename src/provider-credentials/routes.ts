import { Router, type Request, type Response } from 'express';
import type { Db } from '../db/client';
import { fetchLimiterFor } from './fetch-limiter';
import { loadIdpMetadata, metadataView, nextRefreshAt, skewMsOf, trustView, validationTime, type MetadataConfig, type StoredMetadata } from './metadata';
import { callerPins, firstUse, isCurrentModel, type TrustedCertificate } from './trust';
import { jsonBody, noBody } from '../http/body';
import { outsideAdmission, readmitted } from '../http/admission';
import { AppError, badRequest, notFound, shownText } from '../http/errors';
import { pageQueryParser } from '../http/page-query';
import { startedAt } from '../http/request-id';
import { refuseUnstorableInput } from '../http/storable-text';
import { envelope } from '../http/slashid';
import { describeErrors, isUuid, shownId } from '../http/validate';
import { parseIdempotencyKey } from '../idempotency/request';
import { idempotencyKeysTable } from '../idempotency/store';
import { awaitReplay, doneValue, findPrior, idempotentCall, keyReused, sendReplay, settledPrior, type IdempotentCall, type Prior } from '../idempotency/service';
import { keyOrgIdOf, orgIdOf, slashidAuth } from '../organizations/slashid-auth';
import { beforeWrite, parseConsistency, SupersededError, type Consistency, setChangeId, slashidFollowUp, slashidStoredResult, writeWithConsistency, type FollowUp, type StoredResult } from '../replication/consistency';
import type { Replicator } from '../replication/replicator';
import {
  type CredentialView,
  validateCreateCredential,
  validatePatchCredential,
} from './schema';
import { createCredential, credentialNotFound, DEFAULT_MAX_CREDENTIALS_PER_ORG, deleteCredential, patchCredential, viewFromModel } from './service';
import { findCredential, findMetadata, listCredentials, refreshScheduleHere } from './store';
import { routePrefix } from '../observability/metrics';

export const CREDENTIALS_PATH = '/organizations/sso/saml/provider-credentials';
/** The operation's name in idempotency keys; keys are unique per organization and operation. */
export const CREATE_ENDPOINT = 'slashid:provider-credentials:create';

export interface CredentialRouteDeps {
  db: Db;
  repl: Replicator;
  config: MetadataConfig;
}

function invalidBody(errors: Parameters<typeof describeErrors>[0]) {
  return badRequest(`Invalid request body: ${describeErrors(errors).join('; ')}.`);
}

function credentialId(req: Request): string {
  const id = String(req.params.id);
  if (!isUuid(id)) throw notFound(`SAML provider credentials ${shownId(id)} not found.`);
  return id.toLowerCase();
}


/**
 * `Location` names the credential a create made: on its 201 (and a replay of it), and on a 408, whose body
 * carries none. SlashID answers errors without `result` (seeds/README, whose example is a 408), so there the
 * header is how a client finds the committed credential (and X-Change-Id its change).
 */
const located = (res: Response) => (credential: { id?: unknown } | null | undefined): undefined => {
  if (typeof credential?.id === 'string') res.setHeader('Location', `${CREDENTIALS_PATH}/${credential.id}`);
  return undefined;
};

const listPage = pageQueryParser('Credentials');

/**
 * A create's 408 follow-up: its change, and the credential it made, named in the message too (a client that
 * shows only an error's body still finds it). `located` has set Location by then: pendingError takes the
 * 408's result (located's call) as an argument, before it builds the message.
 */
const createdFollowUp = (res: Response): FollowUp => (changeId) => {
  const location = res.getHeader('Location');
  return `${slashidFollowUp(changeId)}${typeof location === 'string' ? `; the credential it created is ${location} (the Location header)` : ''}`;
};

function answerPrior(res: Response, prior: Prior): void {
  if (prior.kind === 'reused') throw keyReused(prior.message);
  if (prior.response.status === 201) located(res)(slashidStoredResult(prior.response.body) as { id?: unknown } | undefined);
  sendReplay(res, prior.response, prior.changeId);
}

/**
 * The 409 of a keyed all_regions create that lost only its Idempotency-Key: the same key sent at once to
 * another region, whose create came first. The credential this one made has an id of its own, so it is kept
 * (a second credential), not "not kept" as a lost write's 409 says: the answer names it (and Location), and
 * says that a retry with the key answers the winner's credential. Any other loss answers as it was.
 */
async function keyLost(db: Db, res: Response, orgId: string, key: string, made: CredentialView, err: unknown): Promise<unknown> {
  if (!(err instanceof SupersededError) || !err.lostTables.every((t) => t === idempotencyKeysTable.name)) return err;
  if (!(await findCredential(db, orgId, made.id))) return err;
  located(res)(made);
  return new AppError(
    409,
    'write_superseded',
    `Idempotency-Key ${shownText(key)} was used at the same time in another region, whose create came first: a retry with this key answers that create (a 422 if its body was another) once it has reached the region you retry in; until then a retry here replays this answer. ` +
      `The credential this request created is kept as a second one, ${CREDENTIALS_PATH}/${made.id} (the Location header); delete it if you want one.`,
  );
}

/**
 * Waits on a replayed create's change (awaitReplay); one that lost only its key answers keyLost's 409, as
 * the first request did under all_regions (it said "not kept" of a credential every region keeps). The key
 * here replays that create until the other create's key reaches this region.
 */
async function awaitCreateReplay(h: Handlers, res: Response, c: Consistency, prior: Extract<Prior, { kind: 'replay' }>, orgId: string, key: string | null): Promise<void> {
  const storedLocated: StoredResult = (stored) => located(res)(slashidStoredResult(stored) as { id?: unknown } | undefined);
  await awaitReplay(res, h.repl, c, prior, createdFollowUp(res), storedLocated).catch(async (err: unknown) => {
    const made = prior.response.status === 201 ? (slashidStoredResult(prior.response.body) as CredentialView | undefined) : undefined;
    throw key && typeof made?.id === 'string' ? await keyLost(h.db, res, orgId, key, made, err) : err;
  });
}

/** Fetch failures that say "later": the request's time is up (408), or the region is busy (429, 503). */
const LATER = new Set([408, 429, 503]);

/**
 * After the IdP fetch failed: a retry racing the first request found no key, but that request may be
 * committing now, and what it became answers (settledPrior), not this fetch's failure. Not after a failure
 * that says "later" (LATER): waiting on the database then would spend time or capacity the answer says is
 * gone; nor when no write slot is free again (the fetch's failure stands then).
 */
const settledOr = (req: Request, repl: Replicator, idem: IdempotentCall<unknown> | null) => async (err: unknown): Promise<Prior> => {
  if (!idem || (err instanceof AppError && LATER.has(err.status))) throw err;
  const slot = await readmitted(req).then(() => true, () => false);
  const settled = slot ? await settledPrior(repl, idem) : null;
  if (!settled) throw err;
  return settled;
};

/** What the handlers share: the routes' dependencies, and the IdP metadata fetch under its limiter. */
type Handlers = CredentialRouteDeps & { fetchMetadata: ReturnType<typeof metadataFetch> };

function metadataFetch(config: MetadataConfig) {
  const limiter = fetchLimiterFor(config);
  // The owner sets the URL (or the pins): trust on first use of this document, or the owner's certificates.
  return async (res: Response, url: string, pins: TrustedCertificate[] | null, answered: AbortSignal) => {
    // Counted against the organization whose key sent it (keyOrgIdOf): a parent's key has one share of the
    // fetches and of the host-name lookups for all the sub-organizations it acts on, not one per sub-organization.
    const tenant = keyOrgIdOf(res);
    // Without the request's admission slot: the fetch needs no database connection and its own limiter bounds
    // it, so one organization's slow IdP cannot hold the region's write slots (others' writes would get 503).
    // Once the request was answered (beforeWrite's 408 at its deadline) nothing of it is used: a fetch under
    // way ends, and one whose slot comes later does not start, so the retry the 408 invites finds the slot free.
    const load = () => (answered.aborted ? Promise.reject(new Error('the request was answered')) : loadIdpMetadata(config, tenant, url, answered));
    const fresh = await outsideAdmission(res.req, () => limiter.run(tenant, load, res, limiter.orgWaitMs));
    const metadata = firstUse(fresh, pins);
    // The owner's choice: the write makes it the credential's trust setting (see TrustSetting).
    return { metadata, nextRefreshAt: nextRefreshAt(metadata, config), trust: { url, pins } };
  };
}

function answerCreate(h: Handlers) {
  const { db, repl, config, fetchMetadata } = h;
  return async (req: Request, res: Response) => {
    const consistency = parseConsistency(req, startedAt(res));
    const key = parseIdempotencyKey(req);
    if (!validateCreateCredential(req.body)) throw invalidBody(validateCreateCredential.errors);
    const body = req.body;
    const orgId = orgIdOf(res);
    const idem = idempotentCall(key, { orgId, endpoint: CREATE_ENDPOINT, body }, (v: CredentialView) => ({ status: 201, body: envelope(v) }));
    // Before the metadata fetch: a retry must not depend on the IdP being reachable again.
    const prior = await findPrior(db, idem);
    if (prior?.kind === 'replay') await awaitCreateReplay(h, res, consistency, prior, orgId, key);
    if (prior) return answerPrior(res, prior);
    const pins = body.idp_trusted_certificates ? callerPins(body.idp_trusted_certificates) : null;
    const fetched = await beforeWrite(consistency, (answered) => fetchMetadata(res, body.idp_metadata_url, pins, answered)).catch(settledOr(req, repl, idem));
    if ('kind' in fetched) {
      if (fetched.kind === 'replay') await awaitCreateReplay(h, res, consistency, fetched, orgId, key);
      return answerPrior(res, fetched);
    }
    const max = config.maxCredentialsPerOrg ?? DEFAULT_MAX_CREDENTIALS_PER_ORG;
    // The credential the write committed: keyLost names it when the create lost only its key.
    let made: CredentialView | undefined;
    const write = async () => {
      const written = await createCredential(repl, orgId, body, fetched, idem, max);
      made = doneValue(written.value);
      return written;
    };
    const { value } = await writeWithConsistency(repl, consistency, write, (v) => located(res)(doneValue(v)), setChangeId(res), createdFollowUp(res)).catch(
      async (err: unknown) => {
        throw key && made ? await keyLost(db, res, orgId, key, made, err) : err;
      },
    );
    if (value.kind === 'replay') await awaitCreateReplay(h, res, consistency, value, orgId, key);
    if (value.kind !== 'done') return answerPrior(res, value);
    located(res)(value.value);
    res.status(201).json(envelope(value.value));
  };
}

function answerList({ db }: Handlers) {
  return async (req: Request, res: Response) => {
    const { limit, offset } = listPage(req.query as Record<string, unknown>);
    const { rows, total } = await listCredentials(db, orgIdOf(res), limit, offset);
    res.json(envelope(rows.map(viewFromModel), { pagination: { limit, offset, total_count: total } }));
  };
}

function answerRead({ db }: Handlers) {
  return async (req: Request, res: Response) => {
    const id = credentialId(req);
    const row = await findCredential(db, orgIdOf(res), id);
    if (!row) throw credentialNotFound(id);
    res.json(envelope(viewFromModel(row)));
  };
}

function answerMetadata({ db, repl, config }: Handlers) {
  return async (req: Request, res: Response) => {
    const id = credentialId(req);
    // With the trust setting, which the read of the credential alone (the hot path) leaves out.
    const row = await db.samlProviderCredential.findFirst({ where: { id, orgId: orgIdOf(res), deletedAt: null } });
    if (!row) throw credentialNotFound(id);
    // The schedule only where it is acted on: a region that stopped adopting the credential keeps its row until due.
    const [metadata, refresh] = await Promise.all([findMetadata(db, id), repl.departures().then((scope) => refreshScheduleHere(db, id, repl.region, scope))]);
    // A document fetched for a URL the credential no longer has, or under an earlier trust setting, is not
    // shown (the home region fetches it again).
    const stored = (metadata && isCurrentModel(row, metadata) ? metadata.metadata : null) as StoredMetadata | null;
    res.json(
      envelope({
        id,
        idp_metadata_url: row.idpMetadataUrl,
        metadata: metadataView(stored, validationTime(config), skewMsOf(config)),
        ...trustView(stored, validationTime(config), skewMsOf(config)),
        refresh: {
          home_region: row.homeRegion,
          // The schedule lives in the region that refreshes it only (the home region, or its adopter).
          ...(refresh
            ? {
                next_at: new Date(refresh.next_at).toISOString(),
                last_success_at: refresh.last_success_at ? new Date(refresh.last_success_at).toISOString() : null,
                last_error: refresh.last_error,
                consecutive_failures: refresh.consecutive_failures,
              }
            : {}),
        },
      }),
    );
  };
}

function answerPatch({ db, repl, fetchMetadata }: Handlers) {
  return async (req: Request, res: Response) => {
    const consistency = parseConsistency(req, startedAt(res));
    const id = credentialId(req);
    if (!validatePatchCredential(req.body)) throw invalidBody(validatePatchCredential.errors);
    const patch = req.body;
    // Nothing to change: no write, no change to replicate or wait for; only a credential that is there.
    if (Object.keys(patch).length === 0) {
      if (!(await findCredential(db, orgIdOf(res), id))) throw credentialNotFound(id);
      res.status(204).end();
      return;
    }
    // A new URL, or new pins (the owner's way to accept a held document): fetch and pin again. Only then is
    // the credential read first (a 404 before any fetch); otherwise the write's own lock answers 404.
    const pins = patch.idp_trusted_certificates ? callerPins(patch.idp_trusted_certificates) : null;
    let fetched: Awaited<ReturnType<typeof fetchMetadata>> | null = null;
    if (patch.idp_metadata_url !== undefined || pins) {
      const existing = await findCredential(db, orgIdOf(res), id);
      if (!existing) throw credentialNotFound(id);
      fetched = await beforeWrite(consistency, (answered) => fetchMetadata(res, patch.idp_metadata_url ?? existing.idpMetadataUrl, pins, answered));
    }
    await writeWithConsistency(repl, consistency, () => patchCredential(repl, orgIdOf(res), id, patch, fetched), () => undefined, setChangeId(res));
    res.status(204).end();
  };
}

function answerDelete({ repl }: Handlers) {
  return async (req: Request, res: Response) => {
    const consistency = parseConsistency(req, startedAt(res));
    const id = credentialId(req);
    await writeWithConsistency(repl, consistency, () => deleteCredential(repl, orgIdOf(res), id), () => undefined, setChangeId(res));
    res.status(204).end();
  };
}

export function providerCredentialRoutes(deps: CredentialRouteDeps): Router {
  const h: Handlers = { ...deps, fetchMetadata: metadataFetch(deps.config) };
  const router = Router();
  router.use(CREDENTIALS_PATH, routePrefix(), refuseUnstorableInput(), slashidAuth(deps.db));
  router.post(CREDENTIALS_PATH, jsonBody(), answerCreate(h));
  router.get(CREDENTIALS_PATH, answerList(h));
  router.get(`${CREDENTIALS_PATH}/:id`, answerRead(h));
  // The parsed IdP metadata: not part of the seed's result shape, so it has its own read-only resource.
  router.get(`${CREDENTIALS_PATH}/:id/metadata`, answerMetadata(h));
  router.patch(`${CREDENTIALS_PATH}/:id`, jsonBody(), answerPatch(h));
  router.delete(`${CREDENTIALS_PATH}/:id`, noBody(), answerDelete(h));
  return router;
}
