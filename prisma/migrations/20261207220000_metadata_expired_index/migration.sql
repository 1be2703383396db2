-- GET /admin/metadata-refresh counts every credential whose stored IdP metadata is past its validUntil (its list
-- stops at 500) through this index instead of reading every document: the console asks every region for it every
-- few seconds, and the documents are stored out of line (reading one is a TOAST fetch; 1.5 s for 100,000).
--
-- The document's validUntil in milliseconds since the epoch, as Date.parse reads it, so the count judges by the
-- rule the list's expired_since and sign-in use (expiredAt, src/provider-credentials/metadata.ts). The service
-- writes it as toISOString does; any ISO 8601 date-time with a zone (Z or ±hh:mm) of the years 0001-9999 reads the
-- same here: the fraction cut to milliseconds, and a day past its month's end carried into the next month, as
-- Date.parse does. Anything else is NULL, not counted (the service never writes it; Date.parse reads some of it,
-- a value without a zone in the process's time zone). Worked out by hand, not by a cast to timestamptz: that
-- reads a value without a zone in the server's time zone (an index may not depend on it), and refuses 30 February
-- with an error, which would refuse the write of a row replicated with such a value. Its upkeep costs about 9 µs
-- of the Postgres backend per metadata row written (100,000 calls: 0.9 s).
CREATE FUNCTION "metadata_valid_until_ms"(p_metadata JSONB) RETURNS BIGINT LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  v TEXT;
  zone TEXT;
  fraction TEXT := '';
BEGIN
  IF jsonb_typeof(p_metadata -> 'valid_until') IS DISTINCT FROM 'string' THEN
    RETURN NULL;
  END IF;
  v := p_metadata ->> 'valid_until';
  IF v !~ '^(000[1-9]|00[1-9]\d|0[1-9]\d\d|[1-9]\d{3})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$' THEN
    RETURN NULL;
  END IF;
  zone := CASE WHEN right(v, 1) = 'Z' THEN '' ELSE right(v, 6) END;
  IF substr(v, 20, 1) = '.' THEN
    fraction := substr(v, 21, length(v) - 20 - greatest(length(zone), 1));
  END IF;
  RETURN (make_date(substr(v, 1, 4)::int, substr(v, 6, 2)::int, 1) - DATE '1970-01-01' + substr(v, 9, 2)::int - 1) * 86400000::bigint
       + substr(v, 12, 2)::int * 3600000 + substr(v, 15, 2)::int * 60000 + substr(v, 18, 2)::int * 1000
       + rpad(left(fraction, 3), 3, '0')::int
       - CASE zone WHEN '' THEN 0 ELSE (left(zone, 1) || '1')::int * (substr(zone, 2, 2)::int * 60 + substr(zone, 5, 2)::int) * 60000 END;
END $$;

CREATE INDEX "saml_credential_metadata_valid_until_idx" ON "saml_credential_metadata"("metadata_valid_until_ms"("metadata")) WHERE "deleted_at" IS NULL;
-- Without statistics of the expression Postgres guessed a third of the rows expired (those of a partial index
-- are not used), and read every credential of the region to join them.
CREATE STATISTICS "saml_credential_metadata_valid_until_stats" ON ("metadata_valid_until_ms"("metadata")) FROM "saml_credential_metadata";
ANALYZE "saml_credential_metadata";
