/**
 * A metadata refresh under way (its fetch held by the IdP) when its credential's organization is deleted stores
 * nothing: the organization is checked live with the refresh's commit. The credential is one the delete's change
 * did not take (the organization holds more than one change takes: its keys, which come first, fill the batch),
 * as a credential written in another region before the delete arrived there would be. Before, the refresh stored
 * and replicated the new document, for the sweep to tombstone later.
 */
import { poolOf } from '../../src/db/client';
import { OWNED_DELETE_BATCH } from '../../src/replication/tables';
import { adminHeaders, call, createOrg, eventually, slashidHeaders } from '../support/harness';
import { fixture } from '../support/idp-server';
import { useRefreshRig } from '../support/refresh-rig';

const PATH = '/organizations/sso/saml/provider-credentials';
const rig = useRefreshRig('refresh-deleted', { tombstoneCollection: { enabled: false } });
const sql = <T = Record<string, unknown>>(text: string, values: unknown[] = []) => poolOf(rig.r.region.db).query(text, values).then((res) => res.rows as T[]);
const metadataVersion = async (id: string) => (await sql<{ version: string }>('SELECT version FROM saml_credential_metadata WHERE credential_id = $1', [id]))[0]?.version;
const changesOf = async (id: string) =>
  (await sql<{ n: number }>(`SELECT count(*)::int AS n FROM replication_outbox, jsonb_array_elements(event->'ops') op WHERE op->>'key' = $1`, [id]))[0]?.n;

test('a refresh whose fetch was under way when the organization was deleted stores nothing for its credential', async () => {
  const { r, idp, refresher } = rig;
  const org = await createOrg(r.url, 'leaving');
  idp.set('leaving.xml', fixture('okta.xml'));
  const created = await call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url('leaving.xml'), label: 'leaving' }, headers: slashidHeaders(org) });
  expect(created.status).toBe(201);
  const id = created.body.result.id as string;
  // Keys as replicated creates leave them: the delete's change takes keys before credentials, and is full with them.
  const version = `${String(Date.now()).padStart(15, '0')}.000000.us-iowa`;
  await sql(
    `INSERT INTO api_keys (key_id, org_id, key_hash, created_at, updated_at, version, created_version, origin_region)
     SELECT 'bulk-' || gen_random_uuid(), $1, 'x', now(), now(), $2, $2, 'us-iowa' FROM generate_series(1, $3)`,
    [org.id, version, OWNED_DELETE_BATCH],
  );
  // The IdP now serves a changed document (another sign-in URL): a refresh would write it.
  idp.set('leaving.xml', fixture('okta.xml').replaceAll('/sso/saml"', '/sso/saml2"'));
  await sql("UPDATE metadata_refresh_state SET next_at = now() - interval '1 minute' WHERE credential_id = $1", [id]);
  const stored = await metadataVersion(id);
  const changesBefore = await changesOf(id);

  const release = idp.hold('leaving.xml');
  const refreshing = refresher.runOnce(5);
  try {
    expect(await eventually(async () => idp.held() === 1, 15_000, 20)).toBe(true);
    const del = await call(r.url, 'DELETE', `/admin/organizations/${org.id}`, { headers: adminHeaders });
    expect(del.status).toBe(204);
    // The credential outlived the delete's change (as the test means it to).
    expect((await sql('SELECT 1 FROM saml_provider_credentials WHERE id = $1 AND deleted_at IS NULL', [id])).length).toBe(1);
  } finally {
    release();
  }
  expect(await refreshing).toBe(1);
  expect(await metadataVersion(id)).toBe(stored);
  expect(await changesOf(id)).toBe(changesBefore);
  // Not taken for a failure either (nothing to show in the refresh admin route), and not fetched again.
  expect(refresher.failed).toBe(0);
  expect(await refresher.runOnce(5)).toBe(0);
});
