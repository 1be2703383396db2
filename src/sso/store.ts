/**
 * What a login has to remember between its start and the IdP's answer, and the replay cache. A login's
 * request id carries what it needs (RequestIds), so starting one stores nothing; once answered, it is
 * recorded in the region's Redis, as accepted assertion ids are, with a TTL: expiry needs no cleanup job,
 * SET NX makes "answered once" and "accepted once" atomic, and nothing here needs to survive longer than a
 * login or an assertion. A request id is bound to its region and credential: only the region that started
 * a login accepts its answer (its ACS URL is the one the request named). The replay cache is the region's
 * too (with a Redis per region, per region): an
 * assertion is accepted once in a region, and only in one region, since its Recipient must be that
 * region's ACS URL (response.ts). An IdP-initiated one usable longer than MAX_REPLAY_TTL_MS is refused
 * (service.ts): it could be replayed once its id is forgotten.
 */
import crypto from 'node:crypto';
import type { CacheItem, CacheProvider } from '@node-saml/node-saml';
import type { Db } from '../db/client';
import { AppError } from '../http/errors';
import { credentialsTable } from '../provider-credentials/store';
import type { Redis } from '../redis';
import { defineTable } from '../replication/tables';

/**
 * Per-credential SSO options (replicated). Part of the credential: its delete tombstones them in the same
 * change (the provider-credentials feature knows nothing of this one; the declaration is enough).
 */
export const settingsTable = defineTable('saml_sso_settings', 'credential_id', {
  partOf: {
    table: credentialsTable,
    tombstone: (s, deletedAt) => ({ credential_id: s.credential_id, org_id: s.org_id, allow_idp_initiated: false, created_at: s.created_at, deleted_at: deletedAt }),
  },
});

/** How long a started login waits for the IdP's answer (the user may need to type a password and pass MFA). */
export const REQUEST_TTL_SECONDS = 600;
/** Bounds how long an assertion id is kept, whatever NotOnOrAfter the IdP chose. */
export const MAX_REPLAY_TTL_MS = 24 * 3600 * 1000;

const assertionHash = (issuer: string, id: string) => crypto.createHash('sha256').update(`${issuer}\0${id}`).digest('hex');

export function ssoKeys(prefix: string, region: string) {
  return {
    /** A login answered (its request id is this service's own, see RequestIds): written once it signed in. */
    answered: (credentialId: string, id: string) => `${prefix}sso:${region}:answered:${credentialId}:${id}`,
    // Per credential (an assertion is addressed to one: its audience and Recipient), so that another
    // organization's IdP claiming the same entity ID cannot mark this IdP's assertion ids as used. Hashed:
    // the id is the IdP's text, of any length.
    assertion: (credentialId: string, issuer: string, id: string) => `${prefix}sso:assertion:${credentialId}:${assertionHash(issuer, id)}`,
    /** The key of versions before 2026-12-02 (issuer and id only), read for a day after an upgrade. */
    legacyAssertion: (issuer: string, id: string) => `${prefix}sso:assertion:${assertionHash(issuer, id)}`,
  };
}
export type SsoKeys = ReturnType<typeof ssoKeys>;

async function orUnavailable<T>(op: Promise<T>): Promise<T> {
  try {
    return await op;
  } catch {
    // Fail closed: without the request store and the replay cache no response can be judged.
    throw new AppError(503, 'sso_unavailable', 'Single sign-on is unavailable for a moment (its session store cannot be reached); try again shortly.', { retryAfterSeconds: 2 });
  }
}

/**
 * Login request ids that carry what a login has to remember, so that starting one stores nothing: the login
 * endpoint takes no credentials, and a record per request (600 s in Redis) let anyone fill the Redis that
 * replication shares (a helper's review: ~1,850 records in 5 s from one client). An id is `_r1` and, in
 * base64url: the time it was issued (ms, 6 bytes), a nonce (10), a tag of the relay state (8: the first bytes
 * of an HMAC of it; zeros for none), and an HMAC (16) of those with the region and the credential. The key
 * is derived from TOKEN_SIGNING_SECRET (HKDF), and the keys of TOKEN_ACCEPTED_SECRETS are accepted, so a
 * rotation of the secret does not refuse the logins under way. Only what a login needs to be answered once
 * is written: after a response to it was accepted (signed by the IdP), so nobody can write it unauthenticated.
 */
export class RequestIds {
  private readonly keys: Buffer[];

  constructor(
    secrets: readonly string[],
    private readonly region: string,
    private readonly credentialId: string,
  ) {
    this.keys = secrets.map(requestIdKey);
  }

  /** A new request id for a login with `relayState`. */
  issue(relayState: string | null, now = Date.now()): string {
    const key = this.keys[0] as Buffer;
    const body = Buffer.alloc(BODY_BYTES);
    body.writeUIntBE(now, 0, TIME_BYTES);
    crypto.randomFillSync(body, NONCE_AT, NONCE_BYTES);
    relayTag(key, relayState).copy(body, TAG_AT);
    return ID_PREFIX + Buffer.concat([body, this.mac(key, body)]).toString('base64url');
  }

  /**
   * What an id of this service says (null: not one, or not this region's and credential's, or altered). Only
   * the one spelling issue() writes is read: Node's decoder also takes `+` and `/`, and ignores the unused
   * bits of the last character, so other strings decode to the same bytes, and each would be answered once
   * (the answered record is keyed by the string; a review reproduced three sign-ins with one login).
   */
  read(id: string): { issuedAt: number; relayState: (posted: string | null) => string | null } | null {
    if (!id.startsWith(ID_PREFIX) || id.length !== ID_LENGTH) return null;
    const encoded = id.slice(ID_PREFIX.length);
    const raw = Buffer.from(encoded, 'base64url');
    if (raw.length !== BODY_BYTES + MAC_BYTES || raw.toString('base64url') !== encoded) return null;
    const body = raw.subarray(0, BODY_BYTES);
    const mac = raw.subarray(BODY_BYTES);
    const key = this.keys.find((k) => crypto.timingSafeEqual(this.mac(k, body), mac));
    if (!key) return null;
    const tag = body.subarray(TAG_AT, BODY_BYTES);
    return {
      issuedAt: body.readUIntBE(0, TIME_BYTES),
      // The IdP returns the RelayState it was sent (SAML bindings); one that is not the login's is none.
      relayState: (posted) => (posted !== null && crypto.timingSafeEqual(relayTag(key, posted), tag) ? posted : null),
    };
  }

  private mac(key: Buffer, body: Buffer): Buffer {
    return crypto.createHmac('sha256', key).update(`request\0${this.region}\0${this.credentialId}\0`).update(body).digest().subarray(0, MAC_BYTES);
  }
}

const ID_PREFIX = '_r1';
// The body: issue time, nonce, relay-state tag; then the MAC over it.
const TIME_BYTES = 6;
const NONCE_BYTES = 10;
const TAG_BYTES = 8;
const NONCE_AT = TIME_BYTES;
const TAG_AT = NONCE_AT + NONCE_BYTES;
const BODY_BYTES = TAG_AT + TAG_BYTES;
const MAC_BYTES = 16;
const ID_LENGTH = ID_PREFIX.length + Math.ceil(((BODY_BYTES + MAC_BYTES) * 4) / 3);

const idKeys = new Map<string, Buffer>();
function requestIdKey(secret: string): Buffer {
  let key = idKeys.get(secret);
  if (!key) idKeys.set(secret, (key = Buffer.from(crypto.hkdfSync('sha256', secret, 'saml-credential-service', 'sso-request-id', 32))));
  return key;
}

function relayTag(key: Buffer, relayState: string | null): Buffer {
  if (relayState === null) return Buffer.alloc(TAG_BYTES);
  return crypto.createHmac('sha256', key).update(`relay\0${relayState}`).digest().subarray(0, TAG_BYTES);
}

/**
 * node-saml's cache provider for the logins of one credential in this region. It saves nothing (the request
 * id carries what a login needs, see RequestIds), and looks up the InResponseTo of each response: an id of
 * this region's and credential's, not older than REQUEST_TTL_SECONDS, not answered yet. node-saml also
 * removes a request after any response to it, even one it refused; here a refused response does not cancel
 * the user's login (a forged post would), so the answer is recorded by take(), once a response was accepted:
 * SET NX, so that of two responses to one request only one signs in. Only the ids of RequestIds are logins:
 * the records versions before 2026-12-04 stored in Redis as a login started (600 s each) are not read, so a
 * record planted there cannot pass a response by the checks of IdP-initiated sign-in, nor fail one (docs/sso.md, State).
 */
export class RequestCache implements CacheProvider {
  constructor(
    private readonly redis: Redis,
    private readonly keys: SsoKeys,
    private readonly credentialId: string,
    private readonly ids: RequestIds,
  ) {}

  async saveAsync(_id: string, createdAt: string): Promise<CacheItem> {
    return { value: createdAt, createdAt: Date.now() };
  }

  async getAsync(id: string): Promise<string | null> {
    const ours = this.ids.read(id);
    if (!ours || !live(ours.issuedAt)) return null;
    const answered = await orUnavailable(this.redis.exists(this.keys.answered(this.credentialId, id)));
    return answered ? null : new Date(ours.issuedAt).toISOString();
  }

  async removeAsync(): Promise<string | null> {
    return null;
  }

  /**
   * Records login `id` answered (null: it was already, or is not outstanding) and gives its relay state:
   * `posted` when it is the one the login was started with, else none.
   */
  async take(id: string, posted: string | null): Promise<{ relayState: string | null } | null> {
    const ours = this.ids.read(id);
    if (!ours || !live(ours.issuedAt)) return null;
    const left = ours.issuedAt + REQUEST_TTL_SECONDS * 1000 - Date.now();
    // Kept as long as the id could be answered, and as long again: should this host's clock step back
    // (live() reads it; Redis's expiry does not), the id must not outlive its record.
    const first = await orUnavailable(this.redis.set(this.keys.answered(this.credentialId, id), '1', 'PX', Math.ceil(left) + REQUEST_TTL_SECONDS * 1000, 'NX'));
    return first === 'OK' ? { relayState: ours.relayState(posted) } : null;
  }
}

/** Whether a login issued at `issuedAt` may still be answered (an id from the future is a clock's fault: a minute). */
function live(issuedAt: number, now = Date.now()): boolean {
  return issuedAt <= now + 60_000 && now - issuedAt < REQUEST_TTL_SECONDS * 1000;
}

/** Whether an assertion id was already accepted (before validating a response: a replay is named as such). */
export async function alreadyUsed(redis: Redis, keys: SsoKeys, credentialId: string, issuer: string, assertionId: string): Promise<boolean> {
  return (await orUnavailable(redis.exists(keys.assertion(credentialId, issuer, assertionId), keys.legacyAssertion(issuer, assertionId)))) > 0;
}

/** True the first time an assertion is seen; it is remembered until it could no longer be used. */
export async function firstUse(redis: Redis, keys: SsoKeys, credentialId: string, issuer: string, assertionId: string, ttlMs: number): Promise<boolean> {
  const ttl = Math.max(1000, Math.min(MAX_REPLAY_TTL_MS, Math.ceil(ttlMs)));
  return (await orUnavailable(redis.set(keys.assertion(credentialId, issuer, assertionId), '1', 'PX', ttl, 'NX'))) === 'OK';
}

/** What a sign-in reads of a credential (findCredentialById). */
export interface SignInCredential {
  orgId: string;
  idpMetadataUrl: string;
  idpTrust: unknown;
  emailClaims: string[];
  deletedAt: Date | null;
  /** The region that refreshes its metadata (unless it was removed from the deployment: then an adopter). */
  homeRegion: string;
}

/**
 * The credential, or its tombstone (deletedAt set) while the region keeps it; null when there is neither, or
 * its organization is not live here (deleted: a credential its delete's change did not take, or one written in
 * another region before the delete reached it, is no one's). The organization is checked in the same query.
 */
export async function findCredentialById(db: Db, id: string): Promise<SignInCredential | null> {
  const rows = await db.$queryRawUnsafe<SignInCredential[]>(
    `SELECT c.org_id::text AS "orgId", c.idp_metadata_url AS "idpMetadataUrl", c.idp_trust AS "idpTrust",
            COALESCE(c.email_claims, '{}') AS "emailClaims", c.deleted_at AS "deletedAt", c.home_region AS "homeRegion"
       FROM saml_provider_credentials c JOIN organizations o ON o.id = c.org_id AND o.deleted_at IS NULL
      WHERE c.id = $1::uuid`,
    id,
  );
  return rows[0] ?? null;
}

export async function findSettings(db: Db, credentialId: string) {
  return db.samlSsoSettings.findFirst({ where: { credentialId, deletedAt: null } });
}
