-- The parsed IdP metadata gets a replicated row of its own, keyed by the credential. A metadata refresh
-- then writes only this row and can never overwrite a concurrent user PATCH of the credential itself
-- (last-writer-wins replaces whole rows).
CREATE TABLE "saml_credential_metadata" (
    "credential_id" UUID NOT NULL,
    "org_id" UUID NOT NULL,
    "idp_metadata_url" TEXT NOT NULL,
    "metadata" JSONB NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,
    "deleted_at" TIMESTAMPTZ(3),
    "version" TEXT COLLATE "C" NOT NULL,
    "origin_region" TEXT NOT NULL,
    CONSTRAINT "saml_credential_metadata_pkey" PRIMARY KEY ("credential_id")
);

INSERT INTO "saml_credential_metadata"
SELECT "id", "org_id", "idp_metadata_url", "metadata", "created_at", "updated_at", "deleted_at", "version", "origin_region"
  FROM "saml_provider_credentials" WHERE "metadata" IS NOT NULL;

ALTER TABLE "saml_provider_credentials" DROP COLUMN "metadata";
