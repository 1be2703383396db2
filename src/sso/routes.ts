import express, { Router, type Request, type RequestHandler } from 'express';
import { tokenSecrets } from '../config';
import { receivingOutsideAdmission } from '../http/admission';
import { jsonBody } from '../http/body';
import { AppError, badRequest, notFound } from '../http/errors';
import { getRequestId, startedAt } from '../http/request-id';
import { refuseUnstorableInput } from '../http/storable-text';
import { envelope } from '../http/slashid';
import { describeErrors, isUuid, shownId } from '../http/validate';
import { orgIdOf, slashidAuth } from '../organizations/slashid-auth';
import { CREDENTIALS_PATH } from '../provider-credentials/routes';
import { findCredential } from '../provider-credentials/store';
import { credentialNotFound } from '../provider-credentials/service';
import { parseConsistency, setChangeId, writeWithConsistency } from '../replication/consistency';
import type { Logger } from '../logger';
import type { Replicator } from '../replication/replicator';
import { formCharset, UNSUPPORTED_FORM_CHARSET } from './form-charset';
import { refused, SamlRefusal } from './refusal';
import { consumeResponse, spMetadata, startLogin, type SsoDeps } from './service';
import { MAX_IDP_RELAY_STATE, MAX_RELAY_STATE, validateAcsForm, validateLoginQuery, validateSettingsBody, type SettingsView } from './schema';
import { patchSettings } from './settings';
import { SSO_PATH } from './sp';
import { ssoTokenKey } from './token-key';
import { routePrefix } from '../observability/metrics';

function credentialId(req: Request): string {
  const id = String(req.params.id);
  if (!isUuid(id)) throw notFound(`SAML provider credentials ${shownId(id)} not found.`);
  return id.toLowerCase();
}

// A posted SAMLResponse is base64 of a signed XML document: tens of KiB, rarely more. The XML may be 256 KiB
// (RESPONSE_LIMITS); its base64, form-encoded, is ~360 KB.
const formParser = express.urlencoded({ extended: false, limit: '512kb', parameterLimit: 20 });
// Received without an admission slot when it trickles in (receivingOutsideAdmission): the ACS takes no
// credentials, and slow forms held the region's write slots.
const receiveForm = receivingOutsideAdmission(formParser);
const form: RequestHandler = (req, res, next) => receiveForm(req, res, (err?: unknown) => (err === undefined || err === null ? next() : next(formRefusal(err))));

/**
 * The form parser's refusals as the ACS's own (every ACS refusal starts "Sign-in refused:" and says what to
 * do); the shared error mapping speaks of JSON bodies. Errors of our own (the admission's) pass unchanged.
 */
function formRefusal(err: unknown): unknown {
  if (err instanceof AppError || typeof err !== 'object' || err === null) return err;
  const { type, status } = err as { type?: unknown; status?: unknown };
  // 413 here (the API routes answer an oversized JSON body 400): the ACS documents its size limits.
  if (type === 'entity.too.large') return refused(413, 'the posted form is over 512 KB (a SAML response is a few KiB); post the IdP\'s response unchanged.');
  if (type === 'charset.unsupported') return refused(400, UNSUPPORTED_FORM_CHARSET);
  if (type === 'encoding.unsupported') return refused(400, 'the form\'s Content-Encoding is not one this service reads (gzip, deflate, br, or none); post the IdP\'s response unchanged.');
  // An IdP's form has two fields (SAMLResponse, RelayState); the parser stops at 20.
  if (type === 'parameters.too.many') return refused(400, 'the form has more than 20 fields; the IdP posts SAMLResponse (and RelayState) only.');
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return refused(400, 'the posted form could not be read (cut off, or not compressed as its Content-Encoding says); post the IdP\'s response unchanged.');
  }
  return err;
}

/**
 * The SAML SP endpoints (browsers and IdPs call them, so they take no API key), and the credential's SSO
 * settings (the organization's, behind its API key, in the SlashID dialect).
 */
export function ssoRoutes(deps: SsoDeps & { repl: Replicator; log: Logger }): Router {
  const router = Router();
  const { db, repl } = deps;
  const settingsPath = `${CREDENTIALS_PATH}/:id/sso-settings`;
  router.use(SSO_PATH, routePrefix(), refuseUnstorableInput());

  router.get(settingsPath, slashidAuth(db), async (req, res) => {
    const id = credentialId(req);
    if (!(await findCredential(db, orgIdOf(res), id))) throw credentialNotFound(id);
    const row = await db.samlSsoSettings.findUnique({ where: { credentialId: id } });
    // A tombstone: the credential's delete is on its way here (see patchSettings).
    if (row?.deletedAt) throw credentialNotFound(id);
    const view: SettingsView = { credential_id: id, allow_idp_initiated: row?.allowIdpInitiated ?? false };
    res.json(envelope(view));
  });

  router.patch(settingsPath, slashidAuth(db), jsonBody(), async (req, res) => {
    const consistency = parseConsistency(req, startedAt(res));
    const id = credentialId(req);
    if (!validateSettingsBody(req.body)) throw badRequest(`Invalid request body: ${describeErrors(validateSettingsBody.errors).join('; ')}.`);
    const body = req.body;
    const { value } = await writeWithConsistency(repl, consistency, () => patchSettings(repl, orgIdOf(res), id, body), () => undefined, setChangeId(res));
    res.json(envelope(value));
  });

  // The public keys of the SSO tokens (an application checks a sign-in's token with them; no secret needed):
  // the signing key first, then those of the secrets still accepted (a rotation's old or next key).
  router.get(`${SSO_PATH}/jwks.json`, (_req, res) => {
    res.setHeader('Cache-Control', 'public, max-age=3600');
    res.json({ keys: tokenSecrets(deps.config).map((s) => ssoTokenKey(s).jwk) });
  });

  router.get(`${SSO_PATH}/:id/metadata`, async (req, res) => {
    const xml = await spMetadata(deps, credentialId(req));
    res.type('application/samlmetadata+xml').send(xml);
  });

  router.get(`${SSO_PATH}/:id/login`, async (req, res) => {
    const id = credentialId(req);
    if (!validateLoginQuery(req.query)) {
      throw badRequest(`Invalid query: ${describeErrors(validateLoginQuery.errors).join('; ')}; relay_state is optional (leave it out for none) and, when given, 1 to ${MAX_RELAY_STATE} printable ASCII characters.`);
    }
    const start = await startLogin(deps, id, req.query.relay_state ?? null);
    if (start.kind === 'redirect') return res.redirect(302, start.location);
    res.setHeader('Content-Security-Policy', `default-src 'none'; script-src 'nonce-${start.nonce}'; form-action ${start.idpOrigin}`);
    res.type('html').send(start.html);
  });

  router.post(`${SSO_PATH}/:id/acs`, (req, _res, next) => {
    if (!req.is('application/x-www-form-urlencoded')) {
      return next(refused(400, 'the IdP must post the SAML response as an HTML form (application/x-www-form-urlencoded) with a SAMLResponse field.'));
    }
    next();
  }, formCharset(), form, async (req, res) => {
    const id = credentialId(req);
    if (!validateAcsForm(req.body)) {
      throw refused(400, `invalid form: ${describeErrors(validateAcsForm.errors).join('; ')}; the IdP posts SAMLResponse (and RelayState: printable ASCII, at most ${MAX_IDP_RELAY_STATE} characters).`);
    }
    // Every outcome is logged: the refusal's reason reaches the browser, and operators need it too.
    const audit = { requestId: getRequestId(res), credentialId: id };
    const signIn = await consumeResponse(deps, id, req.body.SAMLResponse, req.body.RelayState || null).catch((err: unknown) => {
      // node-saml's own wording (never sent to the client) helps tell its refusals apart.
      const library = err instanceof SamlRefusal && err.libraryReason ? { libraryReason: err.libraryReason } : {};
      if (err instanceof AppError) deps.log.info({ ...audit, status: err.status, reason: err.message, ...library }, 'saml sign-in refused');
      throw err;
    });
    const { result, token } = signIn;
    deps.log.info({ ...audit, orgId: result.org_id, nameId: result.name_id }, 'saml sign-in');
    res.json({ meta: {}, errors: [], result, token });
  });

  return router;
}
