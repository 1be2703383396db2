import { Router, type RequestHandler, type Response } from 'express';
import type { ValidateFunction } from 'ajv';
import type { Db } from '../db/client';
import { hasBody, jsonBody } from '../http/body';
import { badRequest, forbidden, notFound, unauthorized } from '../http/errors';
import { getRequestId, startedAt } from '../http/request-id';
import { refuseUnstorableInput } from '../http/storable-text';
import { requestPath } from '../http/url';
import { describeErrors, isUuid, shownId } from '../http/validate';
import { parseIdempotencyKey } from '../idempotency/request';
import { awaitReplay, doneValue, findPrior, idempotentCall, sendReplay, type Prior } from '../idempotency/service';
import type { Logger } from '../logger';
import { findOrganization, followsChangesOf, isDeletedOrganization, isSelfOrAncestor } from '../organizations/store';
import { parseConsistency, setChangeId, writeWithConsistency, type FollowUp, type StoredResult } from '../replication/consistency';
import type { Replicator } from '../replication/replicator';
import { bearerAuth, issueAccessToken, tokenOrgOf } from './access-tokens';
import { infisicalErrors, issuesFromAjv, validationFailure, type InfisicalErrorBody, type ValidationIssue } from './errors';
import {
  type CreateSsoConfigBody,
  DEFAULT_TOKEN_LIFETIME_SECONDS,
  type SsoConfigView,
  TRIMMED_FIELDS,
  validateCreateSsoConfig,
  validateGetSsoConfigQuery,
  validateIssueAccessToken,
  validatePatchSsoConfig,
} from './schema';
import { checkGroupSync, createSamlConfig, detailsFromModel, noSamlConfig, patchSamlConfig, settingIssues } from './service';
import { findSamlConfig } from './store';
import { routePrefix } from '../observability/metrics';

export const API_PREFIX = '/api/v1';
/** The root of the paths this dialect owns: /api/v1, and every other /api path (answered 404 by otherVersion). */
export const API_ROOT = '/api';
export const SSO_CONFIG_PATH = '/sso/config';
/** The operation's name in idempotency keys; keys are unique per organization and operation. */
export const CREATE_ENDPOINT = 'infisical:sso-config:create';

/** A copy of a JSON object body (or query) with the fields Infisical trims trimmed and the organization id in lower case; anything else as it is. */
function trimmed(body: unknown): unknown {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return body;
  const out: Record<string, unknown> = { ...(body as Record<string, unknown>) };
  for (const f of TRIMMED_FIELDS) if (typeof out[f] === 'string') out[f] = (out[f] as string).trim();
  // A UUID in either case names the same organization (it is stored in lower case): an Idempotency-Key
  // retry that spells it in the other case is the same request, and replays.
  if (typeof out.organizationId === 'string') out.organizationId = out.organizationId.toLowerCase();
  return out;
}

/**
 * Schema issues and our own checks together, so one 422 lists every problem of the body; checked (and
 * used) with its string fields trimmed, as Infisical's schema does.
 */
function checkBody<T>(validate: ValidateFunction<T>, raw: unknown): T {
  const { body, issues } = checkSchema(validate, raw);
  if (issues.length) throw validationFailure(issues);
  return body;
}

/** checkBody, but a body the schema accepts comes back with our own checks' issues, for the caller to throw. */
function checkSchema<T>(validate: ValidateFunction<T>, raw: unknown): { body: T; issues: ValidationIssue[] } {
  const body = trimmed(raw);
  if (validate(body)) return { body, issues: settingIssues(body, []) };
  const schemaIssues = issuesFromAjv(validate.errors);
  throw validationFailure([...schemaIssues, ...settingIssues(body, schemaIssues)]);
}

/** After validation, as Infisical does: a malformed body is a 422 even when it names someone else's org. */
async function authorize(db: Db, res: Response, orgId: string): Promise<string> {
  const tokenOrg = tokenOrgOf(res);
  const target = orgId.toLowerCase();
  if (await isSelfOrAncestor(db, tokenOrg, target)) return target;
  // The token's organization was deleted: the token is worth nothing anywhere (its holder is told, as a deleted
  // organization's API key is). Asked on this refusal's path only: a live organization's request costs no query more.
  if (await isDeletedOrganization(db, tokenOrg)) {
    throw unauthorized(`The access token is for organization ${tokenOrg}, which was deleted: it is not valid any more.`);
  }
  // The token's own organization, not (yet) in this region: created elsewhere with local_region and still
  // replicating, say. Saying so tells its holder nothing about other organizations; "bound to another
  // organization" was untrue and sent them looking for a wrong token.
  if (tokenOrg === target) {
    throw forbidden(
      `The organization ${target}, the one this access token is for, does not exist in this region: if it was just created in another region, it has not replicated here yet; retry shortly (create organizations with SlashID-Required-Consistency: all_regions to use them everywhere at once).`,
    );
  }
  // Said alike whether `target` exists or not (nothing told of other organizations), and with the one case its
  // holder can act on: a sub-organization created in another region moments ago ("bound to another
  // organization" sent a parent's token holder looking for another token instead of waiting).
  throw forbidden(
    `This access token is not valid for organization ${target}: it is for neither that organization nor one of its ancestors in this region. An organization created in another region moments ago may not have reached this one yet (a create with SlashID-Required-Consistency: all_regions answers once every region has it).`,
  );
}

/** Where an Infisical client follows a change with its own access token. */
export const CHANGES_PATH = '/replication/changes';
const followUp: FollowUp = (id) => `GET ${API_PREFIX}${CHANGES_PATH}/${id} (with your access token)`;
/** This dialect's bodies are the config itself: a replay's 408 carries the stored one in `details`. */
const storedConfig: StoredResult = (body) => body;

/**
 * A replay, or the 422 for a key reused with another body. That 422 is rendered here rather than by
 * infisicalErrors, which names every 422 `ValidationFailure` with a list of issues: this one is not a
 * problem of the body, and its own error name lets a client tell the two apart.
 */
function answerPrior(res: Response, prior: Prior): void {
  if (prior.kind === 'replay') return sendReplay(res, prior.response, prior.changeId);
  const body: InfisicalErrorBody = { reqId: getRequestId(res), statusCode: 422, message: prior.message, error: 'IdempotencyKeyReused' };
  res.status(422).json(body);
}

const respondConfig = (v: SsoConfigView) => ({ status: 200, body: v });
type Replay = Extract<Prior, { kind: 'replay' }>;

/**
 * A create body that only our own checks refuse now may be the retry of a request answered before, those
 * checks having changed their verdict since (its certificate has expired): with its Idempotency-Key, from a
 * caller authorized for the organization, it replays that answer (as a replay depends on no IdP, it depends
 * on no clock either). Otherwise the 422 stands, ahead of a 403 as for every refused body.
 */
async function replayDespite(db: Db, res: Response, key: string | null, body: CreateSsoConfigBody, issues: ValidationIssue[]): Promise<Replay> {
  const orgId = key === null ? null : await authorize(db, res, body.organizationId).catch(() => null);
  const prior = orgId === null ? null : await findPrior(db, idempotentCall(key, { orgId, endpoint: CREATE_ENDPOINT, body }, respondConfig));
  if (prior?.kind !== 'replay') throw validationFailure(issues);
  return prior;
}

/** The 404 of a path under /api outside /api/v1, in the words of /api/v1's own 404, naming the version served. */
const otherVersion: RequestHandler = (req) => {
  throw notFound(
    `Route ${req.method}:${requestPath(req).slice(0, 200)} not found. This service serves the Infisical-compatible API under ${API_PREFIX} only (POST, GET and PATCH ${API_PREFIX}${SSO_CONFIG_PATH}).`,
  );
};

export interface InfisicalRouteDeps {
  db: Db;
  repl: Replicator;
  /** The secrets whose access tokens are accepted, the signing one first (config.ts tokenSecrets). */
  tokenSecrets: readonly string[];
  log: Logger;
}

/** Infisical's /api/v1 paths. Everything under /api/v1, unknown paths included, answers in its error shape. */
export function infisicalRoutes({ db, repl, tokenSecrets, log }: InfisicalRouteDeps): Router {
  const api = Router();
  api.use(refuseUnstorableInput());
  // Authentication runs before the body is parsed: an anonymous caller learns nothing about the body rules.
  const auth = bearerAuth(tokenSecrets);

  api.post(SSO_CONFIG_PATH, auth, jsonBody(), async (req, res) => {
    const consistency = parseConsistency(req, startedAt(res));
    const key = parseIdempotencyKey(req);
    const { body, issues } = checkSchema(validateCreateSsoConfig, req.body);
    if (issues.length) {
      const replay = await replayDespite(db, res, key, body, issues);
      await awaitReplay(res, repl, consistency, replay, followUp, storedConfig);
      return answerPrior(res, replay);
    }
    const orgId = await authorize(db, res, body.organizationId);
    checkGroupSync(body);
    const idem = idempotentCall(key, { orgId, endpoint: CREATE_ENDPOINT, body }, respondConfig);
    const prior = await findPrior(db, idem);
    if (prior?.kind === 'replay') await awaitReplay(res, repl, consistency, prior, followUp, storedConfig);
    if (prior) return answerPrior(res, prior);
    const { value } = await writeWithConsistency(repl, consistency, () => createSamlConfig(repl, body, idem), doneValue, setChangeId(res), followUp);
    if (value.kind === 'replay') await awaitReplay(res, repl, consistency, value, followUp, storedConfig);
    if (value.kind !== 'done') return answerPrior(res, value);
    res.json(value.value);
  });

  api.get(SSO_CONFIG_PATH, auth, async (req, res) => {
    const query = trimmed(req.query);
    if (!validateGetSsoConfigQuery(query)) throw validationFailure(issuesFromAjv(validateGetSsoConfigQuery.errors));
    const orgId = await authorize(db, res, query.organizationId);
    const config = await findSamlConfig(db, orgId);
    if (!config) throw noSamlConfig(orgId);
    res.json(detailsFromModel(config));
  });

  api.patch(SSO_CONFIG_PATH, auth, jsonBody(), async (req, res) => {
    const consistency = parseConsistency(req, startedAt(res));
    const body = checkBody(validatePatchSsoConfig, req.body);
    await authorize(db, res, body.organizationId);
    const { value } = await writeWithConsistency(repl, consistency, () => patchSamlConfig(repl, body), (v) => v, setChangeId(res), followUp);
    res.json(value);
  });

  // A change of the token's organization or of one of its sub-organizations (whose configurations the
  // token may write: authorize): applied, superseded or pending per region.
  api.get(`${CHANGES_PATH}/:changeId`, auth, async (req, res) => {
    const changeId = String(req.params.changeId).toLowerCase();
    // The token's organization may have been deleted since it was issued: checked with the change's owner.
    const status = isUuid(changeId) ? await repl.changeStatus(changeId, followsChangesOf(db, tokenOrgOf(res).toLowerCase(), { live: false })) : null;
    if (!status) throw notFound(`Change ${shownId(String(req.params.changeId))} is not known for this organization or its sub-organizations (or its record has expired).`);
    res.json(status);
  });

  api.use((req) => {
    throw notFound(`Route ${req.method}:${requestPath(req).slice(0, 200)} not found.`);
  });
  api.use(infisicalErrors(log));

  const router = Router();
  router.use(API_PREFIX, routePrefix(), api);
  // Any other path under /api is this dialect's too: a client of it that names another version (/api/v2)
  // must get an error body it can parse, and be told which version this service serves.
  router.use(API_ROOT, refuseUnstorableInput(), otherVersion, infisicalErrors(log));
  return router;
}

/** The body is optional here (every field has a default); when there is one, it must be JSON. */
function optionalJsonBody(): RequestHandler {
  const parse = jsonBody();
  return (req, res, next) => (hasBody(req) ? parse(req, res, next) : next());
}

/** Admin call that issues access tokens for the Infisical dialect (mounted behind adminAuth). */
export function infisicalAdminRoutes({ db, tokenSigningSecret }: { db: Db; tokenSigningSecret: string }): Router {
  const router = Router();

  router.post('/admin/organizations/:id/access-tokens', optionalJsonBody(), async (req, res) => {
    const id = String(req.params.id);
    const org = isUuid(id) ? await findOrganization(db, id.toLowerCase()) : null;
    if (!org) throw notFound(`Organization ${shownId(id)} not found.`);
    // No body means the defaults; a JSON body must be the object (`null` included: it is not one).
    const body: unknown = hasBody(req) ? req.body : {};
    if (!validateIssueAccessToken(body)) {
      throw badRequest(`Invalid request body: ${describeErrors(validateIssueAccessToken.errors).join('; ')}.`);
    }
    const lifetime = body.expires_in_seconds ?? DEFAULT_TOKEN_LIFETIME_SECONDS;
    res.status(201).json(issueAccessToken(tokenSigningSecret, org.id, lifetime));
  });

  return router;
}
