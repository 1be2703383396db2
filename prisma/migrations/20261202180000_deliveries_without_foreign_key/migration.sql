-- The delivery rows lose their foreign key to the outbox: each one's check locked the outbox row (a WAL
-- record per delivery) and cost ~10 µs of Postgres per change for a guarantee the relay keeps itself (its
-- retention DELETE removes an outbox row and its delivery rows in one statement, src/replication/relay.ts).
-- Measured in a scratch database, two deliveries per change: 26.5-28.5 against 16-17 µs and 614 against
-- 499 bytes of WAL per change.
ALTER TABLE "replication_deliveries" DROP CONSTRAINT "replication_deliveries_change_id_fkey";
