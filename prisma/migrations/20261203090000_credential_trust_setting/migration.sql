-- The owner's trust setting of a credential: {id, url, pins}, written with every create and every PATCH of
-- idp_metadata_url or idp_trusted_certificates (pins: the owner's certificates, or null for trust on first
-- use). The metadata row records the setting's id it was made under (metadata->>'trust_id'). A refresh in the
-- home region that wins over a PATCH made in another region at the same moment leaves a metadata row of an
-- older setting; the home region finds it and fetches again under the owner's pins (metadata-refresh.ts),
-- which before lived only in the metadata row the refresh had replaced. Nullable: rows of older versions
-- have none (trust on first use, as before). Adding a nullable column without a default takes no rewrite.
ALTER TABLE "saml_provider_credentials" ADD COLUMN "idp_trust" JSONB;
