import { Type, type Static } from '@sinclair/typebox';
import { compile, PRINTABLE_ASCII_OR_EMPTY_PATTERN, PRINTABLE_ASCII_PATTERN } from '../http/validate';

/** SAML bindings say RelayState SHOULD NOT exceed 80 bytes; IdPs may cut longer ones. */
export const MAX_RELAY_STATE = 80;
/**
 * An IdP-initiated sign-in's RelayState is the IdP administrator's (often a deep link longer than 80), so it
 * is allowed up to this length; a login's comes back as it was sent.
 */
export const MAX_IDP_RELAY_STATE = 1024;

export const LoginQuery = Type.Object(
  { relay_state: Type.Optional(Type.String({ minLength: 1, maxLength: MAX_RELAY_STATE, pattern: PRINTABLE_ASCII_PATTERN })) },
  { additionalProperties: false },
);

export const AcsForm = Type.Object(
  {
    SAMLResponse: Type.String({ minLength: 1, maxLength: 1024 * 1024 }),
    // Printable ASCII: an IdP-initiated sign-in returns it to the application, which redirects with it.
    RelayState: Type.Optional(Type.String({ maxLength: MAX_IDP_RELAY_STATE, pattern: PRINTABLE_ASCII_OR_EMPTY_PATTERN })),
  },
  { additionalProperties: true },
);
export type AcsForm = Static<typeof AcsForm>;

export const SsoResult = Type.Object({
  org_id: Type.String(),
  credential_id: Type.String(),
  email: Type.String(),
  name_id: Type.String(),
  session_index: Type.Union([Type.String(), Type.Null()]),
  attributes: Type.Record(Type.String(), Type.Array(Type.String())),
  /** The relay_state the login was started with (IdP-initiated: none). */
  relay_state: Type.Union([Type.String(), Type.Null()]),
});
export type SsoResult = Static<typeof SsoResult>;

const allowIdpInitiated = Type.Boolean({ description: 'Accept responses that answer no login started here (IdP-initiated sign-in). Default false.' });

/** PATCH …/sso-settings: the options to change. */
export const SettingsBody = Type.Object({ allow_idp_initiated: Type.Optional(allowIdpInitiated) }, { additionalProperties: false, minProperties: 1 });
export type SettingsBody = Static<typeof SettingsBody>;

/** A saml_sso_settings row as it travels between regions. */
export const SettingsRow = Type.Object({
  credential_id: Type.String(),
  org_id: Type.String(),
  allow_idp_initiated: Type.Boolean(),
  created_at: Type.String(),
});
export type SettingsRow = Static<typeof SettingsRow>;

export const SettingsView = Type.Object({ credential_id: Type.String({ format: 'uuid' }), allow_idp_initiated: allowIdpInitiated }, { additionalProperties: false });
export type SettingsView = Static<typeof SettingsView>;

export const validateLoginQuery = compile(LoginQuery);
export const validateSettingsBody = compile(SettingsBody);
export const validateAcsForm = compile(AcsForm);
