import { v7 as uuidv7 } from 'uuid';
import type { SamlProviderCredential } from '../generated/prisma/client';
import { pgCode } from '../db/pg-errors';
import { AppError, conflict, notFound, unauthorized } from '../http/errors';
import { organizationsTable } from '../organizations/store';
import { runOnce, type IdempotentCall } from '../idempotency/service';
import type { PutOptions, Replicator } from '../replication/replicator';
import type { Row } from '../replication/tables';
import type { CreateCredentialBody, CredentialView, PatchCredentialBody } from './schema';
import type { StoredMetadata } from './metadata';
import { trustIdFor, trustSettingOf, type TrustSetting } from './trust';
import { credentialsTable, credentialTombstone, limitCheck, LIMIT_SQLSTATE, metadataTable, ORG_DELETED_SQLSTATE, refreshStatement } from './store';

export function viewFromModel(m: Pick<SamlProviderCredential, 'id' | 'label' | 'idpMetadataUrl' | 'emailClaims' | 'enableInSlashidOidcAuthzServer'>): CredentialView {
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
  /**
   * The owner's choice when the owner set the URL or the pins (not on a refresh): the write makes it the
   * credential's trust setting, with a new id.
   */
  trust?: Omit<TrustSetting, 'id'>;
}

export const DEFAULT_MAX_CREDENTIALS_PER_ORG = 100;

/**
 * With `idem`, a request that committed first with the same key answers instead (see runOnce). At most
 * `maxPerOrg` live credentials per organization, counted in this region under the organization's lock (so two
 * creates here cannot both take the last place; creates in two regions at once can exceed it by what they add).
 */
export function createCredential(
  repl: Replicator,
  orgId: string,
  body: CreateCredentialBody,
  fetched: FetchedMetadata,
  idem: IdempotentCall<CredentialView> | null = null,
  maxPerOrg = DEFAULT_MAX_CREDENTIALS_PER_ORG,
) {
  return repl
    .write((w) => runOnce(w, idem, async () => {
      const row = await w.put(credentialsTable, {
        id: uuidv7(),
        org_id: orgId,
        label: body.label ?? '',
        idp_metadata_url: body.idp_metadata_url,
        email_claims: body.email_claims ?? [],
        enable_in_slashid_oidc_authz_server: body.enable_in_slashid_oidc_authz_server ?? false,
        home_region: repl.region,
        idp_trust: settingOf(fetched),
        created_at: new Date().toISOString(),
      }, { fresh: true });
      await putMetadata(w, row, fetched, trustIdFor(row), { fresh: true });
      // The limit, counted under the organization's lock with the new row in: both with the commit.
      w.later(w.lockStatement(organizationsTable, orgId));
      w.later(limitCheck(orgId, maxPerOrg));
      return viewFromRow(row);
    }))
    .catch((err: unknown) => {
      if (pgCode(err) === ORG_DELETED_SQLSTATE) {
        throw unauthorized(`Organization ${orgId} was deleted while this request ran; nothing was created (its API keys are no longer valid).`);
      }
      if (pgCode(err) !== LIMIT_SQLSTATE) throw err;
      const n = Number((err as Error).message) || maxPerOrg;
      throw new AppError(
        409,
        'credential_limit_reached',
        `This organization has ${n} SAML provider credentials, the most it may have (${maxPerOrg}); delete one before creating another.`,
      );
    });
}

type Writer = Parameters<Parameters<Replicator['write']>[0]>[0];

/**
 * A new trust setting from the owner's choice, its id made in the write: a UUIDv7, and after every setting id
 * the credential's rows carry here (`after`), whatever the clocks of the regions that made those (a helper's
 * review: a region whose clock ran ahead made ids that later settings made elsewhere sorted before). So a
 * setting sorts after the one it replaces, which trust.ts relies on.
 */
function settingOf(fetched: FetchedMetadata | null, after: readonly unknown[] = []): TrustSetting | null {
  return fetched?.trust ? { id: nextSettingId(after), ...fetched.trust } : null;
}

function nextSettingId(after: readonly unknown[]): string {
  const floor = after.filter((x): x is string => typeof x === 'string' && /^[0-9a-f]{8}-[0-9a-f]{4}-/.test(x)).sort().pop();
  const id = uuidv7();
  if (floor === undefined || id > floor) return id;
  // The floor's millisecond (its first 48 bits), and one more.
  return uuidv7({ msecs: parseInt(floor.slice(0, 8) + floor.slice(9, 13), 16) + 1 });
}

/**
 * Stores the fetched document for the credential (its own replicated row), made under the trust setting
 * `trustId` (trust.ts), and schedules the next fetch.
 */
export async function putMetadata(w: Writer, credential: Row, fetched: FetchedMetadata, trustId: string, opts: PutOptions = {}): Promise<void> {
  const id = String(credential.id);
  // A new credential's metadata row is new too (keyed by the credential's fresh id).
  const current = opts.fresh ? null : await w.lock(metadataTable, id);
  await w.put(metadataTable, {
    credential_id: id,
    org_id: credential.org_id,
    idp_metadata_url: credential.idp_metadata_url,
    metadata: fetched.metadata,
    trust_id: trustId,
    created_at: current?.created_at ?? new Date().toISOString(),
  }, opts);
  w.later(refreshStatement(id, fetched.nextRefreshAt, { ok: true }));
}

/**
 * The 404 of a credential id: one message whether it never existed, is another organization's or was deleted
 * (it says nothing of others), and names the case a client meets after a local_region create elsewhere.
 */
export const credentialNotFound = (id: string) =>
  notFound(
    `SAML provider credentials ${id} not found in this region: not one of this organization's, deleted, or created in another region moments ago and not arrived here yet (a create with all_regions answers once every region has it).`,
  );

async function lockOwned(w: Writer, orgId: string, id: string): Promise<Row> {
  const current = await w.lock(credentialsTable, id);
  if (!current || current.deleted_at || current.org_id !== orgId) {
    throw credentialNotFound(id);
  }
  return current;
}

export function patchCredential(repl: Replicator, orgId: string, id: string, patch: PatchCredentialBody, fetched: FetchedMetadata | null) {
  return repl.write(async (w) => {
    const current = await lockOwned(w, orgId, id);
    // The pins go in the trust setting (with the URL they were set for) and the metadata row (trust.ts).
    const { idp_trusted_certificates: _pins, ...columns } = patch;
    // New pins alone were judged against the document of the URL read before the fetch; another PATCH here
    // may have changed the URL since. That document is not the new URL's: nothing is written.
    if (fetched?.trust && (columns.idp_metadata_url ?? current.idp_metadata_url) !== fetched.trust.url) {
      throw conflict(`The idp_metadata_url of SAML provider credentials ${id} changed while its metadata was fetched; nothing was written. Send the PATCH again.`);
    }
    // Locked first when a setting is made: its id sorts after the credential's setting and the metadata row's.
    const metadata = fetched?.trust ? await w.lock(metadataTable, id) : null;
    const setting = settingOf(fetched, [trustSettingOf(current.idp_trust)?.id, metadata?.trust_id]);
    const row = await w.put(credentialsTable, { ...current, ...columns, ...(setting ? { idp_trust: setting } : {}) });
    if (fetched) await putMetadata(w, row, fetched, trustIdFor(row));
    return viewFromRow(row);
  });
}

export function deleteCredential(repl: Replicator, orgId: string, id: string) {
  return repl.write(async (w) => {
    const current = await lockOwned(w, orgId, id);
    const now = new Date().toISOString();
    await w.put(credentialsTable, credentialTombstone(current, now));
    // Its metadata and whatever other features declared part of it (the SSO settings): in this change, so
    // every region applies the delete whole, and the tombstone collector later takes them all.
    await w.deleteParts(credentialsTable, id, now);
    return { id };
  });
}
