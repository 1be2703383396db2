import type { Db } from '../db/client';
import { defineTable } from '../replication/tables';

/** Keyed by organization: one config per org must hold across regions, and the org is that natural key. */
export const samlConfigsTable = defineTable('infisical_saml_configs', 'org_id');

export function findSamlConfig(db: Db, orgId: string) {
  return db.infisicalSamlConfig.findFirst({ where: { orgId, deletedAt: null } });
}
