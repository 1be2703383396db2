-- One round trip for a local write's "lock this key, then read its row" (src/replication/row-store.ts):
-- the per-key advisory lock, then the row as JSON (tombstone included; NULL when absent). The read is a
-- statement of its own inside this VOLATILE function, so it takes a snapshot after the lock was granted
-- and sees whatever the previous holder of the lock committed.
CREATE FUNCTION "replication_lock_row"(p_lock TEXT, p_table TEXT, p_key_column TEXT, p_key_type TEXT, p_key TEXT)
RETURNS JSONB LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  found JSONB;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended(p_lock, 0));
  EXECUTE format('SELECT to_jsonb(cur) FROM %I cur WHERE %I = $1::%s', p_table, p_key_column, p_key_type::regtype) INTO found USING p_key;
  RETURN found;
END
$$;
