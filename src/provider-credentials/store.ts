import type { Db, TxClient } from '../db/client';
import { defineTable } from '../replication/tables';

export const credentialsTable = defineTable('saml_provider_credentials', 'id');
export const metadataTable = defineTable('saml_credential_metadata', 'credential_id');

export async function listCredentials(db: Db, orgId: string, limit: number, offset: number) {
  const where = { orgId, deletedAt: null };
  const [rows, total] = await Promise.all([
    db.samlProviderCredential.findMany({ where, orderBy: [{ createdAt: 'asc' }, { id: 'asc' }], skip: offset, take: limit }),
    db.samlProviderCredential.count({ where }),
  ]);
  return { rows, total };
}

export function findMetadata(db: Db, credentialId: string) {
  return db.samlCredentialMetadata.findFirst({ where: { credentialId, deletedAt: null } });
}

export function findCredential(db: Db, orgId: string, id: string) {
  return db.samlProviderCredential.findFirst({ where: { id, orgId, deletedAt: null } });
}

export type RefreshOutcome = { ok: true } | { ok: false; code: string; message: string };

/** Records a metadata fetch (at a write or by the refresh job) and schedules the next one. Local, not replicated. */
export async function recordRefresh(db: Pick<TxClient, 'metadataRefreshState'>, credentialId: string, nextAt: Date, outcome: RefreshOutcome) {
  const now = new Date();
  const fields = outcome.ok
    ? { nextAt, lastAttemptAt: now, lastSuccessAt: now, lastError: null, lastErrorCode: null, consecutiveFailures: 0 }
    : { nextAt, lastAttemptAt: now, lastError: outcome.message, lastErrorCode: outcome.code };
  await db.metadataRefreshState.upsert({
    where: { credentialId },
    create: { credentialId, ...fields, consecutiveFailures: outcome.ok ? 0 : 1 },
    update: outcome.ok ? fields : { ...fields, consecutiveFailures: { increment: 1 } },
  });
}
