/**
 * A credential's metadata document is stored without compression (migration 20261206040000): it is mostly
 * base64 that pglz cannot shrink, so the attempt cost every write CPU for nothing. A document past the
 * TOAST threshold still goes out of line, uncompressed, even one that would compress.
 */
import { poolOf } from '../../src/db/client';
import { migratedDb, type MigratedDb } from '../support/migrated-db';

let m: MigratedDb;
beforeAll(async () => {
  m = await migratedDb('metadata-storage');
});
afterAll(() => m?.close());

test('a metadata document is stored out of line without a compression attempt, even one that compresses', async () => {
  const pool = poolOf(m.db);
  const id = '01a20906-0000-7000-8000-000000000001';
  // ~6 KB of one repeated service: pglz would store it in a fraction of that.
  const metadata = { entity_id: 'https://idp.example.com', sso_services: Array.from({ length: 8 }, () => ({ binding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST', location: `https://idp.example.com/${'sso/'.repeat(150)}` })) };
  await pool.query(
    `INSERT INTO saml_credential_metadata (credential_id, org_id, idp_metadata_url, metadata, trust_id, created_at, updated_at, version, created_version, origin_region)
     VALUES ($1, $1, 'https://idp.example.com/md', $2::jsonb, '', now(), now(), 'v', 'v', 'us-iowa')`,
    [id, JSON.stringify(metadata)],
  );
  const { rows } = await pool.query<{ method: string | null; stored: number; text: number }>(
    'SELECT pg_column_compression(metadata) AS method, pg_column_size(metadata) AS stored, length(metadata::text) AS text FROM saml_credential_metadata WHERE credential_id = $1',
    [id],
  );
  expect(rows[0]?.text).toBeGreaterThan(5000);
  expect(rows[0]?.method).toBeNull();
  expect(rows[0]?.stored).toBeGreaterThan(5000);
});
