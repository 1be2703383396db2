import { Type, type Static } from '@sinclair/typebox';
import { compile } from '../http/validate';

const fields = {
  label: Type.String({ maxLength: 256, description: 'A friendly free-form label.' }),
  idp_metadata_url: Type.String({
    format: 'uri',
    pattern: '^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]',
    maxLength: 2048,
    description: "The SAML IdP's metadata URL (absolute http or https).",
  }),
  email_claims: Type.Array(Type.String({ minLength: 1, maxLength: 256, pattern: '\\S' }), {
    maxItems: 3,
    description: 'Names of the claims holding the user email addresses.',
  }),
  enable_in_slashid_oidc_authz_server: Type.Boolean(),
};

export const CreateCredentialBody = Type.Object(
  {
    idp_metadata_url: fields.idp_metadata_url,
    label: Type.Optional(fields.label),
    email_claims: Type.Optional(fields.email_claims),
    enable_in_slashid_oidc_authz_server: Type.Optional(fields.enable_in_slashid_oidc_authz_server),
  },
  { additionalProperties: false },
);
export type CreateCredentialBody = Static<typeof CreateCredentialBody>;

export const PatchCredentialBody = Type.Partial(Type.Object(fields), { additionalProperties: false, minProperties: 1 });
export type PatchCredentialBody = Static<typeof PatchCredentialBody>;

export const ListQuery = Type.Object(
  {
    limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$' })),
    offset: Type.Optional(Type.String({ pattern: '^[0-9]{1,9}$' })),
  },
  { additionalProperties: false },
);

export const validateCreateCredential = compile(CreateCredentialBody);
export const validatePatchCredential = compile(PatchCredentialBody);
export const validateListQuery = compile(ListQuery);

export const DEFAULT_PAGE_LIMIT = 50;
export const MAX_PAGE_LIMIT = 200;

/** The seed's `result` shape, exactly. */
export const CredentialView = Type.Object(
  {
    id: Type.String(),
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

/** GET …/{id}/metadata: the parsed IdP metadata (null until fetched for the current URL) and its refresh schedule. */
export const CredentialMetadataView = Type.Object(
  {
    id: Type.String(),
    idp_metadata_url: Type.String(),
    metadata: Type.Union([
      Type.Object(
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
          cache_duration: Type.Union([Type.String(), Type.Null()]),
          signed: Type.Boolean(),
          fetched_at: Time,
          fetched_from: Type.String(),
        },
        { additionalProperties: false },
      ),
      Type.Null(),
    ]),
    refresh: Type.Object(
      {
        home_region: Type.String(),
        // Present in the home region only, where the schedule lives.
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
    credentials: Type.Array(
      Type.Object(
        {
          credential_id: Type.String(),
          org_id: Type.String(),
          idp_metadata_url: Type.String(),
          next_at: Time,
          last_attempt_at: NullableTime,
          last_success_at: NullableTime,
          last_error: Type.Union([Type.String(), Type.Null()]),
          last_error_code: Type.Union([Type.String(), Type.Null()]),
          consecutive_failures: Type.Integer({ minimum: 0 }),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
