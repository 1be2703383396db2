-- Per-region Redis (issue I): the origin delivers each change into every other region's inbox and records
-- each delivery and its confirmation (the destination's ack) here, one row per (change, destination).
CREATE TABLE "replication_deliveries" (
    "change_id" UUID NOT NULL,
    "region" TEXT NOT NULL,
    "stream_id" TEXT NOT NULL,
    "delivered_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "confirmed_at" TIMESTAMPTZ(3),

    CONSTRAINT "replication_deliveries_pkey" PRIMARY KEY ("change_id","region")
);

ALTER TABLE "replication_deliveries" ADD CONSTRAINT "replication_deliveries_change_id_fkey" FOREIGN KEY ("change_id") REFERENCES "replication_outbox"("change_id") ON DELETE CASCADE ON UPDATE CASCADE;
