/**
 * Which process of a region refreshes a credential's metadata right now. Every process of a region runs the
 * refresher (metadata-refresh.ts) over the same schedule and the same sweep; without a claim each of them
 * fetched every due credential: the IdP was asked once per process, and a failed refresh was counted once per
 * process, its back-off growing that much faster. A claim is a key in the region's Redis, set only if absent,
 * with a lease longer than one refresh takes (fetch, parse, write), removed by its taker when the refresh
 * ends; a process that dies holding one leaves it to expire. While Redis does not answer, a refresh goes ahead
 * unclaimed, as it did before claims: twice is better than not at all. "Does not answer" includes a Redis that
 * hangs (stopped, its connection open), which refuses nothing: the claim and its release are waited for
 * CLAIM_WAIT_MS at most (unbounded, a hung Redis stopped every refresh of the process, and its shutdown).
 */
import crypto from 'node:crypto';
import { withTimeout } from '../db/timeout';
import { luaScript, type Redis } from '../redis';

/** Longer than a refresh: the fetch's 10 s, a parse's 8 s (and its wait for a worker), the write's bound. */
export const CLAIM_LEASE_MS = 120_000;
/** How long a claim or its release is waited for: Redis answers in milliseconds; the region's status waits 2 s too. */
export const CLAIM_WAIT_MS = 2000;

/** Deletes the claim only while it is still the taker's (after a lease ran out, another process's may stand). */
const releaseScript = luaScript("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0");

/** Ends a claim. */
export type Release = () => Promise<void>;

export interface RefreshClaims {
  /** The claim's release when this process may refresh the credential now; null when another process holds it. */
  take(credentialId: string): Promise<Release | null>;
}

const bounded = (p: Promise<unknown>): Promise<void> => withTimeout(p, CLAIM_WAIT_MS, 'Redis did not answer').then(() => undefined, () => undefined);

export function refreshClaims(redis: Redis, keyPrefix: string): RefreshClaims {
  const key = (credentialId: string) => `${keyPrefix}metadata-refresh:claim:${credentialId}`;
  return {
    async take(credentialId) {
      const token = crypto.randomUUID();
      // Ends the claim whenever Redis answers (a release not answered in time still goes out).
      const end = () => releaseScript(redis, [key(credentialId)], [token]).catch(() => undefined);
      const set = redis.set(key(credentialId), token, 'PX', CLAIM_LEASE_MS, 'NX');
      let taken: string | null;
      try {
        taken = await withTimeout(set, CLAIM_WAIT_MS, 'Redis did not answer');
      } catch {
        // Unclaimed. A SET that lands once Redis answers again is this process's claim all the same: ended then
        // (the refresh has gone ahead, or is under way and may be done twice), not left to block the others.
        void set.then((answer) => (answer === 'OK' ? end() : undefined), () => undefined);
        return async () => undefined;
      }
      if (taken !== 'OK') return null;
      return () => bounded(end());
    },
  };
}
