/**
 * REPLICATION_KEYS: the keys that authenticate change events between regions (see
 * src/replication/event-auth.ts for how they are used). Parsed here, with the configuration, so that
 * config.ts needs nothing from the replication module.
 */
export const MIN_REPLICATION_SECRET_BYTES = 32;
export const KID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

export interface ReplicationKey {
  kid: string;
  secret: string;
}

/**
 * Parses REPLICATION_KEYS: `kid1:secret1,kid2:secret2` (a secret runs from the first ':' to the next ',').
 * Throws with a message naming what is wrong (never the secret).
 */
export function parseReplicationKeys(raw: string): ReplicationKey[] {
  const keys: ReplicationKey[] = [];
  for (const [i, part] of raw.split(',').entries()) {
    const at = part.indexOf(':');
    const kid = at < 0 ? '' : part.slice(0, at).trim();
    const secret = at < 0 ? '' : part.slice(at + 1);
    if (!KID_PATTERN.test(kid)) throw new Error(`entry ${i + 1} must be kid:secret with a key id of letters, digits, '.', '_' or '-' (at most 64)`);
    if (Buffer.byteLength(secret, 'utf8') < MIN_REPLICATION_SECRET_BYTES) {
      throw new Error(`the secret of key '${kid}' must be at least ${MIN_REPLICATION_SECRET_BYTES} bytes (e.g. openssl rand -hex 32)`);
    }
    if (keys.some((k) => k.kid === kid)) throw new Error(`key id '${kid}' appears twice`);
    keys.push({ kid, secret });
  }
  return keys;
}
