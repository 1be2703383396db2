-- The relay deletes confirmed outbox rows past their retention every few seconds; this partial index lets
-- it find them without scanning the table (not expressible in schema.prisma).
CREATE INDEX "replication_outbox_confirmed_at_idx" ON "replication_outbox"("confirmed_at") WHERE "confirmed_at" IS NOT NULL;
