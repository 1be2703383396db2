/**
 * Credential rows, their changes and outbox rows as a local write's transaction holds them, for the tests
 * of the row store's write path (local-write-tx, row-guesses), each over a migrated database of its own.
 */
import type { Pool } from 'pg';
import { poolOf, type Db } from '../../src/db/client';
import { credentialsTable } from '../../src/provider-credentials/store';
import { formatVersion } from '../../src/replication/hlc';
import { RowStore, type Statement } from '../../src/replication/row-store';
import type { Row, RowChange } from '../../src/replication/tables';
import { migratedDb, type MigratedDb } from './migrated-db';

export const v = (wall: number): string => formatVersion({ wall, counter: 0, region: 'us-iowa' });

/** The credential row `id` of `org` at `version`, labelled `label`. */
export const credentialRow = (org: string, id: string, version: string, label: string): Row => ({
  id, org_id: org, label, idp_metadata_url: 'https://idp.example.com/md', email_claims: [], enable_in_slashid_oidc_authz_server: false,
  home_region: 'us-iowa', created_at: '2026-11-23T00:00:00.000Z', updated_at: '2026-11-23T00:00:00.000Z', deleted_at: null,
  origin_region: 'us-iowa', version, created_version: v(1000),
});

/**
 * Sets the validUntil of credential $1's stored IdP metadata to $2 (ISO): how the tests make a stored document
 * expired (or about to) without an IdP serving one.
 */
export const SET_VALID_UNTIL = `UPDATE saml_credential_metadata SET metadata = jsonb_set(metadata, '{valid_until}', to_jsonb($2::text)) WHERE credential_id = $1::uuid`;

export const change = (r: Row): RowChange => ({ table: credentialsTable.name, key: String(r.id), version: String(r.version), row: r });

/** An outbox row of `org` (an empty event): what a write commits with its upserts. */
export const outboxRow = (org: string, changeId: string): Statement => ({
  sql: 'INSERT INTO replication_outbox (change_id, event, org_id) VALUES ($1::uuid, $2::jsonb, $3::uuid)',
  values: [changeId, '{}', org],
  exec: true,
});

export interface CredentialStore {
  m: MigratedDb;
  db: Db;
  pool: Pool;
  store: RowStore;
}

/** A migrated database named after `name`, its pool and a row store of the credentials table. */
async function credentialStore(name: string): Promise<CredentialStore> {
  const m = await migratedDb(name);
  return { m, db: m.db, pool: poolOf(m.db), store: await RowStore.load(m.db, [credentialsTable]) };
}

/**
 * The test file's credential store (see credentialStore): made before its tests, closed after them. Its
 * fields are set once the test file's beforeAll ran.
 */
export function useCredentialStore(name: string): CredentialStore {
  const s = {} as CredentialStore;
  beforeAll(async () => {
    Object.assign(s, await credentialStore(name));
  });
  afterAll(() => s.m?.close());
  return s;
}

/** How many outbox rows (0 or 1) the database behind `pool` holds for the change. */
export const inOutbox = async (pool: Pool, changeId: string): Promise<number> =>
  Number((await pool.query('SELECT 1 FROM replication_outbox WHERE change_id = $1', [changeId])).rowCount);
