import { Type } from '@sinclair/typebox';
import { Envelope } from '../http/slashid-schema';
import type { Operation } from '../openapi/operation';
import { CREDENTIALS_PATH } from './routes';
import { CreateCredentialBody, CredentialMetadataView, CredentialView, ListQuery, MetadataRefreshStatus, PatchCredentialBody } from './schema';

const tags = ['SlashID SAML provider credentials'];
const one = `${CREDENTIALS_PATH}/{id}`;
const query = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50, description: ListQuery.properties.limit.description })),
  offset: Type.Optional(Type.Integer({ minimum: 0, default: 0 })),
});

/** The OpenAPI operations of routes.ts and of the metadata refresh status (metadata-refresh.ts). */
export const providerCredentialOperations: Operation[] = [
  {
    method: 'post', path: CREDENTIALS_PATH, tags, auth: 'slashid', dialect: 'slashid', headers: ['consistency', 'idempotency'],
    summary: 'Create SAML provider credentials (the IdP metadata URL is fetched and validated first)',
    body: { schema: CreateCredentialBody },
    responses: { 201: { description: 'Created.', schema: Envelope(CredentialView), headers: ['X-Change-Id', 'Idempotent-Replayed'] } },
    errors: [
      { status: 400, description: 'A header or the body is invalid, or the IdP metadata was refused.' },
      401, 403, { status: 408, result: CredentialView }, 409,
      { status: 422, description: 'The Idempotency-Key was used before with a different body.' },
    ],
  },
  {
    method: 'get', path: CREDENTIALS_PATH, tags, auth: 'slashid', dialect: 'slashid', query,
    summary: "List the organization's credentials, oldest first",
    responses: { 200: { description: 'A page of credentials.', schema: Envelope(Type.Array(CredentialView), { paginated: true }) } },
    errors: [400, 401, 403],
  },
  {
    method: 'get', path: one, tags, auth: 'slashid', dialect: 'slashid',
    summary: 'Read one credential',
    responses: { 200: { description: 'The credential.', schema: Envelope(CredentialView) } },
    errors: [400, 401, 403, 404],
  },
  {
    method: 'get', path: `${one}/metadata`, tags, auth: 'slashid', dialect: 'slashid',
    summary: "The credential's parsed IdP metadata and its refresh schedule",
    responses: { 200: { description: 'The metadata (null until fetched for the current URL).', schema: Envelope(CredentialMetadataView) } },
    errors: [400, 401, 403, 404],
  },
  {
    method: 'patch', path: one, tags, auth: 'slashid', dialect: 'slashid', headers: ['consistency'],
    summary: 'Update a credential (the same fields as create, all optional)',
    body: { schema: PatchCredentialBody },
    responses: { 204: { description: 'Updated.', headers: ['X-Change-Id'] } },
    errors: [400, 401, 403, 404, 408, 409],
  },
  {
    method: 'delete', path: one, tags, auth: 'slashid', dialect: 'slashid', headers: ['consistency'],
    summary: 'Delete a credential (final: no concurrent update brings it back)',
    responses: { 204: { description: 'Deleted.', headers: ['X-Change-Id'] } },
    errors: [400, 401, 403, 404, 408, 409],
  },
  {
    method: 'get', path: '/admin/metadata-refresh', tags: ['Operations (admin)'], auth: 'admin', dialect: 'slashid',
    summary: "This region's IdP metadata refresh schedule, failures first",
    responses: { 200: { description: 'The schedule of the credentials this region is home of.', schema: MetadataRefreshStatus } },
    errors: [400, 401],
  },
];
