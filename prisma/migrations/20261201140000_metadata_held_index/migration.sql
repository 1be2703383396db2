-- GET /admin/metadata-refresh (which the console asks of every region every few seconds) lists and counts
-- the credentials holding a document for an operator through this instead of reading every metadata row.
CREATE INDEX "saml_credential_metadata_held_idx" ON "saml_credential_metadata"("credential_id") WHERE "deleted_at" IS NULL AND jsonb_typeof("metadata" -> 'pending') = 'object';
