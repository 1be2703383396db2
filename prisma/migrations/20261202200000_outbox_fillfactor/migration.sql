-- Outbox pages filled to half at insert, so that the row's own page has room for the versions its published
-- and confirmed marks write. Those updates cannot be HOT (published_at is in the partial indexes' predicates),
-- but on the same page Postgres logs only the bytes that changed; on a full page the new version went to
-- another page and was logged whole, the signed event included (~1 KB per PATCH). WAL per PATCH in `npm run
-- bench`: 3,489 -> 2,420 B (docs/performance.md, "sixteenth session"). Takes effect for new pages; the lock it
-- takes (SHARE UPDATE EXCLUSIVE) does not block writes.
ALTER TABLE "replication_outbox" SET (fillfactor = 50);
