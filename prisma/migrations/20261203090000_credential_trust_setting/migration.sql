-- The owner's trust setting of a credential: {id, url, pins}, written with every create and every PATCH of
-- idp_metadata_url or idp_trusted_certificates, with a new id (a UUIDv7: ids sort by the time they were
-- made); pins are the owner's certificates, or null for trust on first use. The metadata row records the id
-- of the setting it was made under (trust_id; '' for none). A refresh in the home region that wins over a
-- PATCH made in another region at the same moment leaves a metadata row of an older setting; the home region
-- finds it and fetches again under the owner's pins, which before lived only in the metadata row the
-- refresh had replaced (provider-credentials/trust.ts). Both nullable: rows written by older versions have
-- neither, and are judged as before. A column of its own, not a field of the metadata JSON: the refresh
-- job's sweep compares it for 10,000 credentials per tick without reading the documents.
ALTER TABLE "saml_provider_credentials" ADD COLUMN "idp_trust" JSONB;
ALTER TABLE "saml_credential_metadata" ADD COLUMN "trust_id" TEXT COLLATE "C";
