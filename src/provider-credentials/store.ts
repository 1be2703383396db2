import type { Db } from '../db/client';
import { defineTable } from '../replication/tables';

export const credentialsTable = defineTable('saml_provider_credentials', 'id');

export async function listCredentials(db: Db, orgId: string, limit: number, offset: number) {
  const where = { orgId, deletedAt: null };
  const [rows, total] = await Promise.all([
    db.samlProviderCredential.findMany({ where, orderBy: [{ createdAt: 'asc' }, { id: 'asc' }], skip: offset, take: limit }),
    db.samlProviderCredential.count({ where }),
  ]);
  return { rows, total };
}

export function findCredential(db: Db, orgId: string, id: string) {
  return db.samlProviderCredential.findFirst({ where: { id, orgId, deletedAt: null } });
}
