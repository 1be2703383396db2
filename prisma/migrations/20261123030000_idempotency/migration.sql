-- Idempotency keys of POST requests, per organization and endpoint. Replicated, and written in the same
-- change as the resource the request created, so a retry in any region finds the key exactly when it
-- finds the resource. "id" is a digest of (org_id, endpoint, key), the same in every region.
-- Rows are removed by each region's own cleanup a day after expires_at (a local delete: expired keys are
-- never consulted again).

CREATE TABLE "idempotency_keys" (
    "id" TEXT NOT NULL,
    "org_id" UUID NOT NULL,
    "endpoint" TEXT NOT NULL,
    "idempotency_key" TEXT NOT NULL,
    "request_hash" TEXT NOT NULL,
    "response_status" INTEGER NOT NULL,
    "response_body" JSONB NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL,
    "expires_at" TIMESTAMPTZ(3) NOT NULL,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,
    "deleted_at" TIMESTAMPTZ(3),
    "version" TEXT COLLATE "C" NOT NULL,
    "origin_region" TEXT NOT NULL,
    CONSTRAINT "idempotency_keys_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "idempotency_keys_expires_at_idx" ON "idempotency_keys"("expires_at");
