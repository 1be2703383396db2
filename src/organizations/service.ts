import { v7 as uuidv7 } from 'uuid';
import type { Db } from '../db/client';
import { notFound } from '../http/errors';
import type { Replicator } from '../replication/replicator';
import type { Row } from '../replication/tables';
import { generateApiKey, keyIdOf, keyMatches } from './api-keys';
import type { CreateOrganizationBody, OrganizationView } from './schema';
import { apiKeysTable, findLiveApiKey, findOrganization, organizationsTable } from './store';

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
  return repl.write(async (w) => {
    if (input.parent_id && !(await findOrganization(db, input.parent_id))) {
      throw notFound(`Parent organization ${input.parent_id} does not exist in this region.`);
    }
    const now = new Date().toISOString();
    const org = await w.put(organizationsTable, {
      id: uuidv7(),
      name: input.name,
      parent_id: input.parent_id ?? null,
      created_at: now,
    });
    await w.put(apiKeysTable, { org_id: org.id, key_id: key.keyId, key_hash: key.keyHash, created_at: now });
    return { ...toOrganizationView(org), api_key: key.apiKey };
  });
}

/** Replaces the organization's key: the previous one stops working once this write reaches a region. */
export function rotateApiKey(db: Db, repl: Replicator, orgId: string) {
  const key = generateApiKey();
  return repl.write(async (w) => {
    if (!(await findOrganization(db, orgId))) throw notFound(`Organization ${orgId} does not exist.`);
    await w.put(apiKeysTable, {
      org_id: orgId,
      key_id: key.keyId,
      key_hash: key.keyHash,
      created_at: new Date().toISOString(),
    });
    return { api_key: key.apiKey };
  });
}

/** The (existing) organization a key belongs to, or null for a malformed, unknown or replaced key. */
export async function authenticateApiKey(db: Db, apiKey: string): Promise<string | null> {
  const keyId = keyIdOf(apiKey);
  const row = keyId ? await findLiveApiKey(db, keyId) : null;
  return keyMatches(apiKey, row?.keyHash ?? null) && row ? row.orgId : null;
}
