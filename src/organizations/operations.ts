import { Envelope } from '../http/slashid-schema';
import { Uuid } from '../http/validate';
import type { Operation } from '../openapi/operation';
import { ChangeStatusSchema } from '../replication/schema';
import { CHANGES_PATH } from './change-routes';
import { pageQueryDoc } from '../http/page-query';
import { CreatedOrganization, CreateOrganizationBody, ORGANIZATION_FILTERS, OrganizationList, OrganizationView, RotatedApiKey } from './schema';

const tags = ['Organizations (admin)'];

/** The OpenAPI operations of routes.ts and change-routes.ts. */
export const organizationOperations: Operation[] = [
  {
    method: 'post', path: '/admin/organizations', tags, auth: 'admin', dialect: 'slashid', headers: ['consistency'],
    summary: 'Create an organization and its first API key',
    body: { schema: CreateOrganizationBody },
    responses: { 201: { description: 'Created; the API key is shown only here.', schema: CreatedOrganization, headers: ['X-Change-Id'] } },
    errors: [400, 401, { status: 404, description: 'parent_id names no organization in this region.' }, { status: 408, result: CreatedOrganization }, 409],
  },
  {
    method: 'get', path: '/admin/organizations', tags, auth: 'admin', dialect: 'slashid', query: pageQueryDoc('Organizations', ORGANIZATION_FILTERS),
    summary: 'List the organizations this region holds, oldest first (never their keys)',
    responses: { 200: { description: 'A page of organizations, and how many match in all.', schema: OrganizationList } },
    errors: [{ status: 400, description: 'A query parameter is unknown, given twice, or not what it takes (limit or offset out of range, parent_id not a UUID, name empty or over 200 characters).' }, 401],
  },
  {
    method: 'get', path: '/admin/organizations/{id}', tags, auth: 'admin', dialect: 'slashid',
    summary: 'Read an organization (never its keys)',
    responses: { 200: { description: 'The organization.', schema: OrganizationView } },
    errors: [400, 401, 404],
  },
  {
    method: 'delete', path: '/admin/organizations/{id}', tags, auth: 'admin', dialect: 'slashid', headers: ['consistency'],
    summary: 'Delete an organization, its API keys and its data (final)',
    description:
      'Tombstones the organization, its API keys, its Infisical SSO config and its SAML provider credentials (with their IdP metadata ' +
      'and SSO settings) in one replicated change; an organization with more than 200 such rows has the rest tombstoned by each ' +
      "region's tombstone collection cycle, in changes of 200. From the moment the change reaches a region, nothing of the organization " +
      'is served there: its keys answer 401, a parent\'s key 403, its access tokens are refused, the sign-in endpoints of its credentials ' +
      'answer 404 and their IdP metadata is no longer refreshed; rows another region wrote into it before the delete reached that region ' +
      'are tombstoned by the same cycle. Takes no body, and no Idempotency-Key (400): a retry of a delete that committed answers 404.',
    responses: { 204: { description: "Deleted (with all_regions, the organization's tombstone applied in every region; a row of it that another region had created first outlives the change there and is tombstoned by the cycle).", headers: ['X-Change-Id'] } },
    errors: [
      400, 401,
      { status: 404, description: 'No organization with this id in this region (never created, deleted already, or not a UUID).' },
      408,
      { status: 409, description: 'The organization has live sub-organizations in this region (the message says how many; list them with GET /admin/organizations?parent_id={id} and delete them first), or, with all_regions, the organization\'s own tombstone lost to a concurrent write.' },
    ],
  },
  {
    method: 'post', path: '/admin/organizations/{id}/api-keys', tags, auth: 'admin', dialect: 'slashid', headers: ['consistency'],
    summary: "Rotate the organization's API key",
    description: "Adds a key and revokes the organization's keys this region knows, in each region as the change reaches it.",
    responses: { 201: { description: 'The new key.', schema: RotatedApiKey, headers: ['X-Change-Id'] } },
    errors: [400, 401, 404, { status: 408, result: RotatedApiKey }, 409],
  },
  {
    method: 'get', path: `${CHANGES_PATH}/{changeId}`, tags: ['SlashID replication'], auth: 'slashid', dialect: 'slashid',
    summary: "Follow one of the organization's changes (an X-Change-Id) across regions",
    pathParams: { changeId: Uuid() },
    responses: { 200: { description: 'Per region: applied, superseded or pending.', schema: Envelope(ChangeStatusSchema) } },
    errors: [400, 401, 403, { status: 404, description: 'Not a change of this organization, or its record expired.' }],
  },
];
