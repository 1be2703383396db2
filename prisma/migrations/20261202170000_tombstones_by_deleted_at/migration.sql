-- The collector's partial indexes on tombstones are keyed by deleted_at instead of version. An index that
-- names a column, in its key or its predicate, makes every UPDATE that changes that column a non-HOT
-- update (a new tuple wherever there is room, and an entry in every index of the table), and every write
-- of a replicated row changes its version: with the version-keyed indexes no update of a live row was HOT,
-- and a row PATCHed again and again left a dead tuple and two index entries per PATCH until a vacuum.
-- deleted_at changes only when a row is deleted. The collector still deletes only tombstones whose version
-- is below its cut-off; it finds them through deleted_at, which a delete sets before put stamps the version
-- (src/replication/tombstones.ts).
DROP INDEX "saml_provider_credentials_tombstones_idx";
DROP INDEX "saml_credential_metadata_tombstones_idx";
DROP INDEX "api_keys_tombstones_idx";
DROP INDEX "organizations_tombstones_idx";
DROP INDEX "infisical_saml_configs_tombstones_idx";
DROP INDEX "saml_sso_settings_tombstones_idx";
CREATE INDEX "saml_provider_credentials_tombstones_idx" ON "saml_provider_credentials"("deleted_at") WHERE "deleted_at" IS NOT NULL;
CREATE INDEX "saml_credential_metadata_tombstones_idx" ON "saml_credential_metadata"("deleted_at") WHERE "deleted_at" IS NOT NULL;
CREATE INDEX "api_keys_tombstones_idx" ON "api_keys"("deleted_at") WHERE "deleted_at" IS NOT NULL;
CREATE INDEX "organizations_tombstones_idx" ON "organizations"("deleted_at") WHERE "deleted_at" IS NOT NULL;
CREATE INDEX "infisical_saml_configs_tombstones_idx" ON "infisical_saml_configs"("deleted_at") WHERE "deleted_at" IS NOT NULL;
CREATE INDEX "saml_sso_settings_tombstones_idx" ON "saml_sso_settings"("deleted_at") WHERE "deleted_at" IS NOT NULL;
