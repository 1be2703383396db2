-- A replicated table may have exactly one unique index: its replication key. Rows are written with
-- INSERT ... ON CONFLICT (key); a second unique index turns two concurrent inserts of the same row (a local
-- write and an applied remote change, for instance) into a unique violation instead of a merge.
-- Both columns below are unique by construction (a random key id; an id derived from the org id).
DROP INDEX "api_keys_key_id_key";
CREATE INDEX "api_keys_key_id_idx" ON "api_keys"("key_id");
DROP INDEX "infisical_saml_configs_id_key";
CREATE INDEX "infisical_saml_configs_id_idx" ON "infisical_saml_configs"("id");
