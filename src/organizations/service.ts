import { v7 as uuidv7 } from 'uuid';
import type { Db } from '../db/client';
import { badRequest, conflict, notFound } from '../http/errors';
import type { Replicator } from '../replication/replicator';
import { OWNED_DELETE_BATCH, type Row } from '../replication/tables';
import { apiKeyCacheOf } from './api-key-cache';
import { generateApiKey, keyIdOf, keyMatches } from './api-keys';
import type { CreateOrganizationBody, OrganizationView } from './schema';
import { apiKeysTable, depthOf, findLiveApiKey, liveChildCount, liveKeyIds, MAX_ORG_DEPTH, organizationsTable, organizationTombstone } from './store';

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
      // The parent's lock, read under it: a delete of the parent here either sees this sub-organization
      // (and is refused) or commits first (and this create answers 404).
      await w.lock(organizationsTable, parentId);
      const depth = await depthOf(w.tx, parentId);
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

/**
 * Deletes an organization: tombstones it and, in the same change, up to OWNED_DELETE_BATCH of its rows (see
 * there). Refused (409) while it has live sub-organizations here: a parent's delete would otherwise cut a
 * whole subtree off its keys at once. Every path that reads a credential or an organization checks that
 * its organization is live, so what the change did not take, or what another region wrote into the
 * organization before the delete reached it, is unreachable at once and tombstoned by the sweep later.
 */
export function deleteOrganization(repl: Replicator, orgId: string) {
  return repl.write(async (w) => {
    const org = await w.lock(organizationsTable, orgId);
    if (!org || org.deleted_at) throw notFound(`Organization ${orgId} not found.`);
    // Under the organization's lock, which a sub-organization's create here takes too (createOrganization).
    const children = await liveChildCount(w.tx, orgId);
    if (children > 0) {
      throw conflict(
        `Organization ${orgId} has ${children} sub-organization${children === 1 ? '' : 's'} in this region; delete ${children === 1 ? 'it' : 'them'} first ` +
          `(list them with GET /admin/organizations?parent_id=${orgId}). Nothing was deleted.`,
      );
    }
    const now = new Date().toISOString();
    await w.put(organizationsTable, organizationTombstone(org, now));
    const more = await w.deleteOwned(organizationsTable, orgId, now, OWNED_DELETE_BATCH);
    return { more };
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
