/**
 * The SSO options of a credential, set by its organization: a replicated row of their own (saml_sso_settings),
 * so they never race a PATCH of the credential or a metadata refresh.
 */
import { credentialNotFound } from '../provider-credentials/service';
import { credentialsTable } from '../provider-credentials/store';
import type { Replicator } from '../replication/replicator';
import type { SettingsBody, SettingsRow, SettingsView } from './schema';
import { settingsTable } from './store';

export function patchSettings(repl: Replicator, orgId: string, credentialId: string, body: SettingsBody) {
  return repl.write(async (w): Promise<SettingsView> => {
    const credential = await w.lock(credentialsTable, credentialId);
    if (!credential || credential.deleted_at || credential.org_id !== orgId) throw credentialNotFound(credentialId);
    const current = await w.lock(settingsTable, credentialId);
    // Settings are tombstoned only with their credential (its delete, or the part sweep of a region where the
    // credential is a tombstone), and a delete is final: the credential's own delete is on its way here. So
    // the 404 it will answer, not the 409 of a write the tombstone outranks.
    if (current?.deleted_at) throw credentialNotFound(credentialId);
    const row: SettingsRow = {
      credential_id: credentialId,
      org_id: orgId,
      allow_idp_initiated: body.allow_idp_initiated ?? current?.allow_idp_initiated === true,
      created_at: typeof current?.created_at === 'string' ? current.created_at : new Date().toISOString(),
    };
    await w.put(settingsTable, row);
    return { credential_id: credentialId, allow_idp_initiated: row.allow_idp_initiated };
  });
}
