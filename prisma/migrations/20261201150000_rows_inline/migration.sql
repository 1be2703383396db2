-- Rows of 2-8 KB are kept whole in their table instead of compressed (pglz) and moved out of line into
-- the TOAST table, for the tables whose rows are written once and read: a credential's parsed metadata
-- (~2.5 KB with one certificate, ~4 KB with two) and an idempotent create's stored answer. Each such insert
-- paid for a compression that barely shrinks base64 certificates, a second heap insert and an index insert
-- in the TOAST table, and every read of the row a TOAST fetch (insert and reads of the metadata row:
-- +16-21 % in pgbench). Rows above 8 KB (a document with many certificates) are still compressed and moved
-- out of line. Existing rows are rewritten only when they are next written.
-- Not the outbox (nor the failures table): an outbox row is updated twice (published, confirmed) through
-- its partial indexes, so never in place, and each update would copy the whole event instead of a TOAST
-- pointer (its lifecycle ran 25 % slower inline, with the heap 80 times larger until vacuumed).
ALTER TABLE "saml_credential_metadata" SET (toast_tuple_target = 8160);
ALTER TABLE "idempotency_keys" SET (toast_tuple_target = 8160);
