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
export interface CredentialView {
  id: string;
  label: string;
  idp_metadata_url: string;
  email_claims: string[];
  enable_in_slashid_oidc_authz_server: boolean;
}
