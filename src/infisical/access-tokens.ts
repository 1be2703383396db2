/**
 * Access tokens of the Infisical dialect: HS256 JWTs bound to one organization (`sub`), signed with the
 * deployment-wide `tokenSigningSecret`, so a token issued by any region is accepted by every region
 * without a lookup; during a rotation, tokens of the `tokenAcceptedSecrets` are accepted too (the token's
 * `kid` picks the secret). They cannot be revoked before `exp`; keep lifetimes short. Every token names its
 * signing key (`kid`, derived from the secret) and has an `exp` at most MAX_TOKEN_LIFETIME_SECONDS after its
 * `iat`; a token without either is refused, whoever signed it.
 */
import crypto from 'node:crypto';
import type { RequestHandler, Response } from 'express';
import type { JwtPayload } from 'jsonwebtoken';
import { unauthorized } from '../http/errors';
import { sentOnce } from '../http/header-count';
import { isUuid } from '../http/validate';
import { jsonwebtoken as jwt } from '../on-first-use';
import { MAX_TOKEN_LIFETIME_SECONDS, type AccessTokenView } from './schema';

export const TOKEN_AUDIENCE = 'infisical-api';
export const TOKEN_ISSUER = 'saml-credential-service';

export function issueAccessToken(secret: string, orgId: string, expiresInSeconds: number, now = Date.now()): AccessTokenView {
  const iat = Math.floor(now / 1000);
  const exp = iat + expiresInSeconds;
  const token = jwt().sign({ sub: orgId, aud: TOKEN_AUDIENCE, iss: TOKEN_ISSUER, iat, exp }, secret, { algorithm: 'HS256', keyid: signingKeyId(secret) });
  return { access_token: token, token_type: 'Bearer', expires_at: new Date(exp * 1000).toISOString() };
}

/**
 * The key id in the header of the tokens `secret` signs: an HMAC of a fixed label, so it names the key (and
 * lets a rotation tell keys apart) without revealing anything about it.
 */
export function signingKeyId(secret: string): string {
  return crypto.createHmac('sha256', secret).update('access-token-signing-key').digest('base64url').slice(0, 16);
}

/**
 * The organization the token is bound to, or a 401 that says what is wrong with it. `secrets`: the signing
 * secret and any others still accepted (a rotation's); the token's `kid` picks which one checks it.
 */
/** How far in the future a token's issue time may lie: the clock difference tolerated between regions. */
export const ISSUED_AHEAD_SECONDS = 300;

export function verifyAccessToken(secrets: string | readonly string[], token: string): string {
  const list = typeof secrets === 'string' ? [secrets] : secrets;
  // The header is read unverified only to pick the key; a token naming no accepted key is checked against the
  // signing secret, so that what it is told (expired, malformed, no kid) does not depend on the kid it names.
  const named = decodedKid(token);
  const secret = list.find((s) => named !== undefined && signingKeyId(s) === named) ?? list[0] ?? '';
  let payload: string | JwtPayload;
  let kid: string | undefined;
  try {
    // Pinning the algorithm keeps "alg: none" and algorithm-confusion tokens out.
    const decoded = jwt().verify(token, secret, { algorithms: ['HS256'], audience: TOKEN_AUDIENCE, issuer: TOKEN_ISSUER, complete: true });
    payload = decoded.payload;
    kid = decoded.header.kid;
  } catch (err) {
    if (err instanceof jwt().TokenExpiredError) {
      throw unauthorized(`The access token expired at ${err.expiredAt.toISOString()}; issue a new one.`);
    }
    throw unauthorized('The access token is not valid: it is malformed, not signed by this service, or not meant for this API.');
  }
  if (typeof payload === 'string') throw unauthorized('The access token is not valid: its payload is not a set of claims.');
  if (kid !== signingKeyId(secret)) throw unauthorized('The access token is not valid: it does not name the key it is signed with (kid).');
  const { exp, iat } = payload;
  if (typeof exp !== 'number' || typeof iat !== 'number') {
    throw unauthorized('The access token is not valid: it has no expiry (exp) or issue time (iat); every token must expire.');
  }
  if (exp - iat > MAX_TOKEN_LIFETIME_SECONDS) {
    throw unauthorized(`The access token is not valid: its lifetime is longer than the ${MAX_TOKEN_LIFETIME_SECONDS} s allowed.`);
  }
  // The lifetime above is measured from the token's own iat: one dated in the future would outlive the bound
  // (and a rotation's window) by as much (a helper's review). This service dates its tokens now; the regions'
  // clocks may differ by a little.
  if (iat > Date.now() / 1000 + ISSUED_AHEAD_SECONDS) {
    throw unauthorized('The access token is not valid: its issue time (iat) is in the future.');
  }
  const sub = payload.sub;
  if (typeof sub !== 'string' || !isUuid(sub)) throw unauthorized('The access token does not name an organization.');
  return sub.toLowerCase();
}

function decodedKid(token: string): unknown {
  try {
    return jwt().decode(token, { complete: true })?.header.kid;
  } catch {
    return undefined;
  }
}

/** `Authorization: Bearer <access token>`; stores the token's organization for the handler. */
export function bearerAuth(secrets: readonly string[]): RequestHandler {
  return (req, res, next) => {
    const header = req.get('authorization');
    if (!header) throw unauthorized('Missing Authorization header: send Authorization: Bearer <access token>.');
    // Node keeps the first of two; a proxy in front may have checked the other. Which one counted is not known.
    sentOnce(req, 'authorization', unauthorized, 'The Authorization header', ', with one access token');
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m?.[1]) throw unauthorized('The Authorization header must be "Bearer <access token>".');
    res.locals.tokenOrgId = verifyAccessToken(secrets, m[1]);
    next();
  };
}

export function tokenOrgOf(res: Response): string {
  const id: unknown = res.locals.tokenOrgId;
  if (typeof id !== 'string') throw new Error('bearerAuth did not run before this handler');
  return id;
}
