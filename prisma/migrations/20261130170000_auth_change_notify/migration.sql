-- Regions answer API-key checks from an in-process cache (src/organizations/api-key-cache.ts). Every
-- statement that changes api_keys or organizations (a local write, an applied change from another region,
-- a re-seed, a hand-written fix) announces it on the channel auth_changed; Postgres delivers the
-- notification when the transaction commits, and every process of the region drops its cached keys then.
CREATE FUNCTION "notify_auth_changed"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('auth_changed', TG_TABLE_NAME);
  RETURN NULL;
END
$$;

CREATE TRIGGER "api_keys_auth_changed" AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON "api_keys"
  FOR EACH STATEMENT EXECUTE FUNCTION "notify_auth_changed"();

CREATE TRIGGER "organizations_auth_changed" AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON "organizations"
  FOR EACH STATEMENT EXECUTE FUNCTION "notify_auth_changed"();
