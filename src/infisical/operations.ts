import { Uuid } from '../http/validate';
import type { Operation } from '../openapi/operation';
import { ChangeStatusSchema } from '../replication/schema';
import { API_PREFIX, CHANGES_PATH, SSO_CONFIG_PATH } from './routes';
import { AccessTokenView, CreateSsoConfigBody, GetSsoConfigQuery, IssueAccessTokenBody, PatchSsoConfigBody, SsoConfigDetails, SsoConfigView } from './schema';

const tags = ['Infisical SAML SSO config'];
const path = `${API_PREFIX}${SSO_CONFIG_PATH}`;

/** The OpenAPI operations of routes.ts; POST follows docs/contracts/infisical-create-sso-config.txt. */
export const infisicalOperations: Operation[] = [
  {
    method: 'post', path, tags, auth: 'infisical', dialect: 'infisical', headers: ['consistency', 'idempotency'],
    summary: 'Create SAML config',
    body: { schema: CreateSsoConfigBody },
    responses: { 200: { description: 'Created.', schema: SsoConfigView, headers: ['X-Change-Id', 'Idempotent-Replayed'] } },
    errors: [400, 401, 403, 404, { status: 408, result: SsoConfigView, headers: ['Idempotent-Replayed'] }, { status: 409, headers: ['Idempotent-Replayed'], description: 'The organization already has a SAML config, or this create lost to a concurrent one.' }, 422],
  },
  {
    method: 'get', path, tags, auth: 'infisical', dialect: 'infisical', query: GetSsoConfigQuery,
    summary: "Read the organization's SAML config, with its IdP settings",
    responses: { 200: { description: 'The config.', schema: SsoConfigDetails } },
    errors: [400, 401, 403, 404, 422],
  },
  {
    method: 'patch', path, tags, auth: 'infisical', dialect: 'infisical', headers: ['consistency'],
    summary: 'Update SAML config',
    body: { schema: PatchSsoConfigBody },
    responses: { 200: { description: 'Updated.', schema: SsoConfigView, headers: ['X-Change-Id'] } },
    errors: [400, 401, 403, 404, { status: 408, result: SsoConfigView }, 409, 422],
  },
  {
    method: 'get', path: `${API_PREFIX}${CHANGES_PATH}/{changeId}`, tags: ['Infisical replication'], auth: 'infisical', dialect: 'infisical',
    summary: "Follow one of the token's organization's changes (an X-Change-Id) across regions",
    pathParams: { changeId: Uuid() },
    responses: { 200: { description: 'Per region: applied, superseded or pending.', schema: ChangeStatusSchema } },
    errors: [400, 401, { status: 404, description: 'Not a change of this organization, or its record expired.' }],
  },
  {
    method: 'post', path: '/admin/organizations/{id}/access-tokens', tags: ['Organizations (admin)'], auth: 'admin', dialect: 'slashid',
    summary: 'Issue an access token for the Infisical dialect',
    body: { schema: IssueAccessTokenBody, required: false, description: 'Optional; expires_in_seconds defaults to 3600.' },
    responses: { 201: { description: 'The token.', schema: AccessTokenView } },
    errors: [400, 401, 404],
  },
];
