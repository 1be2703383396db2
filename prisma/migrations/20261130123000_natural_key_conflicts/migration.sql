-- No acknowledged write silently discarded on natural keys (issue G, items 1-3).
--
-- created_version: the HLC version of the write that created the row (every row a transaction creates
-- gets that transaction's first version). It ranks first in the merge order: of two rows created
-- concurrently under one key, the earlier create wins, whatever was written to either of them afterwards.
-- Rows that exist before this migration get '' ("created before stamps existed"), which ranks before any
-- stamped create: an existing row is never replaced by a later create.
ALTER TABLE "organizations" ADD COLUMN "created_version" TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE "organizations" ALTER COLUMN "created_version" DROP DEFAULT;
ALTER TABLE "api_keys" ADD COLUMN "created_version" TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE "api_keys" ALTER COLUMN "created_version" DROP DEFAULT;
ALTER TABLE "saml_provider_credentials" ADD COLUMN "created_version" TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE "saml_provider_credentials" ALTER COLUMN "created_version" DROP DEFAULT;
ALTER TABLE "saml_credential_metadata" ADD COLUMN "created_version" TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE "saml_credential_metadata" ALTER COLUMN "created_version" DROP DEFAULT;
ALTER TABLE "infisical_saml_configs" ADD COLUMN "created_version" TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE "infisical_saml_configs" ALTER COLUMN "created_version" DROP DEFAULT;
ALTER TABLE "idempotency_keys" ADD COLUMN "created_version" TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE "idempotency_keys" ALTER COLUMN "created_version" DROP DEFAULT;

-- API keys become rows of their own, keyed by the key id: an organization may hold several live keys, and
-- two rotations in two regions at once each add a key instead of one overwriting the other.
ALTER TABLE "api_keys" DROP CONSTRAINT "api_keys_pkey";
DROP INDEX "api_keys_key_id_idx";
ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_pkey" PRIMARY KEY ("key_id");
CREATE INDEX "api_keys_org_id_idx" ON "api_keys"("org_id");

-- The organization a change belongs to, so an API client can follow its own change (and no other org's).
ALTER TABLE "replication_outbox" ADD COLUMN "org_id" UUID;

-- The change that stored an idempotency key (and the resource), so a replay can wait on it.
ALTER TABLE "idempotency_keys" ADD COLUMN "change_id" UUID;
