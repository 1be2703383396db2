-- The highest id of this region's outbox rows its relay has seen committed (at most one row; the relay raises it,
-- then the same figure in the region's own Redis). The outbox rows themselves are deleted once confirmed, so
-- only this row still says, in a database restored from a backup, how far the region's own changes had got:
-- a mark in Redis above it means the database lost changes the region had made (src/replication/restore-check.ts).
CREATE TABLE "replication_outbox_mark" (
    "id" SMALLINT NOT NULL DEFAULT 1,
    "committed_through" BIGINT NOT NULL,
    CONSTRAINT "replication_outbox_mark_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "replication_outbox_mark_one_row" CHECK ("id" = 1)
);
