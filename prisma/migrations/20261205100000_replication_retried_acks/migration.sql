-- The acks owed to their origins for parked change events this region applied on a retry: written in the
-- transaction that applies the event (and deletes its parked row), deleted once the origin's Redis took the
-- ack. Such a change has no inbox entry left and its origin confirmed it on the parked ack, so nothing else
-- would tell the origin; kept only in memory, a restart while the origin's Redis did not answer lost the ack
-- and the origin's status showed this region as parked for good. Local to each region; `outcome` is the
-- superseded outcome (tracker.ts AckOutcome), null when the change applied and holds.
CREATE TABLE "replication_retried_acks" (
    "change_id" UUID NOT NULL,
    "origin_region" TEXT NOT NULL,
    "outcome" JSONB,
    "applied_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "replication_retried_acks_pkey" PRIMARY KEY ("change_id")
);
