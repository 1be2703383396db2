import type { Db } from '../db/client';
import { organizationsTable } from '../organizations/store';
import { defineTable } from '../replication/tables';

/** Keyed by organization: one config per org must hold across regions, and the org is that natural key. */
/** Deleted with its organization (the organization's delete, or the part sweep): a tombstone without the IdP's settings. */
export const samlConfigsTable = defineTable('infisical_saml_configs', 'org_id', {
  ownedBy: {
    table: organizationsTable,
    column: 'org_id',
    tombstone: (c, deletedAt) => ({
      org_id: c.org_id, id: c.id, auth_provider: '', is_active: false, entry_point: '', issuer: '', cert: '', enable_group_sync: false,
      last_used: null, created_at: c.created_at, updated_at: deletedAt, deleted_at: deletedAt,
    }),
  },
});

export function findSamlConfig(db: Db, orgId: string) {
  return db.infisicalSamlConfig.findFirst({ where: { orgId, deletedAt: null } });
}
