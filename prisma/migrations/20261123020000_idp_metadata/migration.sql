-- The region that created a credential keeps its IdP metadata fresh.
ALTER TABLE "saml_provider_credentials" ADD COLUMN "home_region" TEXT;
UPDATE "saml_provider_credentials" SET "home_region" = "origin_region";
ALTER TABLE "saml_provider_credentials" ALTER COLUMN "home_region" SET NOT NULL;

-- Local to each region (not replicated): when the home region next re-fetches a credential's metadata,
-- and how the last attempts went. Refresh failures are visible here, never silent.
CREATE TABLE "metadata_refresh_state" (
    "credential_id" UUID NOT NULL,
    "next_at" TIMESTAMPTZ(3) NOT NULL,
    "last_attempt_at" TIMESTAMPTZ(3),
    "last_success_at" TIMESTAMPTZ(3),
    "last_error" TEXT,
    "last_error_code" TEXT,
    "consecutive_failures" INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT "metadata_refresh_state_pkey" PRIMARY KEY ("credential_id")
);
CREATE INDEX "metadata_refresh_state_next_at_idx" ON "metadata_refresh_state"("next_at");
