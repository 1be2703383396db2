import { Type } from '@sinclair/typebox';
import { Envelope, ErrorItem } from '../http/slashid-schema';
import type { Operation } from '../openapi/operation';
import { CREDENTIALS_PATH } from '../provider-credentials/routes';
import { AcsForm, LoginQuery, SettingsBody, SettingsView, SsoResult } from './schema';
import { SSO_PATH } from './sp';

const tags = ['SAML single sign-on'];
const unavailable = { status: 503, description: 'The metadata of the credential is not available in this region yet, or the session store cannot be reached (then with Retry-After).' };

/** The OpenAPI operations of routes.ts (browsers and IdPs call them: no API key). */
export const ssoOperations: Operation[] = [
  {
    method: 'get', path: `${SSO_PATH}/jwks.json`, tags, auth: 'none', dialect: 'slashid',
    summary: 'The public keys of the sign-in tokens the ACS issues (a JWK Set; the tokens are ES256)',
    responses: {
      200: {
        description: 'The signing P-256 key first (its kid is in every token\'s header), then, during a rotation of TOKEN_SIGNING_SECRET, the keys of TOKEN_ACCEPTED_SECRETS.',
        schema: Type.Object(
          {
            keys: Type.Array(
              Type.Object(
                { kty: Type.Literal('EC'), crv: Type.Literal('P-256'), x: Type.String(), y: Type.String(), kid: Type.String(), alg: Type.Literal('ES256'), use: Type.Literal('sig') },
                { additionalProperties: false },
              ),
              { minItems: 1 },
            ),
          },
          { additionalProperties: false },
        ),
      },
    },
    errors: [],
  },
  {
    method: 'get', path: `${SSO_PATH}/{id}/metadata`, tags, auth: 'none', dialect: 'slashid',
    summary: 'The SP metadata of a credential (one entity ID for every region, this region’s ACS first)',
    responses: { 200: { description: 'SAML metadata.', contentType: 'application/samlmetadata+xml' } },
    errors: [400, 404],
  },
  {
    method: 'get', path: `${SSO_PATH}/{id}/login`, tags, auth: 'none', dialect: 'slashid', query: LoginQuery,
    summary: 'Start a sign-in at the IdP',
    responses: {
      200: { description: 'An auto-submitting form (HTTP-POST binding).', contentType: 'text/html' },
      302: { description: 'To the IdP with a deflated AuthnRequest (HTTP-Redirect binding).', headers: ['Location'] },
    },
    errors: [400, 404, { status: 409, description: 'The IdP has no usable sign-on endpoint, or its metadata expired (past its validUntil; idp_metadata_expired).' }, unavailable],
  },
  {
    method: 'post', path: `${SSO_PATH}/{id}/acs`, tags, auth: 'none', dialect: 'slashid',
    summary: "The assertion consumer service: the IdP posts the user's SAML response here",
    body: { schema: AcsForm, contentType: 'application/x-www-form-urlencoded' },
    responses: {
      200: {
        description: 'The signed-in user and a short-lived session token.',
        schema: Type.Object(
          { meta: Type.Object({}, { additionalProperties: false }), errors: Type.Array(ErrorItem, { maxItems: 0 }), result: SsoResult, token: Type.String() },
          { additionalProperties: false },
        ),
      },
    },
    errors: [
      400, { status: 401, description: 'The SAML response was refused.' }, { status: 403, description: 'IdP-initiated sign-in, which is not enabled.' }, 404,
      { status: 409, description: "The credential's IdP metadata expired (past its validUntil): it is not relied on until a refresh stores a current document." },
      { status: 413, description: 'The form is over 512 KB, or its SAML response over 256 KiB.' },
      { status: 422, description: 'The assertion carries no usable email address.' }, unavailable,
    ],
  },
  {
    method: 'get', path: `${CREDENTIALS_PATH}/{id}/sso-settings`, tags, auth: 'slashid', dialect: 'slashid',
    summary: "The credential's single sign-on options",
    responses: { 200: { description: 'The options (defaults when never set).', schema: Envelope(SettingsView) } },
    errors: [400, 401, 403, 404],
  },
  {
    method: 'patch', path: `${CREDENTIALS_PATH}/{id}/sso-settings`, tags, auth: 'slashid', dialect: 'slashid', headers: ['consistency'],
    summary: "Change the credential's single sign-on options (replicated)",
    body: { schema: SettingsBody },
    responses: { 200: { description: 'The options now.', schema: Envelope(SettingsView), headers: ['X-Change-Id'] } },
    errors: [400, 401, 403, 404, 408, 409],
  },
];
