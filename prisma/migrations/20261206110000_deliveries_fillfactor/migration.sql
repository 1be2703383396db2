-- Delivery rows' pages filled to 30 % at insert, so that the confirmation (confirmed_at and the ack, about
-- 90 bytes more per row) rewrites each row on its own page as a HOT update: no new entry in the primary key's
-- index, and only the changed bytes logged. Full pages sent every new version to another page, with an index
-- entry each. Measured on a copy of the table (20,000 changes, two deliveries each, confirmed in rounds of
-- 200 changes, each its own transaction): WAL per confirmation 400 -> 191 B, HOT 3 % -> 100 %, the primary
-- key 3.4 -> 2.5 MB, the heap 11.4 -> 12.1 MB (docs/performance.md, "forty-first session"); at 50 % only 46 %
-- were HOT. Rows waiting for a paused region take ~3x the pages meanwhile (~100 bytes each: a tenth of their
-- outbox row's). Takes effect for new pages; the lock it takes (SHARE UPDATE EXCLUSIVE) does not block writes.
ALTER TABLE "replication_deliveries" SET (fillfactor = 30);
