-- Replicated tables: version is a hybrid-logical-clock stamp compared as text in "C" collation.

CREATE TABLE "organizations" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "parent_id" UUID,
    "created_at" TIMESTAMPTZ(3) NOT NULL,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,
    "deleted_at" TIMESTAMPTZ(3),
    "version" TEXT COLLATE "C" NOT NULL,
    "origin_region" TEXT NOT NULL,
    CONSTRAINT "organizations_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "organizations_parent_id_idx" ON "organizations"("parent_id");

CREATE TABLE "api_keys" (
    "org_id" UUID NOT NULL,
    "key_id" TEXT NOT NULL,
    "key_hash" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,
    "deleted_at" TIMESTAMPTZ(3),
    "version" TEXT COLLATE "C" NOT NULL,
    "origin_region" TEXT NOT NULL,
    CONSTRAINT "api_keys_pkey" PRIMARY KEY ("org_id")
);
CREATE UNIQUE INDEX "api_keys_key_id_key" ON "api_keys"("key_id");

CREATE TABLE "saml_provider_credentials" (
    "id" UUID NOT NULL,
    "org_id" UUID NOT NULL,
    "label" TEXT NOT NULL,
    "idp_metadata_url" TEXT NOT NULL,
    "email_claims" TEXT[],
    "enable_in_slashid_oidc_authz_server" BOOLEAN NOT NULL,
    "metadata" JSONB,
    "created_at" TIMESTAMPTZ(3) NOT NULL,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,
    "deleted_at" TIMESTAMPTZ(3),
    "version" TEXT COLLATE "C" NOT NULL,
    "origin_region" TEXT NOT NULL,
    CONSTRAINT "saml_provider_credentials_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "saml_provider_credentials_org_id_created_at_id_idx" ON "saml_provider_credentials"("org_id", "created_at", "id");

CREATE TABLE "replication_outbox" (
    "id" BIGSERIAL NOT NULL,
    "change_id" UUID NOT NULL,
    "event" JSONB NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "published_at" TIMESTAMPTZ(3),
    "stream_id" TEXT,
    "confirmed_at" TIMESTAMPTZ(3),
    CONSTRAINT "replication_outbox_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "replication_outbox_change_id_key" ON "replication_outbox"("change_id");
-- Partial indexes for the relay and the confirmer (not expressible in schema.prisma).
CREATE INDEX "replication_outbox_unpublished_idx" ON "replication_outbox"("id") WHERE "published_at" IS NULL;
CREATE INDEX "replication_outbox_unconfirmed_idx" ON "replication_outbox"("id") WHERE "published_at" IS NOT NULL AND "confirmed_at" IS NULL;

CREATE TABLE "replication_progress" (
    "origin_region" TEXT NOT NULL,
    "applied_count" BIGINT NOT NULL,
    "last_change_id" UUID NOT NULL,
    "last_event_at" TIMESTAMPTZ(3) NOT NULL,
    "last_applied_at" TIMESTAMPTZ(3) NOT NULL,
    CONSTRAINT "replication_progress_pkey" PRIMARY KEY ("origin_region")
);
