-- Each delivery keeps the ack that confirmed it (applied or superseded, with its time and winner), so the
-- origin still knows a change's outcome per region when its Redis, which holds the ack records, lost them
-- (they are also given a shorter life once the change is confirmed everywhere): change status and the
-- replay of an idempotent request read it there.
ALTER TABLE "replication_deliveries" ADD COLUMN "ack" TEXT;
