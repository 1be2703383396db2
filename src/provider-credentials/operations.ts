import { Type } from '@sinclair/typebox';
import { Envelope } from '../http/slashid-schema';
import { pageQueryDoc } from '../http/page-query';
import type { Operation } from '../openapi/operation';
import { CREDENTIALS_PATH } from './routes';
import { CreateCredentialBody, CredentialMetadataView, CredentialView, MetadataRefreshStatus, PatchCredentialBody } from './schema';

const tags = ['SlashID SAML provider credentials'];
// The IdP metadata fetch of a create or PATCH takes a slot of the fetch limiter (fetch-limiter.ts), and its
// host-name lookup a lane of the lookup gate (metadata/lookup-gate.ts).
const fetchBusy = [
  { status: 429, description: 'The organization whose API key sent the request (the one it acts on, or its ancestor) has as many IdP metadata fetches in progress as it may; retry after Retry-After seconds.' },
  {
    status: 503,
    description:
      'The region is fetching as much IdP metadata as it may at once, or every host-name lookup it may run is held by lookups of other ' +
      "IdP hosts whose DNS does not answer, or the organization's own share of them is (the message names its hosts), or the region is " +
      'at capacity; nothing is wrong with the request: retry after Retry-After seconds.',
  },
];
const one = `${CREDENTIALS_PATH}/{id}`;
const query = pageQueryDoc('Credentials');

/** The OpenAPI operations of routes.ts and of the metadata refresh status (metadata-refresh-admin.ts). */
export const providerCredentialOperations: Operation[] = [
  {
    method: 'post', path: CREDENTIALS_PATH, tags, auth: 'slashid', dialect: 'slashid', headers: ['consistency', 'idempotency'],
    summary: 'Create SAML provider credentials (the IdP metadata URL is fetched and validated first)',
    body: { schema: CreateCredentialBody },
    responses: { 201: { description: 'Created. Location names the credential.', schema: Envelope(CredentialView), headers: ['Location', 'X-Change-Id', 'Idempotent-Replayed'] } },
    errors: [
      { status: 400, description: 'A header or the body is invalid, or the IdP metadata was refused.' },
      401, 403,
      { status: 408, headers: ['Location', 'Idempotent-Replayed'], description: 'The requested consistency was not reached in time. When the credential was committed, Location names it, and so does the message (X-Change-Id names its change): the write is not cancelled and keeps replicating. A retry with the Idempotency-Key of such a create that is still pending answers 408 again, with Idempotent-Replayed.' },
      { status: 409, headers: ['Idempotent-Replayed'], description: 'The write lost to a concurrent write (a retry with its Idempotency-Key answers the same, with Idempotent-Replayed), or the organization has as many credentials as it may (maxCredentialsPerOrg).' },
      { status: 422, description: 'The Idempotency-Key was used before with a different body.' },
      ...fetchBusy,
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
    responses: { 200: { description: 'The metadata (null until fetched for the current URL and trust setting).', schema: Envelope(CredentialMetadataView) } },
    errors: [400, 401, 403, 404],
  },
  {
    method: 'patch', path: one, tags, auth: 'slashid', dialect: 'slashid', headers: ['consistency'],
    summary: 'Update a credential (the same fields as create, all optional)',
    description:
      'A new idp_metadata_url, or idp_trusted_certificates, fetches the metadata again and pins its trust again (trust on first use, ' +
      'or the certificates given); this is how the owner accepts a held document. New idp_trusted_certificates alone answer 409 ' +
      'when another PATCH changed the URL while the document was fetched (nothing is written).',
    body: { schema: PatchCredentialBody },
    responses: { 204: { description: 'Updated.', headers: ['X-Change-Id'] } },
    errors: [400, 401, 403, 404, 408, 409, ...fetchBusy],
  },
  {
    method: 'delete', path: one, tags, auth: 'slashid', dialect: 'slashid', headers: ['consistency'],
    summary: 'Delete a credential (final: no concurrent update brings it back)',
    responses: { 204: { description: 'Deleted.', headers: ['X-Change-Id'] } },
    errors: [400, 401, 403, 404, 408, 409],
  },
  {
    method: 'get', path: '/admin/metadata-refresh', tags: ['Operations (admin)'], auth: 'admin', dialect: 'slashid',
    summary: "This region's IdP metadata refresh schedule, failures first, held documents next",
    responses: { 200: { description: 'The schedule of the credentials this region refreshes: those it is home of, and those it adopted from regions removed from the deployment.', schema: MetadataRefreshStatus } },
    errors: [400, 401],
  },
  {
    method: 'post', path: '/admin/metadata-refresh/{credential_id}/accept', tags: ['Operations (admin)'], auth: 'admin', dialect: 'slashid', headers: ['consistency'],
    summary: "Accept a credential's held IdP metadata: it is applied and its signing certificates become trusted",
    responses: { 204: { description: 'Applied (and replicated: with all_regions, applied in every region).', headers: ['X-Change-Id'] } },
    errors: [400, 401, { status: 404, description: 'No such credential, or it holds no document.' }, {
      status: 408,
      description: 'As for every write (the message says which): applied here and not yet in every region in time with all_regions (it keeps replicating: follow X-Change-Id); the local commit not finished in time or its outcome not known (it may have been kept: follow X-Change-Id); or nothing was written (the write could not start, or ran past the time a write transaction may run).',
    }, 409],
  },
];
