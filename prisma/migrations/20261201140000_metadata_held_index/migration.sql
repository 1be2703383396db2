-- GET /admin/metadata-refresh (which the console asks of every region every few seconds) lists and counts
-- the credentials holding a document for an operator through this instead of reading every metadata row.
CREATE INDEX "saml_credential_metadata_held_idx" ON "saml_credential_metadata"("credential_id") WHERE "deleted_at" IS NULL AND jsonb_typeof("metadata" -> 'pending') = 'object';
-- Postgres keeps no statistics of an expression without these: it guessed 0.5 % of the rows held and
-- joined every schedule against them instead of looking the few held ones up.
CREATE STATISTICS "saml_credential_metadata_held_stats" ON (jsonb_typeof("metadata" -> 'pending')) FROM "saml_credential_metadata";
ANALYZE "saml_credential_metadata";
