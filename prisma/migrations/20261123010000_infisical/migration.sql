-- Infisical-dialect SAML SSO configs: one per organization, so the org is the replication key. The id is
-- derived from the org id (UUID v5), so two regions that create the same org's config at the same moment
-- write the same row and converge through last-writer-wins instead of leaving two configs behind.

CREATE TABLE "infisical_saml_configs" (
    "org_id" UUID NOT NULL,
    "id" UUID NOT NULL,
    "auth_provider" TEXT NOT NULL,
    "is_active" BOOLEAN NOT NULL,
    "entry_point" TEXT NOT NULL,
    "issuer" TEXT NOT NULL,
    "cert" TEXT NOT NULL,
    "enable_group_sync" BOOLEAN NOT NULL,
    "last_used" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,
    "deleted_at" TIMESTAMPTZ(3),
    "version" TEXT COLLATE "C" NOT NULL,
    "origin_region" TEXT NOT NULL,
    CONSTRAINT "infisical_saml_configs_pkey" PRIMARY KEY ("org_id")
);
CREATE UNIQUE INDEX "infisical_saml_configs_id_key" ON "infisical_saml_configs"("id");
