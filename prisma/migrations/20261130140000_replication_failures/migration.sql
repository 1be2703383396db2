-- Change events this region could not apply. Failures are counted per change here (not in memory), so a
-- restart does not reset them; an event that keeps failing, names a table this version does not know, or
-- carries a version too far ahead of this region's clock is parked (parked_at set): it is acknowledged to
-- its origin as parked, and re-applied after an upgrade (at start, or POST /admin/replication/parked/retry).
CREATE TABLE "replication_failures" (
    "change_id" UUID NOT NULL,
    "origin_region" TEXT NOT NULL,
    "stream_id" TEXT,
    "event" JSONB NOT NULL,
    "failures" INTEGER NOT NULL,
    "reason" TEXT NOT NULL,
    "last_error" TEXT NOT NULL,
    "first_failed_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_failed_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "parked_at" TIMESTAMPTZ(3),
    CONSTRAINT "replication_failures_pkey" PRIMARY KEY ("change_id")
);
-- Parked events are listed and retried oldest first (not expressible in schema.prisma).
CREATE INDEX "replication_failures_parked_idx" ON "replication_failures"("parked_at") WHERE "parked_at" IS NOT NULL;
