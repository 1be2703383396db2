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
    const live = current && !current.deleted_at ? current : null;
    const row: SettingsRow = {
      credential_id: credentialId,
      org_id: orgId,
      allow_idp_initiated: body.allow_idp_initiated ?? live?.allow_idp_initiated === true,
      created_at: typeof current?.created_at === 'string' ? current.created_at : new Date().toISOString(),
    };
    await w.put(settingsTable, row);
    return { credential_id: credentialId, allow_idp_initiated: row.allow_idp_initiated };
  });
}
