/**
 * Which rows of a change an applier does not hold against it when they lose (deletedWithOwner): the rows an
 * organization's delete tombstones with it (its keys, config and credentials, a credential's parts), and only
 * in a change that deletes their owner. Every other write that tombstones owned rows is judged by all of them.
 */
import { samlConfigsTable } from '../../src/infisical/store';
import { apiKeysTable, organizationsTable } from '../../src/organizations/store';
import { credentialsTable, metadataTable } from '../../src/provider-credentials/store';
import { deletedWithOwner } from '../../src/replication/apply-transaction';
import { lockedId } from '../../src/replication/row-store';
import type { Row, RowChange } from '../../src/replication/tables';
import { settingsTable } from '../../src/sso/store';

const tables = [organizationsTable, apiKeysTable, credentialsTable, metadataTable, samlConfigsTable, settingsTable];
const store = { tables, has: (name: string) => tables.some((t) => t.name === name), lockedIdOf: (table: string, key: string) => lockedId(table, key.toLowerCase()) };
const ORG = '01a24f00-0000-7000-8000-000000000001';
const CRED = '01a24f00-0000-7000-8000-000000000002';
const AT = '2026-12-07T00:00:00.000Z';
const op = (table: string, key: string, row: Row): RowChange => ({ table, key, version: '001796625000000.000000.us-iowa', row: { deleted_at: AT, ...row } });
const orgTombstone = op('organizations', ORG, { id: ORG, parent_id: null });
const key = op('api_keys', 'k1', { key_id: 'k1', org_id: ORG });
const config = op('infisical_saml_configs', ORG, { org_id: ORG });
const credential = op('saml_provider_credentials', CRED, { id: CRED, org_id: ORG });
const metadata = op('saml_credential_metadata', CRED, { credential_id: CRED, org_id: ORG });
const settings = op('saml_sso_settings', CRED, { credential_id: CRED, org_id: ORG });

test("an organization's delete: its own tombstone counts, its rows' and their parts' do not", () => {
  expect([...deletedWithOwner(store, [orgTombstone, key, config, credential, metadata, settings])].sort()).toEqual([1, 2, 3, 4, 5]);
  // An id in upper case is the same organization.
  expect([...deletedWithOwner(store, [{ ...orgTombstone, key: ORG.toUpperCase() }, config])]).toEqual([1]);
});

test('a credential delete, a key rotation and the sweep (no owner deleted in the change) count every row', () => {
  expect(deletedWithOwner(store, [credential, metadata, settings]).size).toBe(0);
  expect(deletedWithOwner(store, [key, op('api_keys', 'k2', { key_id: 'k2', org_id: ORG, deleted_at: null })]).size).toBe(0);
  expect(deletedWithOwner(store, [config, credential, metadata]).size).toBe(0);
});

test("rows of another organization, or live ones, count in a delete's change", () => {
  const other = '01a24f00-0000-7000-8000-000000000009';
  expect(deletedWithOwner(store, [orgTombstone, op('api_keys', 'k3', { key_id: 'k3', org_id: other })]).size).toBe(0);
  expect(deletedWithOwner(store, [orgTombstone, { ...config, row: { org_id: ORG, deleted_at: null } }]).size).toBe(0);
});
