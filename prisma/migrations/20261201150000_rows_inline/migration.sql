-- Rows of 2-8 KB are kept whole in their table instead of compressed (pglz) and moved out of line into
-- the TOAST table: a credential's parsed metadata (~2.5 KB with one certificate), the outbox's signed event
-- of a create (the credential and its metadata, ~4 KB), an idempotent create's stored answer and a parked
-- event. Each such insert paid for a compression that barely shrinks base64 certificates, a second heap
-- insert and an index insert in the TOAST table, and every read of the row a TOAST fetch. Rows above 8 KB
-- (a document with many certificates) are still compressed and moved out of line. Existing rows are
-- rewritten only when they are next written.
ALTER TABLE "saml_credential_metadata" SET (toast_tuple_target = 8160);
ALTER TABLE "replication_outbox" SET (toast_tuple_target = 8160);
ALTER TABLE "idempotency_keys" SET (toast_tuple_target = 8160);
ALTER TABLE "replication_failures" SET (toast_tuple_target = 8160);
