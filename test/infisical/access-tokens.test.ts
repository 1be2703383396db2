/**
 * Access tokens: the admin call that issues them, and 401/403 on the Infisical API (seed shapes).
 */
import jwt from 'jsonwebtoken';
import { call, createOrg, adminHeaders } from '../support/harness';
import { rawExchangeWith } from '../support/raw-http';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { bearer, configBody, issueToken, makeCerts, SSO, type TestCerts } from './support/fixtures';
import { expectSeedShape } from './support/seed-schemas';

import { signingKeyId, verifyAccessToken } from '../../src/infisical/access-tokens';
import { MAX_TOKEN_LIFETIME_SECONDS } from '../../src/infisical/schema';
import { TEST_SIGNING_SECRET as SECRET } from '../support/env';

/** Signs as the service does (HS256, with its key id) unless `opts` says otherwise. */
const sign = (claimSet: object, opts: jwt.SignOptions = {}, secret = SECRET) =>
  jwt.sign(claimSet, secret, { algorithm: 'HS256', keyid: signingKeyId(SECRET), ...opts });

let region: InProcessRegion;
let url: string;
let certs: TestCerts;

beforeAll(async () => {
  certs = makeCerts();
  region = await startInProcess('infisical-auth', ['us-iowa']);
  url = region.url;
});
afterAll(async () => {
  await region?.stop();
});

async function api(method: string, path: string, headers: Record<string, string>, body?: unknown) {
  const res = await call(url, method, path, { headers, ...(body === undefined ? {} : { body }) });
  expectSeedShape(method, res);
  return res;
}

/** A create, a read and an update of organization `orgId`'s config with `token` (the update naming it as `patchAs`). */
const triesOn = async (token: string, orgId: string, patchAs = orgId) => [
  await api('POST', SSO, bearer(token), configBody(orgId, certs.pem)),
  await api('GET', `${SSO}?organizationId=${orgId}`, bearer(token)),
  await api('PATCH', SSO, bearer(token), { organizationId: patchAs, isActive: false }),
];

const omit = (o: Record<string, unknown>, key: string) => Object.fromEntries(Object.entries(o).filter(([k]) => k !== key));
const claims = (orgId: string, over: Record<string, unknown> = {}) => ({
  sub: orgId, aud: 'infisical-api', iss: 'saml-credential-service', iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 600, ...over,
});

describe('POST /admin/organizations/{id}/access-tokens', () => {
  test('issues a signed HS256 token bound to the org, valid for an hour by default', async () => {
    const org = await createOrg(url);
    const before = Date.now();
    const res = await call(url, 'POST', `/admin/organizations/${org.id}/access-tokens`, { headers: adminHeaders });
    expect(res.status).toBe(201);
    expect(Object.keys(res.body).sort()).toEqual(['access_token', 'expires_at', 'token_type']);
    expect(res.body.token_type).toBe('Bearer');
    const decoded = jwt.verify(res.body.access_token, SECRET, { algorithms: ['HS256'], complete: true });
    expect(decoded.header.alg).toBe('HS256');
    expect(decoded.header.kid).toBe(signingKeyId(SECRET));
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(decoded.payload).toMatchObject({ sub: org.id, aud: 'infisical-api', iss: 'saml-credential-service' });
    const expiresAt = Date.parse(res.body.expires_at);
    expect(expiresAt).toBe(((decoded.payload as jwt.JwtPayload).exp ?? 0) * 1000);
    expect(Math.abs(expiresAt - before - 3600_000)).toBeLessThan(5000);
  });

  test('takes expires_in_seconds from 1 to 30 days and refuses anything else', async () => {
    const org = await createOrg(url);
    const path = `/admin/organizations/${org.id}/access-tokens`;
    const ok = await call(url, 'POST', path, { headers: adminHeaders, body: { expires_in_seconds: 2592000 } });
    expect(ok.status).toBe(201);
    expect(Math.abs(Date.parse(ok.body.expires_at) - Date.now() - 2592000_000)).toBeLessThan(5000);
    for (const bad of [0, 2592001, 1.5, '60']) {
      const res = await call(url, 'POST', path, { headers: adminHeaders, body: { expires_in_seconds: bad } });
      expect(res.status).toBe(400);
      expect(res.body.errors[0].message).toContain('expires_in_seconds');
    }
  });

  test('answers 404 for an unknown organization and 401 without the admin token', async () => {
    const missing = await call(url, 'POST', '/admin/organizations/00000000-0000-4000-8000-000000000000/access-tokens', { headers: adminHeaders });
    expect(missing.status).toBe(404);
    const org = await createOrg(url);
    const anonymous = await call(url, 'POST', `/admin/organizations/${org.id}/access-tokens`);
    expect(anonymous.status).toBe(401);
  });
});

describe('401: no token, bad signature, expired', () => {
  let orgId: string;
  beforeAll(async () => {
    orgId = (await createOrg(url)).id;
  });

  const cases: [string, () => Record<string, string>, string][] = [
    ['no Authorization header', () => ({}), 'Missing Authorization header'],
    ['a non-Bearer scheme', () => ({ authorization: `Basic ${Buffer.from('a:b').toString('base64')}` }), 'Bearer <access token>'],
    ['a token that is not a JWT', () => bearer('not-a-jwt'), 'not valid'],
    ['a token signed with another secret', () => bearer(sign(claims(orgId), {}, 'another-secret-another-secret-another')), 'not valid'],
    ['an unsigned (alg none) token', () => bearer(jwt.sign(claims(orgId), '', { algorithm: 'none' })), 'not valid'],
    ['a token signed with HS512', () => bearer(sign(claims(orgId), { algorithm: 'HS512' })), 'not valid'],
    ['a token for another audience', () => bearer(sign(claims(orgId, { aud: 'slashid' }))), 'not valid'],
    ['an expired token', () => bearer(sign(claims(orgId, { exp: Math.floor(Date.now() / 1000) - 60 }))), 'expired at'],
    ['a token without an organization', () => bearer(sign(claims(orgId, { sub: 'acme' }))), 'does not name an organization'],
    ['a token without exp', () => bearer(sign(omit(claims(orgId), 'exp'))), 'no expiry (exp)'],
    ['a token without iat', () => bearer(sign(omit(claims(orgId), 'iat'), { noTimestamp: true })), 'no expiry (exp) or issue time (iat)'],
    ['a token living longer than 30 days', () => bearer(sign(claims(orgId, { exp: Math.floor(Date.now() / 1000) + 31 * 86400 }))), 'lifetime is longer'],
    // Within the lifetime, but dated 3 years ahead: it would be valid for 3 years.
    ['a token issued in the future', () => bearer(sign(claims(orgId, { iat: Math.floor(Date.now() / 1000) + 1e8, exp: Math.floor(Date.now() / 1000) + 1e8 + 10 }))), 'issue time (iat) is in the future'],
    ['a token without a key id', () => bearer(jwt.sign(claims(orgId), SECRET, { algorithm: 'HS256' })), 'does not name the key'],
    ['a token naming another key', () => bearer(sign(claims(orgId), { keyid: 'another-key' })), 'does not name the key'],
    ['a token from another issuer', () => bearer(sign(claims(orgId, { iss: 'someone-else' }))), 'not valid'],
    // Just past the 5 minutes of clock difference tolerated between regions (a literal: the constant could drift).
    ['a token issued 6 minutes ahead', () => bearer(sign(claims(orgId, { iat: Math.floor(Date.now() / 1000) + 360, exp: Math.floor(Date.now() / 1000) + 960 }))), 'issue time (iat) is in the future'],
  ];

  test.each(cases)('%s', async (_name, headers, why) => {
    for (const [method, path, body] of [
      ['POST', SSO, configBody(orgId, certs.pem)],
      ['GET', `${SSO}?organizationId=${orgId}`, undefined],
      ['PATCH', SSO, { organizationId: orgId, isActive: false }],
    ] as const) {
      const res = await api(method, path, headers(), body);
      expect(res.status).toBe(401);
      expect(res.body.error).toBe('UnauthorizedError');
      expect(res.body.message).toContain(why);
    }
  });

  test('tokens at the bounds are accepted: the longest lifetime the admin API issues, and one dated a minute ahead (another region\'s clock)', async () => {
    const org = await createOrg(url);
    const longest = await call(url, 'POST', `/admin/organizations/${org.id}/access-tokens`, { headers: adminHeaders, body: { expires_in_seconds: MAX_TOKEN_LIFETIME_SECONDS } });
    expect(longest.status).toBe(201);
    const now = Math.floor(Date.now() / 1000);
    const ahead = sign(claims(org.id, { iat: now + 60, exp: now + 660 }));
    for (const token of [longest.body.access_token as string, ahead]) {
      // Authenticated, authorized, and no config yet: 404, not 401.
      const res = await api('GET', `${SSO}?organizationId=${org.id}`, bearer(token));
      expect(res.status).toBe(404);
    }
  });

  test('the Bearer scheme is matched in any case, as HTTP authentication schemes are', async () => {
    const org = await createOrg(url);
    const token = await issueToken(url, org.id);
    for (const scheme of ['bearer', 'BEARER']) {
      // Authenticated, authorized, and no config yet: 404, not 401.
      const res = await api('GET', `${SSO}?organizationId=${org.id}`, { authorization: `${scheme} ${token}` });
      expect(res.status).toBe(404);
    }
  });

  test('during a rotation, a token naming no accepted key is told what is wrong with it as if the signing secret had signed it', () => {
    const accepted = 'an-older-secret-still-accepted-for-a-while';
    const secrets = [SECRET, accepted];
    const now = Math.floor(Date.now() / 1000);
    // The signing secret's own tokens, but without a key id, or expired and naming a key nobody knows.
    const noKid = jwt.sign(claims('01a20904-0000-7000-8000-000000000000'), SECRET, { algorithm: 'HS256' });
    const expired = sign(claims('01a20904-0000-7000-8000-000000000000', { iat: now - 600, exp: now - 60 }), { keyid: 'unknown' });
    expect(() => verifyAccessToken(secrets, noKid)).toThrow(/does not name the key/);
    expect(() => verifyAccessToken(secrets, expired)).toThrow(/expired at/);
  });

  test('two Authorization headers are a 401 whichever comes first: Node would take the first, a proxy in front perhaps the other', async () => {
    const mine = await createOrg(url);
    const theirs = await createOrg(url);
    const [myToken, theirToken] = [await issueToken(url, mine.id), await issueToken(url, theirs.id)];
    await api('POST', SSO, bearer(myToken), configBody(mine.id, certs.pem));
    const exchange = (first: string, second: string) =>
      rawExchangeWith(Number(new URL(url).port), [
        `GET ${SSO}?organizationId=${mine.id} HTTP/1.1`, `Host: ${new URL(url).host}`, `Authorization: ${first}`, `Authorization: ${second}`, 'Connection: close', '', '',
      ].join('\r\n'));
    for (const [first, second] of [[`Bearer ${myToken}`, `Bearer ${theirToken}`], [`Bearer ${myToken}`, `Bearer ${myToken}`], ['Basic eDp5', `Bearer ${myToken}`]]) {
      const answer = await exchange(first ?? '', second ?? '');
      expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 401 Unauthorized');
      const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4));
      expect(body).toMatchObject({ statusCode: 401, error: 'UnauthorizedError', message: 'The Authorization header is given 2 times; send it once, with one access token.' });
      expect(body.message).not.toContain(mine.id);
    }
  });

  test('the admin API refuses two Authorization headers too, even when the first is the admin token', async () => {
    const org = await createOrg(url);
    const answer = await rawExchangeWith(Number(new URL(url).port), [
      `POST /admin/organizations/${org.id}/access-tokens HTTP/1.1`, `Host: ${new URL(url).host}`, `Authorization: ${adminHeaders.authorization}`,
      'Authorization: Bearer something-else', 'Content-Length: 0', 'Connection: close', '', '',
    ].join('\r\n'));
    expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 401 Unauthorized');
    expect(answer).toContain('the Authorization header is given 2 times');
    expect(answer).not.toContain('access_token');
  });

  test('authentication comes before the body is looked at', async () => {
    const res = await api('POST', SSO, {}, { nonsense: true });
    expect(res.status).toBe(401);
  });
});

describe('403: the token is for another organization', () => {
  test('refuses POST, GET and PATCH on an org that is not the token org or below it', async () => {
    const mine = await createOrg(url, 'mine');
    const theirs = await createOrg(url, 'theirs');
    const theirToken = await issueToken(url, theirs.id);
    expect((await api('POST', SSO, bearer(theirToken), configBody(theirs.id, certs.pem))).status).toBe(200);

    const token = await issueToken(url, mine.id);
    const attempts = await triesOn(token, theirs.id);
    for (const res of attempts) {
      expect(res.status).toBe(403);
      expect(res.body).toMatchObject({ error: 'PermissionDenied', message: expect.stringContaining(theirs.id) });
    }
    const unchanged = await api('GET', `${SSO}?organizationId=${theirs.id}`, bearer(theirToken));
    expect(unchanged.body.isActive).toBe(true);
  });

  test('an org that does not exist is a 403 too: the token cannot be for it', async () => {
    const mine = await createOrg(url);
    const token = await issueToken(url, mine.id);
    const res = await api('GET', `${SSO}?organizationId=00000000-0000-4000-8000-000000000000`, bearer(token));
    expect(res.status).toBe(403);
  });

  test('a token for an organization that does not exist (here: deleted, or not replicated yet) acts on nothing, not even on itself', async () => {
    const ghost = '00000000-0000-4000-8000-00000000abcd';
    const token = sign(claims(ghost));
    const attempts = await triesOn(token, ghost);
    for (const res of attempts) expect(res).toMatchObject({ status: 403, body: { error: 'PermissionDenied' } });
    expect(await region.region.db.infisicalSamlConfig.count({ where: { orgId: ghost } })).toBe(0);
  });

  test("a token whose own organization this region does not have is told so, not that it is bound to another organization", async () => {
    const ghost = '00000000-0000-4000-8000-00000000abce';
    const token = sign(claims(ghost));
    const attempts = await triesOn(token, ghost, ghost.toUpperCase());
    for (const res of attempts) {
      expect(res).toMatchObject({ status: 403, body: { error: 'PermissionDenied' } });
      expect(res.body.message).not.toContain('bound to another organization');
      expect(res.body.message).toContain(`The organization ${ghost}, the one this access token is for, does not exist in this region`);
    }
    // Another organization's id is still answered alike whether or not it exists (nothing said about others).
    const mine = await createOrg(url);
    const res = await api('GET', `${SSO}?organizationId=${ghost}`, bearer(await issueToken(url, mine.id)));
    expect(res.body.message).toContain('it is for neither that organization nor one of its ancestors in this region');
  });

  test("a parent's token for a sub-organization this region does not have yet is told it may still be on its way", async () => {
    // The sub-organization was created under the parent in another region, with local_region: this region has
    // not received it (here: an id it has never seen, which it cannot tell apart). It said "bound to another
    // organization", which sent the token's holder looking for another token instead of retrying.
    const parent = await createOrg(url, 'parent-elsewhere');
    const token = await issueToken(url, parent.id);
    const notYetHere = '00000000-0000-4000-8000-00000000abcf';
    const attempts = await triesOn(token, notYetHere, notYetHere.toUpperCase());
    for (const res of attempts) {
      expect(res).toMatchObject({ status: 403, body: { error: 'PermissionDenied' } });
      expect(res.body.message).not.toContain('bound to another organization');
      expect(res.body.message).toContain(`This access token is not valid for organization ${notYetHere}: it is for neither that organization nor one of its ancestors in this region.`);
      expect(res.body.message).toContain('An organization created in another region moments ago may not have reached this one yet');
    }
    expect(await region.region.db.infisicalSamlConfig.count({ where: { orgId: notYetHere } })).toBe(0);
  });

  test("a parent org's token works for its sub-organization, not the other way round", async () => {
    const parent = await createOrg(url, 'parent');
    const child = await createOrg(url, 'child', { parent_id: parent.id });
    const parentToken = await issueToken(url, parent.id);
    const created = await api('POST', SSO, bearer(parentToken), configBody(child.id, certs.pem));
    expect(created.status).toBe(200);
    expect(created.body.orgId).toBe(child.id);
    // The parent's token reads the child's config (the organization it names), not one of its own.
    const read = await api('GET', `${SSO}?organizationId=${child.id}`, bearer(parentToken));
    expect(read.status).toBe(200);
    expect(read.body).toMatchObject({ id: created.body.id, orgId: child.id, organization: child.id });
    const childToken = await issueToken(url, child.id);
    expect((await api('GET', `${SSO}?organizationId=${child.id}`, bearer(childToken))).status).toBe(200);
    expect((await api('POST', SSO, bearer(childToken), configBody(parent.id, certs.pem))).status).toBe(403);
    // The parent's token follows the change it made for the child (its X-Change-Id); another org's does not.
    const change = created.headers.get('x-change-id');
    const followed = (token: string) => call(url, 'GET', `/api/v1/replication/changes/${change}`, { headers: bearer(token) });
    expect((await followed(parentToken)).status).toBe(200);
    expect((await followed(childToken)).status).toBe(200);
    const stranger = await issueToken(url, (await createOrg(url, 'stranger')).id);
    expect((await followed(stranger)).status).toBe(404);
  });

  test('validation comes before authorization: a malformed body for another org is a 422', async () => {
    const mine = await createOrg(url);
    const theirs = await createOrg(url);
    const token = await issueToken(url, mine.id);
    const res = await api('POST', SSO, bearer(token), configBody(theirs.id, certs.pem, { entryPoint: 'http://idp.example.com' }));
    expect(res.status).toBe(422);
  });
});
