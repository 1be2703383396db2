-- Tombstone collection (src/replication/tombstones.ts). At most one row, written by the first collection:
-- the highest cut-off below which this region has collected tombstones, and how many, per table.
-- A change of a row this region does not hold whose creation is older than collected_through is not
-- applied: that row's tombstone was collected here (row-store.ts).
CREATE TABLE "replication_horizon" (
    "id" SMALLINT NOT NULL DEFAULT 1,
    "collected_through" TEXT COLLATE "C" NOT NULL DEFAULT '',
    "collected" JSONB NOT NULL DEFAULT '{}',
    "last_collected_at" TIMESTAMPTZ(3),
    CONSTRAINT "replication_horizon_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "replication_horizon_one_row" CHECK ("id" = 1)
);

-- The collector finds tombstones older than its cut-off through these partial indexes (not expressible
-- in schema.prisma) instead of scanning the tables.
CREATE INDEX "saml_provider_credentials_tombstones_idx" ON "saml_provider_credentials"("version") WHERE "deleted_at" IS NOT NULL;
CREATE INDEX "saml_credential_metadata_tombstones_idx" ON "saml_credential_metadata"("version") WHERE "deleted_at" IS NOT NULL;
CREATE INDEX "api_keys_tombstones_idx" ON "api_keys"("version") WHERE "deleted_at" IS NOT NULL;
CREATE INDEX "organizations_tombstones_idx" ON "organizations"("version") WHERE "deleted_at" IS NOT NULL;
CREATE INDEX "infisical_saml_configs_tombstones_idx" ON "infisical_saml_configs"("version") WHERE "deleted_at" IS NOT NULL;
CREATE INDEX "saml_sso_settings_tombstones_idx" ON "saml_sso_settings"("version") WHERE "deleted_at" IS NOT NULL;
