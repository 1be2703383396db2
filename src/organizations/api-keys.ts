/**
 * API keys: "sidk_<key id>.<secret>". Only a SHA-256 hash of the whole key is stored (the secret has 256 bits
 * of entropy, so a slow hash adds nothing); the key id finds the row, and the hash is compared in constant time.
 */
import crypto from 'node:crypto';

const KEY_FORMAT = /^sidk_([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{43})$/;
const DUMMY_HASH = crypto.createHash('sha256').update('no such key').digest();

export interface NewApiKey {
  apiKey: string;
  keyId: string;
  keyHash: string;
}

export function hashKey(apiKey: string): string {
  return crypto.createHash('sha256').update(apiKey).digest('hex');
}

export function generateApiKey(): NewApiKey {
  const keyId = crypto.randomBytes(12).toString('base64url');
  const apiKey = `sidk_${keyId}.${crypto.randomBytes(32).toString('base64url')}`;
  return { apiKey, keyId, keyHash: hashKey(apiKey) };
}

/** The key id of a well-formed key, or null. */
export function keyIdOf(apiKey: string): string | null {
  return KEY_FORMAT.exec(apiKey)?.[1] ?? null;
}

/** Constant-time check of a presented key against a stored hash (or against nothing, in the same time). */
export function keyMatches(apiKey: string, storedHash: string | null): boolean {
  const presented = crypto.createHash('sha256').update(apiKey).digest();
  const stored = storedHash && /^[0-9a-f]{64}$/.test(storedHash) ? Buffer.from(storedHash, 'hex') : DUMMY_HASH;
  return crypto.timingSafeEqual(presented, stored) && storedHash !== null;
}
