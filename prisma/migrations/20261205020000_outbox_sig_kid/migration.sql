-- The replication key id each outbox row's event was signed with, written with the row, so that GET
-- /admin/replication counts this region's unsettled rows per key (the last step of a REPLICATION_KEYS
-- rotation) without reading the events themselves: a long outage's backlog holds many, TOASTed. Rows written
-- before this migration, or by a version without it during a rolling upgrade, have none; the count reads
-- theirs from the event. Nullable and without a default: no rewrite of the table.
ALTER TABLE "replication_outbox" ADD COLUMN "sig_kid" TEXT;
