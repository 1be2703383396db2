import { v7 as uuidv7 } from 'uuid';
import type { SamlProviderCredential } from '../generated/prisma/client';
import { notFound } from '../http/errors';
import { runOnce, type IdempotentCall } from '../idempotency/service';
import type { Replicator } from '../replication/replicator';
import type { Row } from '../replication/tables';
import type { CreateCredentialBody, CredentialView, PatchCredentialBody } from './schema';
import type { StoredMetadata } from './metadata';
import { credentialsTable, recordRefresh } from './store';

export function viewFromModel(m: SamlProviderCredential): CredentialView {
  return {
    id: m.id,
    label: m.label,
    idp_metadata_url: m.idpMetadataUrl,
    email_claims: m.emailClaims,
    enable_in_slashid_oidc_authz_server: m.enableInSlashidOidcAuthzServer,
  };
}

export function viewFromRow(r: Row): CredentialView {
  return {
    id: String(r.id),
    label: String(r.label ?? ''),
    idp_metadata_url: String(r.idp_metadata_url),
    email_claims: Array.isArray(r.email_claims) ? r.email_claims.map(String) : [],
    enable_in_slashid_oidc_authz_server: r.enable_in_slashid_oidc_authz_server === true,
  };
}

/** IdP metadata fetched for this write, and when the home region should fetch it again. */
export interface FetchedMetadata {
  metadata: StoredMetadata;
  nextRefreshAt: Date;
}

/** With `idem`, a request that committed first with the same key answers instead (see runOnce). */
export function createCredential(
  repl: Replicator,
  orgId: string,
  body: CreateCredentialBody,
  fetched: FetchedMetadata,
  idem: IdempotentCall<CredentialView> | null = null,
) {
  return repl.write((w) => runOnce(w, idem, async () => {
    const row = await w.put(credentialsTable, {
      id: uuidv7(),
      org_id: orgId,
      label: body.label ?? '',
      idp_metadata_url: body.idp_metadata_url,
      email_claims: body.email_claims ?? [],
      enable_in_slashid_oidc_authz_server: body.enable_in_slashid_oidc_authz_server ?? false,
      metadata: fetched.metadata,
      home_region: repl.region,
      created_at: new Date().toISOString(),
    });
    await recordRefresh(w.tx, String(row.id), fetched.nextRefreshAt, { ok: true });
    return viewFromRow(row);
  }));
}

async function lockOwned(w: Parameters<Parameters<Replicator['write']>[0]>[0], orgId: string, id: string): Promise<Row> {
  const current = await w.lock(credentialsTable, id);
  if (!current || current.deleted_at || current.org_id !== orgId) {
    throw notFound(`SAML provider credentials ${id} not found.`);
  }
  return current;
}

export function patchCredential(repl: Replicator, orgId: string, id: string, patch: PatchCredentialBody, fetched: FetchedMetadata | null) {
  return repl.write(async (w) => {
    const current = await lockOwned(w, orgId, id);
    const row = await w.put(credentialsTable, { ...current, ...patch, ...(fetched ? { metadata: fetched.metadata } : {}) });
    if (fetched) await recordRefresh(w.tx, id, fetched.nextRefreshAt, { ok: true });
    return viewFromRow(row);
  });
}

export function deleteCredential(repl: Replicator, orgId: string, id: string) {
  return repl.write(async (w) => {
    const current = await lockOwned(w, orgId, id);
    await w.put(credentialsTable, { ...current, deleted_at: new Date().toISOString() });
    return { id };
  });
}
