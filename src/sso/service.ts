/**
 * SAML single sign-on with a stored credential: SP metadata, starting a login, and consuming the IdP's
 * response into a short-lived session token. Any region serves any credential it has replicated.
 */
import crypto from 'node:crypto';
import { tokenSecrets, type Config } from '../config';
import type { Db } from '../db/client';
import { AppError, notFound } from '../http/errors';
import { TOKEN_ISSUER } from '../infisical/access-tokens';
import { ssoTokenKey } from './token-key';
import { skewMsOf, validationTime, type StoredMetadata } from '../provider-credentials/metadata';
import { findMetadata } from '../provider-credentials/store';
import { isCurrentModel } from '../provider-credentials/trust';
import type { Redis } from '../redis';
import { emailOf } from './email';
import { expiredMetadataProblem } from './metadata-expiry';
import { NO_DEPARTURES } from '../replication/departures';
import type { Replicator } from '../replication/replicator';
import { refused } from './refusal';
import { notStarted, parseResponse, validateResponse } from './response';
import type { SsoResult } from './schema';
import { isAllowedSignOnUrl, plainHttpSignOnProblem } from '../metadata';
import { isHttpUrl } from '../metadata/parse-metadata';
import { acsUrl, pickSsoService, postForm, serviceProvider, spEntityId, spMetadataXml } from './sp';
import { jsonwebtoken as jwt } from '../on-first-use';
import { alreadyUsed, findCredentialById, findSettings, firstUse, MAX_REPLAY_TTL_MS, RequestCache, RequestIds, ssoKeys } from './store';

export const SSO_TOKEN_AUDIENCE = 'saml-sso';
export const SSO_TOKEN_LIFETIME_SECONDS = 300;
/** The least of the IdP's session a sign-in needs: the token's exp, whole seconds down, then follows its iat. */
const MIN_TOKEN_MS = 1000;

export interface SsoDeps {
  db: Db;
  redis: Redis;
  config: Pick<
    Config,
    'region' | 'regions' | 'redisKeyPrefix' | 'samlClockSkewSeconds' | 'tokenSigningSecret' | 'tokenAcceptedSecrets' | 'metadataAllowedHosts' | 'metadataValidationTime'
  >;
  /** Which regions left the deployment (whether this region refreshes an adopted credential); none without it. */
  repl?: Pick<Replicator, 'departures'>;
}

/** The login request ids of credential `id` in this region (store.ts). */
const requestIds = (deps: SsoDeps, id: string) => new RequestIds(tokenSecrets(deps.config), deps.config.region.id, id);

async function loadCredential(deps: SsoDeps, id: string) {
  const credential = await findCredentialById(deps.db, id);
  if (credential?.deletedAt) throw notFound(`SAML provider credentials ${id} was deleted.`);
  if (!credential) {
    throw notFound(`SAML provider credentials ${id} not found in this region (a credential created in another region moments ago may not have arrived yet).`);
  }
  const row = await findMetadata(deps.db, id);
  // A document fetched for a URL the credential no longer has, or under an earlier trust setting (the owner
  // has pinned other certificates since), is not trusted: the home region fetches it again.
  if (!row || !isCurrentModel(credential, row)) {
    throw new AppError(503, 'metadata_unavailable', `The IdP metadata of credential ${id} is not available in this region yet; try again in a moment.`);
  }
  return { credential, metadata: row.metadata as unknown as StoredMetadata };
}

/**
 * loadCredential, for a sign-in: metadata past its validUntil is not relied on (metadata-expiry.ts), a 409 in the
 * form of the endpoint's refusals (`refusal`: the login's or the ACS's).
 */
async function signInCredential(deps: SsoDeps, id: string, refusal: (problem: string) => AppError) {
  const loaded = await loadCredential(deps, id);
  const here = { region: deps.config.region.id, departures: async () => (deps.repl ? deps.repl.departures() : NO_DEPARTURES) };
  const expired = await expiredMetadataProblem(deps.db, deps.config, here, id, loaded.credential, loaded.metadata);
  if (expired !== null) throw refusal(expired);
  return loaded;
}

export async function spMetadata(deps: SsoDeps, id: string): Promise<string> {
  await loadCredential(deps, id);
  return spMetadataXml(id, deps.config.region, deps.config.regions);
}

export type LoginStart = { kind: 'redirect'; location: string } | { kind: 'post'; html: string; nonce: string; idpOrigin: string };

export async function startLogin(deps: SsoDeps, id: string, relayState: string | null): Promise<LoginStart> {
  const { metadata } = await signInCredential(deps, id, (problem) => new AppError(409, 'idp_metadata_expired', `Credential ${id} cannot be used to sign in: ${problem}`));
  // Metadata stored before the parser checked hosts (parse-metadata.ts) may list an endpoint whose host is
  // not a host name or an IP address: its origin would go into a header. Such an endpoint is not used; nor
  // is a plain http one the deployment does not allow (stored before that was checked, or allowed no longer).
  const listed = metadata.sso_services.filter((s) => isHttpUrl(s.location));
  const service = pickSsoService(listed.filter((s) => isAllowedSignOnUrl(s.location, deps.config.metadataAllowedHosts ?? [])));
  if (!service && listed.length > 0) {
    throw new AppError(409, 'no_sso_service', `Credential ${id} cannot be used to sign in: ${plainHttpSignOnProblem(metadata.entity_id, listed.map((s) => s.location))}`);
  }
  if (!service) {
    throw new AppError(409, 'no_sso_service', `The IdP of credential ${id} has no usable HTTP-Redirect or HTTP-POST sign-on endpoint (an http(s) URL whose host is a host name or an IP address); fix its metadata.`);
  }
  const postBinding = !service.binding.endsWith(':HTTP-Redirect');
  const ids = requestIds(deps, id);
  const sp = serviceProvider({
    entityId: spEntityId(id),
    acsUrl: acsUrl(deps.config.region, id),
    idpCertificates: metadata.signing_certificates.map((c) => c.pem),
    // Nothing is stored as a login starts: its request id carries its time and relay state (store.ts).
    requests: new RequestCache(deps.redis, ssoKeys(deps.config.redisKeyPrefix, deps.config.region.id), id, ids),
    requestId: () => ids.issue(relayState),
    ssoUrl: service.location,
    postBinding,
  });
  if (!postBinding) return { kind: 'redirect', location: await sp.getAuthorizeUrlAsync(relayState ?? '', undefined, {}) };
  const message = await sp.getAuthorizeMessageAsync(relayState ?? '');
  const fields = Object.fromEntries(Object.entries(message).filter(([, v]) => typeof v === 'string' && v !== '').map(([k, v]) => [k, String(v)]));
  const nonce = crypto.randomBytes(16).toString('base64');
  return { kind: 'post', html: postForm(service.location, fields, nonce), nonce, idpOrigin: new URL(service.location).origin };
}

const LATIN1_NAMES = new Set(['iso-8859-1', 'iso8859-1', 'iso_8859-1', 'latin1', 'us-ascii', 'ascii']);

/**
 * The posted XML as text: UTF-8, or ISO-8859-1 when its XML declaration says so (some IdPs write that).
 * The signature covers the characters, so an accented name read in the wrong encoding would fail the signature.
 */
function decodeBase64Xml(encoded: string): string {
  const compact = encoded.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(compact)) throw refused(400, 'SAMLResponse is not base64; post the IdP\'s form field unchanged.');
  const bytes = Buffer.from(compact, 'base64');
  const declared = /^<\?xml\s[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]{1,40})["']/.exec(bytes.subarray(0, 200).toString('latin1'))?.[1]?.toLowerCase();
  // Any other encoding is read as UTF-8, as before: right for ASCII, and a signature over anything else fails.
  return bytes.toString(declared !== undefined && LATIN1_NAMES.has(declared) ? 'latin1' : 'utf8');
}

const replayed = () => refused(401, 'this assertion was already used to sign in (each is accepted once); sign in again.');

export interface SignIn {
  result: SsoResult;
  token: string;
}

/**
 * Validates a posted SAMLResponse. The relay state returned is the one the login was started with: the posted
 * RelayState (not signed) when the login's request id vouches for it, else none; for IdP-initiated sign-in,
 * where there is no login, the posted one.
 */
export async function consumeResponse(deps: SsoDeps, id: string, samlResponse: string, postedRelayState: string | null): Promise<SignIn> {
  // Before the response is read: a credential that cannot be used now refuses any response alike.
  const { credential, metadata } = await signInCredential(deps, id, (problem) => refused(409, problem));
  const { config } = deps;
  const keys = ssoKeys(config.redisKeyPrefix, config.region.id);
  const posted = parseResponse(decodeBase64Xml(samlResponse));
  const skewMs = skewMsOf(config);
  // Before node-saml takes the request it answers, so that a replay is refused as such. The id read here is
  // not verified yet: it can only lead to this refusal, for an id that was accepted from this IdP before.
  if (posted.assertionId && (await alreadyUsed(deps.redis, keys, id, metadata.entity_id, posted.assertionId))) throw replayed();
  const requests = new RequestCache(deps.redis, keys, id, requestIds(deps, id));
  const assertion = await validateResponse(posted, {
    idpEntityId: metadata.entity_id,
    spEntityId: spEntityId(id),
    acsUrl: acsUrl(config.region, id),
    certificates: metadata.signing_certificates,
    certificatesAt: validationTime(config),
    skewMs,
    requests,
  });
  if (assertion.inResponseTo === null && !(await findSettings(deps.db, id))?.allowIdpInitiated) {
    throw refused(
      403,
      `the response answers no login started by this service (IdP-initiated sign-in), which is not enabled for this credential; ` +
        `start the sign-in at ${acsUrl(config.region, id).replace(/acs$/, 'login')}, or enable allow_idp_initiated in the credential's sso-settings.`,
    );
  }
  // A response answering no request is refused a second time only while its assertion id is remembered
  // (MAX_REPLAY_TTL_MS): one usable for longer could be replayed once that is over.
  if (assertion.inResponseTo === null && assertion.usableUntil - Date.now() > MAX_REPLAY_TTL_MS) {
    throw refused(
      401,
      `the assertion stays usable until ${new Date(assertion.usableUntil).toISOString()}, more than ${MAX_REPLAY_TTL_MS / 3600_000} h from now: ` +
        `an IdP-initiated response must expire within that time (its replays are refused that long); shorten the assertion lifetime in the IdP.`,
    );
  }
  // The session's end on this service's clock may be up to the skew later than the IdP's (the rule that
  // accepted the assertion): a session accepted within the skew of its end gets a token for what is left of it.
  const sessionEnd = assertion.sessionEnd === null ? null : assertion.sessionEnd + skewMs;
  const now = Date.now();
  // Less than a second left: the token, in whole seconds down, would expire as it is issued (exp == iat).
  // Refused before the assertion and the login are used up; the user's session at the IdP is over.
  if (sessionEnd !== null && sessionEnd - now < MIN_TOKEN_MS) {
    throw refused(
      401,
      `the user's session at the IdP ends at ${new Date(sessionEnd - skewMs).toISOString()} (the AuthnStatement's SessionNotOnOrAfter): less than a second is left of it, ` +
        `with the ${skewMs / 1000} s clock skew allowed, too little for a sign-in token; sign in again at the IdP (check that the IdP's and this service's clocks are right).`,
    );
  }
  if (!(await firstUse(deps.redis, keys, id, metadata.entity_id, assertion.assertionId, assertion.usableUntil - now))) throw replayed();
  let relayState = postedRelayState;
  if (assertion.inResponseTo !== null) {
    // node-saml found the request outstanding; taking it makes "answered once" atomic across responses.
    const request = await requests.take(assertion.inResponseTo, postedRelayState);
    if (request === null) throw notStarted();
    relayState = request.relayState;
  }
  const email = emailOf(assertion, credential.emailClaims);
  if ('problem' in email) throw refused(422, email.problem);
  const result: SsoResult = {
    org_id: credential.orgId,
    credential_id: id,
    email: email.email,
    name_id: assertion.nameId,
    session_index: assertion.sessionIndex,
    attributes: assertion.attributes,
    relay_state: relayState,
  };
  return { result, token: issueSsoToken(config.tokenSigningSecret, result, now, sessionEnd) };
}

/**
 * A short-lived ES256 JWT for the org and user, signed with the key derived from the token secret
 * (token-key.ts) and checked with its public half (GET /sso/saml/jwks.json). Its own audience; the
 * Infisical API takes HS256 tokens of its own audience only. It expires after SSO_TOKEN_LIFETIME_SECONDS, or
 * when the user's session at the IdP ends (`sessionEnd`, the AuthnStatement's SessionNotOnOrAfter plus the
 * clock skew allowed, in ms) if that is sooner: the IdP says the user is no longer signed in there from then on.
 */
export function issueSsoToken(secret: string, r: SsoResult, now = Date.now(), sessionEnd: number | null = null): string {
  const iat = Math.floor(now / 1000);
  // Whole seconds down: "on or after" SessionNotOnOrAfter the session is over, as the token is from exp on.
  const exp = Math.min(iat + SSO_TOKEN_LIFETIME_SECONDS, sessionEnd === null ? Infinity : Math.floor(sessionEnd / 1000));
  const claims = {
    iss: TOKEN_ISSUER,
    aud: SSO_TOKEN_AUDIENCE,
    sub: r.email,
    org_id: r.org_id,
    credential_id: r.credential_id,
    name_id: r.name_id,
    session_index: r.session_index,
    iat,
    exp,
  };
  const key = ssoTokenKey(secret);
  return jwt().sign(claims, key.privateKey, { algorithm: 'ES256', keyid: key.kid });
}
