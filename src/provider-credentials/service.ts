import { v7 as uuidv7 } from 'uuid';
import type { SamlProviderCredential } from '../generated/prisma/client';
import { notFound } from '../http/errors';
import { runOnce, type IdempotentCall } from '../idempotency/service';
import type { Replicator } from '../replication/replicator';
import type { Row } from '../replication/tables';
import type { CreateCredentialBody, CredentialView, PatchCredentialBody } from './schema';
import type { StoredMetadata } from './metadata';
import { credentialsTable, metadataTable, recordRefresh } from './store';

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
      home_region: repl.region,
      created_at: new Date().toISOString(),
    });
    await putMetadata(w, row, fetched);
    return viewFromRow(row);
  }));
}

type Writer = Parameters<Parameters<Replicator['write']>[0]>[0];

/** Stores the fetched document for the credential (its own replicated row) and schedules the next fetch. */
export async function putMetadata(w: Writer, credential: Row, fetched: FetchedMetadata): Promise<void> {
  const id = String(credential.id);
  const current = await w.lock(metadataTable, id);
  await w.put(metadataTable, {
    credential_id: id,
    org_id: credential.org_id,
    idp_metadata_url: credential.idp_metadata_url,
    metadata: fetched.metadata,
    created_at: current?.created_at ?? new Date().toISOString(),
  });
  await recordRefresh(w.tx, id, fetched.nextRefreshAt, { ok: true });
}

async function lockOwned(w: Writer, orgId: string, id: string): Promise<Row> {
  const current = await w.lock(credentialsTable, id);
  if (!current || current.deleted_at || current.org_id !== orgId) {
    throw notFound(`SAML provider credentials ${id} not found.`);
  }
  return current;
}

export function patchCredential(repl: Replicator, orgId: string, id: string, patch: PatchCredentialBody, fetched: FetchedMetadata | null) {
  return repl.write(async (w) => {
    const current = await lockOwned(w, orgId, id);
    const row = await w.put(credentialsTable, { ...current, ...patch });
    if (fetched) await putMetadata(w, row, fetched);
    return viewFromRow(row);
  });
}

export function deleteCredential(repl: Replicator, orgId: string, id: string) {
  return repl.write(async (w) => {
    const current = await lockOwned(w, orgId, id);
    const now = new Date().toISOString();
    await w.put(credentialsTable, { ...current, deleted_at: now });
    const metadata = await w.lock(metadataTable, id);
    if (metadata && !metadata.deleted_at) await w.put(metadataTable, { ...metadata, deleted_at: now });
    return { id };
  });
}
