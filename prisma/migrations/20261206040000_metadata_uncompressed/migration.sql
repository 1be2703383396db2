-- A credential's parsed IdP metadata is stored without compression (STORAGE EXTERNAL: out of line once its
-- row is past the TOAST threshold, as before, but with no pglz attempt first). The document is mostly its
-- certificates' base64, which pglz cannot shrink by the quarter it requires (Okta's 2.8 KB document was stored
-- in 2,803 bytes), so every write of a document paid a compression attempt for nothing: ~25 µs of the
-- Postgres backend per create, measured on the create's own upsert (docs/performance.md, thirty-ninth
-- session). Changes only how new values are stored; the rows written before stay as they are.
ALTER TABLE "saml_credential_metadata" ALTER COLUMN "metadata" SET STORAGE EXTERNAL;
