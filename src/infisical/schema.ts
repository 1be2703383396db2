/**
 * Request and response shapes of the Infisical dialect, after Infisical's OpenAPI for
 * POST /api/v1/sso/config (docs/contracts/infisical-create-sso-config.txt). Field names are Infisical's camelCase.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { compile, PLAIN_TEXT_RULE, Uuid } from '../http/validate';

export const AUTH_PROVIDERS = ['okta-saml', 'azure-saml', 'jumpcloud-saml', 'google-saml', 'keycloak-saml', 'auth0-saml'] as const;
export type AuthProvider = (typeof AUTH_PROVIDERS)[number];

const OrganizationId = Uuid({ description: 'The ID of the organization the SAML config belongs to.' });

const fields = {
  // One enum keyword rather than a union of literals: ajv then reports one issue listing the allowed values.
  authProvider: Type.Unsafe<AuthProvider>({
    type: 'string',
    enum: [...AUTH_PROVIDERS],
    description: 'Authentication provider to use for SAML authentication.',
  }),
  isActive: Type.Boolean({ description: 'Whether to enable or disable this SAML configuration.' }),
  // Shape only here; "absolute https URL" is checked in service.ts so the message can say why.
  entryPoint: Type.String({ minLength: 1, maxLength: 2048, description: 'The IdP URL users are sent to for SAML sign-in (https).' }),
  // Its text rule (a label's) is checked in service.ts, in this dialect's words.
  issuer: Type.String({ minLength: 1, maxLength: 1024, description: `The SAML provider issuer URL or entity ID: with ${PLAIN_TEXT_RULE}.` }),
  cert: Type.String({ minLength: 1, maxLength: 32 * 1024, description: "The IdP's signing certificate: PEM, or bare base64 DER." }),
  enableGroupSync: Type.Boolean({ description: 'Whether to synchronize group memberships from the SAML provider.' }),
};

export const CreateSsoConfigBody = Type.Object(
  {
    organizationId: OrganizationId,
    authProvider: fields.authProvider,
    isActive: fields.isActive,
    entryPoint: fields.entryPoint,
    issuer: fields.issuer,
    cert: fields.cert,
    enableGroupSync: Type.Optional(fields.enableGroupSync),
  },
  { additionalProperties: false },
);
export type CreateSsoConfigBody = Static<typeof CreateSsoConfigBody>;

/** Infisical's PATCH: the same fields, all optional but organizationId. */
export const PatchSsoConfigBody = Type.Object(
  {
    organizationId: OrganizationId,
    authProvider: Type.Optional(fields.authProvider),
    isActive: Type.Optional(fields.isActive),
    entryPoint: Type.Optional(fields.entryPoint),
    issuer: Type.Optional(fields.issuer),
    cert: Type.Optional(fields.cert),
    enableGroupSync: Type.Optional(fields.enableGroupSync),
  },
  { additionalProperties: false },
);
export type PatchSsoConfigBody = Static<typeof PatchSsoConfigBody>;

/** Other query parameters are ignored, as Infisical's (non-strict) query schema does. */
export const GetSsoConfigQuery = Type.Object({ organizationId: OrganizationId });

export const MAX_TOKEN_LIFETIME_SECONDS = 30 * 24 * 3600;
export const DEFAULT_TOKEN_LIFETIME_SECONDS = 3600;

export const IssueAccessTokenBody = Type.Object(
  {
    expires_in_seconds: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_TOKEN_LIFETIME_SECONDS })),
  },
  { additionalProperties: false },
);
export type IssueAccessTokenBody = Static<typeof IssueAccessTokenBody>;

export const validateCreateSsoConfig = compile(CreateSsoConfigBody);
export const validatePatchSsoConfig = compile(PatchSsoConfigBody);
export const validateGetSsoConfigQuery = compile(GetSsoConfigQuery);
export const validateIssueAccessToken = compile(IssueAccessTokenBody);

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Timestamp = Type.String({ format: 'date-time' });

/** The seed's 200 response of POST, exactly (it is additionalProperties: false); PATCH answers the same. */
export const SsoConfigView = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    orgId: Type.String({ format: 'uuid' }),
    isActive: Type.Boolean(),
    lastUsed: Nullable(Timestamp),
    createdAt: Timestamp,
    updatedAt: Timestamp,
    authProvider: Type.String(),
  },
  { additionalProperties: false },
);
export type SsoConfigView = Static<typeof SsoConfigView>;

/** GET also returns the IdP settings, group sync and `organization` (the org id again), as Infisical's getSaml does. */
export const SsoConfigDetails = Type.Object(
  {
    ...SsoConfigView.properties,
    organization: Type.String({ format: 'uuid' }),
    entryPoint: Type.String(),
    issuer: Type.String(),
    cert: Type.String(),
    enableGroupSync: Type.Boolean(),
  },
  { additionalProperties: false },
);
export type SsoConfigDetails = Static<typeof SsoConfigDetails>;

/** The string fields Infisical's schema trims (zod `.trim()`) before it checks them. */
export const TRIMMED_FIELDS = ['organizationId', 'entryPoint', 'issuer', 'cert'] as const;

/** The providers whose SAML group sync Infisical supports (others: 400). */
export const GROUP_SYNC_PROVIDERS: readonly string[] = ['google-saml'];

export const AccessTokenView = Type.Object(
  {
    access_token: Type.String({ description: 'A JWT for Authorization: Bearer on /api/v1.' }),
    token_type: Type.Literal('Bearer'),
    expires_at: Timestamp,
  },
  { additionalProperties: false },
);
export type AccessTokenView = Static<typeof AccessTokenView>;

/** A Zod-style issue of a 422 (src/infisical/errors.ts makes them). */
export const ValidationIssueSchema = Type.Object(
  {
    code: Type.String(),
    path: Type.Array(Type.String()),
    message: Type.String(),
    keys: Type.Optional(Type.Array(Type.String())),
  },
  { additionalProperties: false },
);

/**
 * The dialect's error body for one status, after the seed's: a 422's `message` is its list of issues;
 * `details` only where the seed allows it (400, 403) and on a 408, which carries what was written.
 */
export function InfisicalError(status: number, details?: TSchema) {
  const withDetails = details ?? (status === 400 || status === 403 || status === 408 || status === 409 ? Type.Unknown() : undefined);
  return Type.Object(
    {
      reqId: Type.String(),
      statusCode: Type.Number({ enum: [status] }),
      // A reused Idempotency-Key's 422 (error IdempotencyKeyReused) says why in a sentence.
      message: status === 422 ? Type.Union([Type.Array(ValidationIssueSchema), Type.String()]) : Type.String(),
      error: Type.String(),
      ...(withDetails ? { details: Type.Optional(withDetails) } : {}),
    },
    { additionalProperties: false },
  );
}
