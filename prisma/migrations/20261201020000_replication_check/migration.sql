-- Checks that go with a local write's last round trip (src/replication/replicator.ts): the write sends its
-- row upserts, its outbox row and COMMIT together, and some of what it must verify can only be known there
-- (an upsert wrote its row; a create stays within the organization's credential limit). A failed check
-- raises `p_sqlstate` with `p_message`, which rolls the whole transaction back before COMMIT runs:
-- '40001' (serialization failure) makes the replicator run the write again; other codes are the feature's.
CREATE FUNCTION "replication_check"(p_ok BOOLEAN, p_sqlstate TEXT, p_message TEXT)
RETURNS VOID LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF NOT p_ok THEN
    RAISE EXCEPTION USING ERRCODE = p_sqlstate, MESSAGE = p_message;
  END IF;
END
$$;
