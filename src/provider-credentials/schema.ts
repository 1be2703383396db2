import { Type, type Static } from '@sinclair/typebox';
import { compile, HTTP_URL_PATTERN, PLAIN_TEXT, PLAIN_TEXT_RULE } from '../http/validate';

const fields = {
  label: Type.String({
    maxLength: 256,
    format: 'plain-text',
    description: `A friendly free-form label: empty, or text with ${PLAIN_TEXT_RULE}.`,
  }),
  idp_metadata_url: Type.String({
    // An IRI: a host name in any script (an IDN) is looked up as its punycode (WHATWG URL parsing).
    format: 'iri',
    pattern: HTTP_URL_PATTERN,
    maxLength: 2048,
    description: "The SAML IdP's metadata URL (absolute http or https; an internationalized host name is allowed).",
  }),
  email_claims: Type.Array(Type.String({ minLength: 1, maxLength: 256, ...PLAIN_TEXT }), {
    maxItems: 3,
    description: `Names of the claims holding the user email addresses: each with ${PLAIN_TEXT_RULE}.`,
  }),
  enable_in_slashid_oidc_authz_server: Type.Boolean(),
  idp_trusted_certificates: Type.Array(Type.String({ minLength: 1, maxLength: 16384 }), {
    minItems: 1,
    maxItems: 5,
    description:
      "Certificates (PEM, or base64 DER) trusted to sign the IdP's metadata, pinned instead of trusting the first document fetched, " +
      'each once: the same certificate again, however its PEM or base64 is wrapped, is a 400 naming the repeat. ' +
      'The document fetched now must be signed by one of them or list only them as signing certificates; a later document that changes ' +
      'the signing certificates is applied only when signed by a trusted certificate, otherwise it is held. Write-only (see the metadata resource).',
  }),
};

export const CreateCredentialBody = Type.Object(
  {
    idp_metadata_url: fields.idp_metadata_url,
    label: Type.Optional(fields.label),
    email_claims: Type.Optional(fields.email_claims),
    enable_in_slashid_oidc_authz_server: Type.Optional(fields.enable_in_slashid_oidc_authz_server),
    idp_trusted_certificates: Type.Optional(fields.idp_trusted_certificates),
  },
  { additionalProperties: false },
);
export type CreateCredentialBody = Static<typeof CreateCredentialBody>;

// Every field optional (the seed's PATCH): an empty one changes nothing (routes.ts answers it without a write).
export const PatchCredentialBody = Type.Partial(Type.Object(fields), { additionalProperties: false });
export type PatchCredentialBody = Static<typeof PatchCredentialBody>;

export const validateCreateCredential = compile(CreateCredentialBody);
export const validatePatchCredential = compile(PatchCredentialBody);

/** The seed's `result` shape, exactly. */
export const CredentialView = Type.Object(
  {
    id: Type.String(),
    // Without the format (label, email_claims): a value stored before the rule (or replicated from a region without it) is still read.
    label: Type.String({ description: fields.label.description }),
    idp_metadata_url: Type.String({ description: fields.idp_metadata_url.description }),
    email_claims: Type.Array(Type.String(), { maxItems: 3, description: fields.email_claims.description }),
    enable_in_slashid_oidc_authz_server: Type.Boolean(),
  },
  { additionalProperties: false },
);
export type CredentialView = Static<typeof CredentialView>;

const Time = Type.String({ format: 'date-time' });
const NullableTime = Type.Union([Time, Type.Null()]);

const MetadataDocument = Type.Object(
  {
    entity_id: Type.String(),
    sso_services: Type.Array(Type.Object({ binding: Type.String(), location: Type.String() }, { additionalProperties: false })),
    signing_certificates: Type.Array(
      Type.Object(
        {
          subject: Type.String(),
          issuer: Type.String(),
          not_before: Time,
          not_after: Time,
          fingerprint_sha256: Type.String(),
          pem: Type.String(),
          expired: Type.Boolean(),
        },
        { additionalProperties: false },
      ),
    ),
    valid_until: NullableTime,
    expired: Type.Boolean({
      description:
        'Its valid_until has passed (beyond samlClockSkewSeconds): metadata past its validUntil is not relied on, so sign-ins with it are refused ' +
        '(409) until a refresh brings a current document (fix idp_metadata_url, or have the IdP publish fresh metadata there).',
    }),
    cache_duration: Type.Union([Type.String(), Type.Null()]),
    signed: Type.Boolean(),
    signed_by: Type.Union([Type.String({ description: 'SHA-256 fingerprint of the certificate the signature verified with (trusted or not).' }), Type.Null()]),
    fetched_at: Time,
    fetched_from: Type.String(),
  },
  { additionalProperties: false },
);

/** GET …/{id}/metadata: the parsed IdP metadata (null until fetched for the current URL) and its refresh schedule. */
export const CredentialMetadataView = Type.Object(
  {
    id: Type.String(),
    idp_metadata_url: Type.String(),
    metadata: Type.Union([MetadataDocument, Type.Null()]),
    trusted_certificates: Type.Array(
      Type.Object(
        {
          fingerprint_sha256: Type.String(),
          subject: Type.Union([Type.String(), Type.Null()]),
          not_after: Type.Union([Time, Type.Null()]),
          source: Type.Union([Type.Literal('first_use'), Type.Literal('caller'), Type.Literal('signed_refresh'), Type.Literal('operator')]),
        },
        { additionalProperties: false },
      ),
      { description: 'Certificates trusted to sign the metadata (pinned; see README, IdP metadata trust).' },
    ),
    held_metadata: Type.Union(
      [Type.Object({ held_at: Time, reason: Type.String(), metadata: MetadataDocument }, { additionalProperties: false }), Type.Null()],
      { description: 'A fetched document that changes the signing certificates without a trusted signature: not applied, not used by SSO.' },
    ),
    refresh: Type.Object(
      {
        home_region: Type.String(),
        // Present only in the region that refreshes it (the home region, or its adopter), where the schedule lives.
        next_at: Type.Optional(Time),
        last_success_at: Type.Optional(NullableTime),
        last_error: Type.Optional(Type.Union([Type.String(), Type.Null()])),
        consecutive_failures: Type.Optional(Type.Integer({ minimum: 0 })),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

/** GET /admin/metadata-refresh: this region's refresh schedule, failures first. */
export const MetadataRefreshStatus = Type.Object(
  {
    region: Type.String(),
    failing: Type.Integer({ minimum: 0 }),
    /** Credentials whose last fetched document is held (untrusted change of signing certificates). */
    held: Type.Integer({ minimum: 0 }),
    expired: Type.Integer({
      minimum: 0,
      description:
        "Credentials this region refreshes whose stored IdP metadata is past its validUntil beyond samlClockSkewSeconds (as each listed one's `expired_since` says): sign-ins with them are refused (409 idp_metadata_expired). All of them, failing or not, listed or not (`credentials` stops at 500).",
    }),
    failing_expired: Type.Integer({
      minimum: 0,
      description: 'Of `expired`, those whose refreshes are failing too (counted in `failing` as well): all of them, listed or not.',
    }),
    adoption: Type.Object(
      {
        departed: Type.Array(Type.String(), { description: 'Regions removed from the deployment (npm run members -- remove), whose credentials the remaining regions adopt.' }),
        ready: Type.Boolean({ description: 'Whether this region refreshes now the credentials it adopts (those whose home region left the deployment).' }),
        waiting: Type.Union([Type.String(), Type.Null()], { description: 'Why it does not yet (null when ready).' }),
        adopters: Type.Array(Type.String(), { description: 'The regions among which the adopted credentials are shared (empty while not ready).' }),
      },
      { additionalProperties: false },
    ),
    credentials: Type.Array(
      Type.Object(
        {
          credential_id: Type.String(),
          org_id: Type.String(),
          home_region: Type.String({ description: 'The region that created it; another than this one for an adopted credential.' }),
          idp_metadata_url: Type.String(),
          next_at: Time,
          last_attempt_at: NullableTime,
          last_success_at: NullableTime,
          last_error: Type.Union([Type.String(), Type.Null()]),
          last_error_code: Type.Union([Type.String(), Type.Null()]),
          consecutive_failures: Type.Integer({ minimum: 0 }),
          held_since: NullableTime,
          held_reason: Type.Union([Type.String(), Type.Null()]),
          expired_since: Type.Union([Time, Type.Null()], {
            description: "The applied document's validUntil, once it has passed (beyond samlClockSkewSeconds): sign-ins with the credential are refused until a refresh brings a current document. Null while valid, or without a validUntil.",
          }),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
