/**
 * Migrations whose file changed after a commit of main had shipped it, and one that was dropped. A database
 * migrated by such a commit records the earlier file's checksum, and lacks what the later file added: the
 * migrator refused to start the region on it ("changed after it was applied"), so that deployment could
 * not be upgraded at all. For each earlier file this says what brings a database that ran it to what the
 * current file makes; the migrator runs that once and notes it in the record (its logs), which keeps the
 * earlier checksum: that version's migrator still finds its own (migrate.ts). Each catch-up is idempotent.
 * A checksum not listed here is still refused: nobody knows what that file did.
 *
 * Never edit a migration that is on main: add a new one. Should it happen anyway, add the earlier file's
 * checksum here with its catch-up, and a case to test/db/edited-migrations.test.ts.
 */

export interface EarlierVersion {
  /** sha256 of the file as the named commit shipped it. */
  checksum: string;
  /** The commit that shipped it (for the reader). */
  commit: string;
  /** SQL that brings a database which ran that file to what the current file makes. */
  catchUp: string;
}

export const EDITED_MIGRATIONS: Readonly<Record<string, readonly EarlierVersion[]>> = {
  // The statistics on the held expression came 6 minutes after the index (2a097ec).
  '20261201140000_metadata_held_index': [
    {
      commit: 'c603fef',
      checksum: 'fcd946ffa6b2a01af85919b7011b74c20fbf982c7440375a988b220e62edc980',
      catchUp: `CREATE STATISTICS IF NOT EXISTS "saml_credential_metadata_held_stats" ON (jsonb_typeof("metadata" -> 'pending')) FROM "saml_credential_metadata";
ANALYZE "saml_credential_metadata";`,
    },
  ],
  // The trigger that deletes delivery rows with their outbox row came with bb22940; without it the current
  // relay's retention leaves every confirmed change's delivery rows behind for good.
  '20261202180000_deliveries_without_foreign_key': [
    {
      commit: '18273cc',
      checksum: 'fb146b2d0c3cbba3b5ded2255bfd6f08cddcd1dc6d825f1eafa4afcc3e18d3cb',
      catchUp: `CREATE OR REPLACE FUNCTION "replication_outbox_deleted"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM "replication_deliveries" d USING gone WHERE d."change_id" = gone."change_id";
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS "replication_outbox_deleted" ON "replication_outbox";
CREATE TRIGGER "replication_outbox_deleted" AFTER DELETE ON "replication_outbox"
  REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION "replication_outbox_deleted"();
DELETE FROM "replication_deliveries" d WHERE NOT EXISTS (SELECT 1 FROM "replication_outbox" o WHERE o."change_id" = d."change_id");`,
    },
  ],
  // The metadata row's trust_id column came with 2ed4d52 (2d05ef9 kept it in the metadata JSON): without it
  // every write of a metadata row fails.
  '20261203090000_credential_trust_setting': [
    {
      commit: '2d05ef9',
      checksum: '42f73429310fe10f5d62abe8d2751ff320e2fc48a1cd23968d5575f41fd67c5e',
      catchUp: 'ALTER TABLE "saml_credential_metadata" ADD COLUMN IF NOT EXISTS "trust_id" TEXT COLLATE "C";',
    },
  ],
};

/**
 * Migrations that main shipped and later deleted, by name: what undoes each (idempotent), and the checksums
 * of its files. The migrator runs the undo once and marks the migration rolled back.
 */
export const DROPPED_MIGRATIONS: Readonly<Record<string, { checksums: readonly string[]; undo: string }>> = {
  // Rows kept inline (8cbb036, narrowed by cc6e2e2), dropped by 768e03c after a review measured the metadata
  // heap 16 times larger and the refresh sweep reading 17 times more pages.
  '20261201150000_rows_inline': {
    checksums: ['b0b01f6259f0830daf22ec3604f928c787f43961a8850cc6e5295805af794ab8', '74fb372c2722708daf74ec07ba4a200cfa561ab4083d0ae9a616d1f1a9e9f374'],
    undo: ['saml_credential_metadata', 'replication_outbox', 'idempotency_keys', 'replication_failures'].map((t) => `ALTER TABLE "${t}" RESET (toast_tuple_target);`).join('\n'),
  },
};
