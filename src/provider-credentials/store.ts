import { poolOf, type Db } from '../db/client';
import type { Queryable } from '../replication/row-store';
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

/** The columns a read of one credential answers with (the fields of viewFromModel, and its home region). */
export interface StoredCredential {
  id: string;
  label: string;
  idpMetadataUrl: string;
  emailClaims: string[];
  enableInSlashidOidcAuthzServer: boolean;
  homeRegion: string;
}

/** A prepared statement (named: parsed and planned once per connection). Both ids are validated UUIDs. */
const FIND_CREDENTIAL = {
  name: 'find_credential',
  text: `SELECT id, label, idp_metadata_url AS "idpMetadataUrl", email_claims AS "emailClaims",
    enable_in_slashid_oidc_authz_server AS "enableInSlashidOidcAuthzServer", home_region AS "homeRegion"
    FROM saml_provider_credentials WHERE id = $1 AND org_id = $2 AND deleted_at IS NULL`,
};

/** A live credential of the organization, or null. The most frequent read: on the pool, not the ORM (see poolOf). */
export async function findCredential(db: Db, orgId: string, id: string): Promise<StoredCredential | null> {
  const res = await poolOf(db).query<StoredCredential>({ ...FIND_CREDENTIAL, values: [id, orgId] });
  return res.rows[0] ?? null;
}

export type RefreshOutcome = { ok: true } | { ok: false; code: string; message: string };

/**
 * Records a metadata fetch (at a write or by the refresh job) and schedules the next one. Local, not
 * replicated. Raw SQL: it runs inside replicated writes too, whose transactions are raw (replicator.ts).
 */
export async function recordRefresh(db: Queryable, credentialId: string, nextAt: Date, outcome: RefreshOutcome): Promise<void> {
  const now = new Date();
  if (outcome.ok) {
    await db.$executeRawUnsafe(
      `INSERT INTO metadata_refresh_state (credential_id, next_at, last_attempt_at, last_success_at, last_error, last_error_code, consecutive_failures)
       VALUES ($1::uuid, $2::timestamptz, $3::timestamptz, $3::timestamptz, NULL, NULL, 0)
       ON CONFLICT (credential_id) DO UPDATE SET next_at = EXCLUDED.next_at, last_attempt_at = EXCLUDED.last_attempt_at,
         last_success_at = EXCLUDED.last_success_at, last_error = NULL, last_error_code = NULL, consecutive_failures = 0`,
      credentialId, nextAt.toISOString(), now.toISOString(),
    );
    return;
  }
  await db.$executeRawUnsafe(
    `INSERT INTO metadata_refresh_state (credential_id, next_at, last_attempt_at, last_error, last_error_code, consecutive_failures)
     VALUES ($1::uuid, $2::timestamptz, $3::timestamptz, $4, $5, 1)
     ON CONFLICT (credential_id) DO UPDATE SET next_at = EXCLUDED.next_at, last_attempt_at = EXCLUDED.last_attempt_at,
       last_error = EXCLUDED.last_error, last_error_code = EXCLUDED.last_error_code,
       consecutive_failures = metadata_refresh_state.consecutive_failures + 1`,
    credentialId, nextAt.toISOString(), now.toISOString(), outcome.message, outcome.code,
  );
}
