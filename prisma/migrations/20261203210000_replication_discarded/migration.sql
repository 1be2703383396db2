-- Parked change events an operator gave up on (POST /admin/replication/parked/discard), moved here whole from
-- replication_failures: the record of what this region will not apply, with the event to keep or replay by
-- hand, and what stops the same change, delivered again (its origin's Redis lost the ack), from being parked
-- again: such a copy that still does not apply is acked as parked and not kept. Local to each region.
CREATE TABLE "replication_discarded" (
    "change_id" UUID NOT NULL,
    "origin_region" TEXT NOT NULL,
    "stream_id" TEXT,
    "event" JSONB NOT NULL,
    "failures" INTEGER NOT NULL,
    "reason" TEXT NOT NULL,
    "last_error" TEXT NOT NULL,
    "first_failed_at" TIMESTAMPTZ(3) NOT NULL,
    "parked_at" TIMESTAMPTZ(3) NOT NULL,
    "discarded_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "replication_discarded_pkey" PRIMARY KEY ("change_id")
);
