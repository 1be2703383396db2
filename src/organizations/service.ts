import { v7 as uuidv7 } from 'uuid';
import type { Db } from '../db/client';
import { badRequest, notFound } from '../http/errors';
import type { Replicator } from '../replication/replicator';
import type { Row } from '../replication/tables';
import { apiKeyCacheOf } from './api-key-cache';
import { generateApiKey, keyIdOf, keyMatches } from './api-keys';
import type { CreateOrganizationBody, OrganizationView } from './schema';
import { apiKeysTable, depthOf, findLiveApiKey, liveKeyIds, MAX_ORG_DEPTH, organizationsTable } from './store';

export function toOrganizationView(row: Row): OrganizationView {
  return {
    id: String(row.id),
    name: String(row.name),
    parent_id: row.parent_id ? String(row.parent_id) : null,
    created_at: new Date(String(row.created_at)).toISOString(),
  };
}

/** Creates an organization and its first API key in one replicated write. */
export function createOrganization(db: Db, repl: Replicator, input: CreateOrganizationBody) {
  const key = generateApiKey();
  // Ids are lower case wherever they are stored (a UUID's hex digits may come in either case).
  const parentId = input.parent_id?.toLowerCase() ?? null;
  return repl.write(async (w) => {
    if (parentId) {
      const depth = await depthOf(db, parentId);
      if (depth === null) throw notFound(`Parent organization ${parentId} does not exist in this region.`);
      if (depth + 1 > MAX_ORG_DEPTH) throw badRequest(`Organizations nest at most ${MAX_ORG_DEPTH} levels below their root; parent_id ${parentId} is at the deepest level already. Nothing was created.`);
    }
    const now = new Date().toISOString();
    const org = await w.put(organizationsTable, {
      id: uuidv7(),
      name: input.name,
      parent_id: parentId,
      created_at: now,
    });
    await w.put(apiKeysTable, { org_id: org.id, key_id: key.keyId, key_hash: key.keyHash, created_at: now });
    return { ...toOrganizationView(org), api_key: key.apiKey };
  });
}

/**
 * Adds a key and revokes (tombstones) the organization's other keys this region knows; they stop working
 * in each region as the change reaches it. Keys are rows of their own, so two rotations in two regions at
 * once each add their key and both keys keep working (each revoked only what it knew); the next rotation
 * revokes both.
 */
export function rotateApiKey(db: Db, repl: Replicator, orgId: string) {
  const key = generateApiKey();
  return repl.write(async (w) => {
    // The organization's row lock serializes rotations in this region, so each revokes the one before.
    const org = await w.lock(organizationsTable, orgId);
    if (!org || org.deleted_at) throw notFound(`Organization ${orgId} not found.`);
    const now = new Date().toISOString();
    for (const keyId of await liveKeyIds(w.tx, orgId)) {
      const old = await w.lock(apiKeysTable, keyId);
      if (old && !old.deleted_at) await w.put(apiKeysTable, { ...old, deleted_at: now });
    }
    await w.put(apiKeysTable, { org_id: orgId, key_id: key.keyId, key_hash: key.keyHash, created_at: now });
    return { api_key: key.apiKey };
  });
}

/** The (existing) organization a key belongs to, or null for a malformed, unknown or replaced key. */
export async function authenticateApiKey(db: Db, apiKey: string): Promise<string | null> {
  const keyId = keyIdOf(apiKey);
  const cache = apiKeyCacheOf(db);
  const load = (id: string) => findLiveApiKey(db, id);
  const row = keyId ? await (cache ? cache.find(keyId, load) : load(keyId)) : null;
  return keyMatches(apiKey, row?.keyHash ?? null) && row ? row.orgId : null;
}
