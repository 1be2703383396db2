-- A local write sends its row upserts together with its outbox row and COMMIT, in one round trip
-- (src/replication/replicator.ts). It has locked and read each row first, so it knows each upsert writes
-- its row; should one not (a writer that skips the per-key locks got there first), this raises a
-- serialization failure, which rolls the whole transaction back before COMMIT runs, and the write is run
-- again from the start.
CREATE FUNCTION "replication_expect_written"(p_written BIGINT, p_expected BIGINT, p_what TEXT)
RETURNS VOID LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF p_written <> p_expected THEN
    RAISE EXCEPTION 'write to % was refused by the merge rule (% of % rows written)', p_what, p_written, p_expected
      USING ERRCODE = '40001';
  END IF;
END
$$;
