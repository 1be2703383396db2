import { Router, type Request, type Response } from 'express';
import type { Db } from '../db/client';
import { loadIdpMetadata, metadataView, nextRefreshAt, validationTime, type MetadataConfig, type StoredMetadata } from './metadata';
import { jsonBody } from '../http/body';
import { badRequest, notFound } from '../http/errors';
import { startedAt } from '../http/request-id';
import { refuseUnstorableInput } from '../http/storable-text';
import { envelope } from '../http/slashid';
import { describeErrors, isUuid } from '../http/validate';
import { parseIdempotencyKey } from '../idempotency/request';
import { doneValue, findPrior, idempotentCall, keyReused, sendReplay, type Prior } from '../idempotency/service';
import { orgIdOf, slashidAuth } from '../organizations/slashid-auth';
import { awaitChange, parseConsistency, writeWithConsistency } from '../replication/consistency';
import type { Replicator } from '../replication/replicator';
import {
  type CredentialView,
  DEFAULT_PAGE_LIMIT,
  MAX_PAGE_LIMIT,
  validateCreateCredential,
  validateListQuery,
  validatePatchCredential,
} from './schema';
import { createCredential, deleteCredential, patchCredential, viewFromModel } from './service';
import { findCredential, findMetadata, listCredentials } from './store';

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
  if (!isUuid(id)) throw notFound(`SAML provider credentials ${id} not found.`);
  return id.toLowerCase();
}

const setChangeId = (res: Response) => (changeId: string) => res.setHeader('X-Change-Id', changeId);

function answerPrior(res: Response, prior: Prior): void {
  if (prior.kind === 'reused') throw keyReused(prior.message);
  sendReplay(res, prior.response);
}

export function providerCredentialRoutes({ db, repl, config }: CredentialRouteDeps): Router {
  const fetchMetadata = async (url: string) => {
    const metadata = await loadIdpMetadata(config, url);
    return { metadata, nextRefreshAt: nextRefreshAt(metadata, config) };
  };

  const router = Router();
  router.use(CREDENTIALS_PATH, refuseUnstorableInput(), slashidAuth(db));

  router.post(CREDENTIALS_PATH, jsonBody(), async (req, res) => {
    const consistency = parseConsistency(req, startedAt(res));
    const key = parseIdempotencyKey(req);
    if (!validateCreateCredential(req.body)) throw invalidBody(validateCreateCredential.errors);
    const body = req.body;
    const orgId = orgIdOf(res);
    const idem = idempotentCall(key, { orgId, endpoint: CREATE_ENDPOINT, body }, (v: CredentialView) => ({ status: 201, body: envelope(v) }));
    // Before the metadata fetch: a retry must not depend on the IdP being reachable again.
    const prior = await findPrior(db, idem);
    if (prior?.kind === 'replay') await awaitChange(repl, consistency, prior);
    if (prior) return answerPrior(res, prior);
    const fetched = await fetchMetadata(body.idp_metadata_url);
    const { value } = await writeWithConsistency(repl, consistency, () => createCredential(repl, orgId, body, fetched, idem), doneValue, setChangeId(res));
    if (value.kind === 'replay') await awaitChange(repl, consistency, value);
    if (value.kind !== 'done') return answerPrior(res, value);
    res.status(201).json(envelope(value.value));
  });

  router.get(CREDENTIALS_PATH, async (req, res) => {
    if (!validateListQuery(req.query)) {
      throw badRequest(`Invalid query: ${describeErrors(validateListQuery.errors).join('; ')}; limit and offset are non-negative integers.`);
    }
    const limit = req.query.limit === undefined ? DEFAULT_PAGE_LIMIT : Number(req.query.limit);
    const offset = req.query.offset === undefined ? 0 : Number(req.query.offset);
    if (limit < 1 || limit > MAX_PAGE_LIMIT) throw badRequest(`limit must be between 1 and ${MAX_PAGE_LIMIT} (got ${limit}).`);
    const { rows, total } = await listCredentials(db, orgIdOf(res), limit, offset);
    res.json(envelope(rows.map(viewFromModel), { pagination: { limit, offset, total_count: total } }));
  });

  router.get(`${CREDENTIALS_PATH}/:id`, async (req, res) => {
    const id = credentialId(req);
    const row = await findCredential(db, orgIdOf(res), id);
    if (!row) throw notFound(`SAML provider credentials ${id} not found.`);
    res.json(envelope(viewFromModel(row)));
  });

  // The parsed IdP metadata: not part of the seed's result shape, so it has its own read-only resource.
  router.get(`${CREDENTIALS_PATH}/:id/metadata`, async (req, res) => {
    const id = credentialId(req);
    const row = await findCredential(db, orgIdOf(res), id);
    if (!row) throw notFound(`SAML provider credentials ${id} not found.`);
    const [metadata, refresh] = await Promise.all([findMetadata(db, id), db.metadataRefreshState.findUnique({ where: { credentialId: id } })]);
    res.json(
      envelope({
        id,
        idp_metadata_url: row.idpMetadataUrl,
        // A document fetched for a URL the credential no longer has is not shown (the home region re-fetches it).
        metadata: metadataView(
          (metadata && metadata.idpMetadataUrl === row.idpMetadataUrl ? metadata.metadata : null) as StoredMetadata | null,
          validationTime(config),
        ),
        refresh: {
          home_region: row.homeRegion,
          // The schedule lives in the home region only.
          ...(refresh
            ? {
                next_at: refresh.nextAt.toISOString(),
                last_success_at: refresh.lastSuccessAt?.toISOString() ?? null,
                last_error: refresh.lastError,
                consecutive_failures: refresh.consecutiveFailures,
              }
            : {}),
        },
      }),
    );
  });

  router.patch(`${CREDENTIALS_PATH}/:id`, jsonBody(), async (req, res) => {
    const consistency = parseConsistency(req, startedAt(res));
    const id = credentialId(req);
    if (!validatePatchCredential(req.body)) throw invalidBody(validatePatchCredential.errors);
    const patch = req.body;
    if (!(await findCredential(db, orgIdOf(res), id))) throw notFound(`SAML provider credentials ${id} not found.`);
    const fetched = patch.idp_metadata_url ? await fetchMetadata(patch.idp_metadata_url) : null;
    await writeWithConsistency(repl, consistency, () => patchCredential(repl, orgIdOf(res), id, patch, fetched), (v) => v, setChangeId(res));
    res.status(204).end();
  });

  router.delete(`${CREDENTIALS_PATH}/:id`, async (req, res) => {
    const consistency = parseConsistency(req, startedAt(res));
    const id = credentialId(req);
    await writeWithConsistency(repl, consistency, () => deleteCredential(repl, orgIdOf(res), id), () => undefined, setChangeId(res));
    res.status(204).end();
  });

  return router;
}
