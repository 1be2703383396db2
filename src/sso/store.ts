/**
 * What a login keeps between its start and the IdP's answer, and the replay cache, both in the region's
 * Redis with a TTL: expiry needs no cleanup job, GETDEL and SET NX make "answered once" and "accepted once"
 * atomic, and nothing here needs to survive longer than a login. Outstanding requests are keyed by region
 * (and credential): only the region that started a login accepts its answer (its ACS URL is the one the
 * request named). The replay cache is the region's too (with a Redis per region, per region): an
 * assertion is accepted once in a region, and only in one region, since its Recipient must be that
 * region's ACS URL (response.ts). An IdP-initiated one usable longer than MAX_REPLAY_TTL_MS is refused
 * (service.ts): it could be replayed once its id is forgotten.
 */
import crypto from 'node:crypto';
import type { CacheItem, CacheProvider } from '@node-saml/node-saml';
import type { Db } from '../db/client';
import { AppError } from '../http/errors';
import type { Redis } from '../redis';
import { defineTable } from '../replication/tables';

/** Per-credential SSO options (replicated). */
export const settingsTable = defineTable('saml_sso_settings', 'credential_id');

/** How long a started login waits for the IdP's answer (the user may need to type a password and pass MFA). */
export const REQUEST_TTL_SECONDS = 600;
/** Bounds how long an assertion id is kept, whatever NotOnOrAfter the IdP chose. */
export const MAX_REPLAY_TTL_MS = 24 * 3600 * 1000;

/** A started login as stored: when node-saml issued it (it checks the age too), and the relay state to return. */
interface PendingRequest {
  created_at: string;
  relay_state: string | null;
}

const assertionHash = (issuer: string, id: string) => crypto.createHash('sha256').update(`${issuer}\0${id}`).digest('hex');

export function ssoKeys(prefix: string, region: string) {
  return {
    request: (credentialId: string, id: string) => `${prefix}sso:${region}:request:${credentialId}:${id}`,
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
    throw new AppError(503, 'sso_unavailable', 'Single sign-on is unavailable for a moment (its session store cannot be reached); try again shortly.');
  }
}

/**
 * node-saml's cache provider for the outstanding requests of one credential in this region: it saves the id
 * of each AuthnRequest it writes, and looks up the InResponseTo of each response (and checks its age).
 * node-saml also removes a request after any response to it, even one it refused; here a refused response
 * does not cancel the user's login (a forged post would), so removal is take(), once the response was
 * accepted: GETDEL, so that of two responses to one request only one signs in.
 */
export class RequestCache implements CacheProvider {
  constructor(
    private readonly redis: Redis,
    private readonly keys: SsoKeys,
    private readonly credentialId: string,
    /** Saved with the requests of a login. */
    private readonly relayState: string | null = null,
  ) {}

  async saveAsync(id: string, createdAt: string): Promise<CacheItem> {
    const request: PendingRequest = { created_at: createdAt, relay_state: this.relayState };
    await orUnavailable(this.redis.set(this.keys.request(this.credentialId, id), JSON.stringify(request), 'EX', REQUEST_TTL_SECONDS));
    return { value: createdAt, createdAt: Date.now() };
  }

  async getAsync(id: string): Promise<string | null> {
    const raw = await orUnavailable(this.redis.get(this.keys.request(this.credentialId, id)));
    return raw === null ? null : (JSON.parse(raw) as PendingRequest).created_at;
  }

  async removeAsync(): Promise<string | null> {
    return null;
  }

  /** The outstanding request `id`, removed as it is read (a request is answered once). */
  async take(id: string): Promise<PendingRequest | null> {
    const raw = await orUnavailable(this.redis.getdel(this.keys.request(this.credentialId, id)));
    return raw === null ? null : (JSON.parse(raw) as PendingRequest);
  }
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

export function findCredentialById(db: Db, id: string) {
  return db.samlProviderCredential.findFirst({ where: { id, deletedAt: null } });
}

export async function findSettings(db: Db, credentialId: string) {
  return db.samlSsoSettings.findFirst({ where: { credentialId, deletedAt: null } });
}
