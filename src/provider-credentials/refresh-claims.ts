/**
 * Which process of a region refreshes a credential's metadata right now. Every process of a region runs the
 * refresher (metadata-refresh.ts) over the same schedule and the same sweep; without a claim each of them
 * fetched every due credential: the IdP was asked once per process, and a failed refresh was counted once per
 * process, its back-off growing that much faster. A claim is a key in the region's Redis, set only if absent,
 * with a lease longer than one refresh takes (fetch, parse, write), removed by its taker when the refresh
 * ends; a process that dies holding one leaves it to expire. While Redis does not answer, a refresh goes ahead
 * unclaimed, as it did before claims: twice is better than not at all.
 */
import crypto from 'node:crypto';
import { luaScript, type Redis } from '../redis';

/** Longer than a refresh: the fetch's 10 s, a parse's 8 s (and its wait for a worker), the write's bound. */
export const CLAIM_LEASE_MS = 120_000;

/** Deletes the claim only while it is still the taker's (after a lease ran out, another process's may stand). */
const releaseScript = luaScript("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0");

/** Ends a claim. */
export type Release = () => Promise<void>;

export interface RefreshClaims {
  /** The claim's release when this process may refresh the credential now; null when another process holds it. */
  take(credentialId: string): Promise<Release | null>;
}

const unclaimed: Release = async () => undefined;

export function refreshClaims(redis: Redis, keyPrefix: string): RefreshClaims {
  const key = (credentialId: string) => `${keyPrefix}metadata-refresh:claim:${credentialId}`;
  return {
    async take(credentialId) {
      const token = crypto.randomUUID();
      let taken: string | null;
      try {
        taken = await redis.set(key(credentialId), token, 'PX', CLAIM_LEASE_MS, 'NX');
      } catch {
        return unclaimed;
      }
      if (taken !== 'OK') return null;
      return async () => {
        await releaseScript(redis, [key(credentialId)], [token]).catch(() => undefined);
      };
    },
  };
}
