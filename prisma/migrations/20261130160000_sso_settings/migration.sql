-- Single sign-on options of a provider credential (src/sso), a replicated row of their own keyed by the
-- credential, so changing them never races a PATCH of the credential or a metadata refresh (last-writer-wins
-- replaces whole rows). No row means the defaults: IdP-initiated sign-in off.
CREATE TABLE "saml_sso_settings" (
    "credential_id" UUID NOT NULL,
    "org_id" UUID NOT NULL,
    "allow_idp_initiated" BOOLEAN NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,
    "deleted_at" TIMESTAMPTZ(3),
    "version" TEXT COLLATE "C" NOT NULL,
    "created_version" TEXT COLLATE "C" NOT NULL,
    "origin_region" TEXT NOT NULL,
    CONSTRAINT "saml_sso_settings_pkey" PRIMARY KEY ("credential_id")
);
