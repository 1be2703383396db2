/**
 * The Infisical-compatible SSO config API on one region: every answer is checked against the seed's
 * OpenAPI response schemas.
 */
import { samlConfigId } from '../../src/infisical/service';
import { call, createOrg, type ApiResponse } from '../support/harness';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { bearer, configBody, issueToken, makeCerts, SSO, type TestCerts } from './support/fixtures';
import { expectSeedShape, validatorFor } from './support/seed-schemas';

let region: InProcessRegion;
let url: string;
let certs: TestCerts;

beforeAll(async () => {
  certs = makeCerts();
  region = await startInProcess('infisical', ['us-iowa']);
  url = region.url;
});
afterAll(async () => {
  await region?.stop();
});

/** A fresh org and a token for it. */
async function newOrg(name = 'acme') {
  const org = await createOrg(url, name);
  return { id: org.id, token: await issueToken(url, org.id) };
}

async function api(method: string, path: string, token: string, opts: { body?: unknown; rawBody?: string; headers?: Record<string, string> } = {}) {
  const res = await call(url, method, path, { ...opts, headers: bearer(token, opts.headers) });
  expectSeedShape(method, res);
  return res;
}

function issues(res: ApiResponse): { code: string; path: string[]; message: string }[] {
  expect(res.status).toBe(422);
  expect(res.body.error).toBe('ValidationFailure');
  expect(Array.isArray(res.body.message)).toBe(true);
  return res.body.message;
}

test('the seed validators are strict: an extra field or a wrong type fails them', () => {
  const ok = {
    id: '0b9f6f7e-8d0e-4c4a-9d7e-6a1f9b2f0c11', orgId: '5a0c5a39-7ad3-4f4b-9bd1-1d6c0d3d7a55', isActive: true,
    lastUsed: null, createdAt: '2026-11-23T01:00:00.000Z', updatedAt: '2026-11-23T01:00:00.000Z', authProvider: 'okta-saml',
  };
  const post200 = validatorFor('POST', 200);
  expect(post200(ok)).toBe(true);
  expect(post200({ ...ok, cert: 'x' })).toBe(false);
  expect(post200({ ...ok, lastUsed: 'yesterday' })).toBe(false);
  expect(validatorFor('GET', 200)(ok)).toBe(false);
  expect(validatorFor('GET', 404)({ reqId: 'r', statusCode: 404, message: 'm', error: 'NotFound', details: {} })).toBe(false);
});

describe('POST /api/v1/sso/config', () => {
  test('creates the config and answers 200 with exactly the seed fields', async () => {
    const org = await newOrg();
    const res = await api('POST', SSO, org.token, { body: configBody(org.id, certs.pem, { enableGroupSync: false }) });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ orgId: org.id, isActive: true, lastUsed: null, authProvider: 'okta-saml' });
    expect(res.body.createdAt).toBe(res.body.updatedAt);
    expect(res.headers.get('x-change-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  test('derives the config id from the organization, so every region would pick the same one', async () => {
    const org = await newOrg();
    const res = await api('POST', SSO, org.token, { body: configBody(org.id, certs.pem) });
    expect(res.status).toBe(200);
    expect(res.body.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-/);
    expect(res.body.id).toBe(samlConfigId(org.id));
    expect(res.body.id).not.toBe(org.id);
    const again = await newOrg();
    const other = await api('POST', SSO, again.token, { body: configBody(again.id, certs.pem) });
    expect(other.body.id).not.toBe(res.body.id);
  });

  test('accepts a certificate given as bare base64 DER, as IdPs often hand it out', async () => {
    const org = await newOrg();
    const res = await api('POST', SSO, org.token, { body: configBody(org.id, certs.bareBase64, { authProvider: 'azure-saml' }) });
    expect(res.status).toBe(200);
    const got = await api('GET', `${SSO}?organizationId=${org.id}`, org.token);
    expect(got.body.cert).toBe(certs.bareBase64);
  });

  test('accepts a certificate whose subject and issuer are empty (named in its subjectAltName; it was a 500)', async () => {
    const org = await newOrg();
    const res = await api('POST', SSO, org.token, { body: configBody(org.id, certs.noSubjectPem) });
    expect(res.status).toBe(200);
    const patched = await api('PATCH', SSO, org.token, { body: { organizationId: org.id, cert: certs.noSubjectPem } });
    expect(patched.status).toBe(200);
  });

  test('answers 409 with a clear message for a second config of the same org, and keeps the first', async () => {
    const org = await newOrg();
    const first = await api('POST', SSO, org.token, { body: configBody(org.id, certs.pem) });
    expect(first.status).toBe(200);
    const second = await api('POST', SSO, org.token, { body: configBody(org.id, certs.otherPem, { issuer: 'second' }) });
    expect(second.status).toBe(409);
    expect(second.body.error).toBe('Conflict');
    expect(second.body.message).toContain(`Organization ${org.id} already has a SAML config`);
    expect(second.body.message).toContain('PATCH');
    const got = await api('GET', `${SSO}?organizationId=${org.id}`, org.token);
    expect(got.body.issuer).toBe('http://www.okta.com/exk1example');
  });

  test('of two simultaneous creates for one org, exactly one wins and the other gets 409', async () => {
    const org = await newOrg();
    const results = await Promise.all(
      ['a', 'b', 'c'].map((i) => api('POST', SSO, org.token, { body: configBody(org.id, certs.pem, { issuer: i }) })),
    );
    expect(results.map((r) => r.status).sort()).toEqual([200, 409, 409]);
  });
});

describe('validation (422, Infisical shape)', () => {
  let org: { id: string; token: string };
  beforeAll(async () => {
    org = await newOrg('validation');
  });

  test('lists every missing and malformed field at once', async () => {
    const res = await api('POST', SSO, org.token, {
      body: { organizationId: org.id, authProvider: 'onelogin-saml', isActive: 'yes', extra: 1 },
    });
    const list = issues(res);
    const byField = new Map(list.map((i) => [i.path.join('.') || (i.code === 'unrecognized_keys' ? 'keys' : ''), i]));
    expect(byField.get('authProvider')?.code).toBe('invalid_enum_value');
    expect(byField.get('authProvider')?.message).toContain("'okta-saml'");
    expect(byField.get('isActive')?.code).toBe('invalid_type');
    for (const f of ['entryPoint', 'issuer', 'cert']) expect(byField.get(f)?.message).toBe(`${f} is required`);
    expect(list.some((i) => i.code === 'unrecognized_keys' && i.message.includes("'extra'"))).toBe(true);
  });

  test("an unknown field's message quotes its name as every other error quotes what the client sent: cut after 64 characters, control and invisible characters as ?; keys holds it as sent", async () => {
    const long = 'k'.repeat(5000);
    const disguised = 'isActive\u202e\u0007';
    const res = await api('POST', SSO, org.token, { body: { ...configBody(org.id, certs.pem), [long]: 1, [disguised]: 1 } });
    // Before, the message quoted the name whole: 5,000 characters, and a right-to-left override as it was.
    expect(issues(res).filter((i) => i.code === 'unrecognized_keys')).toEqual([
      { code: 'unrecognized_keys', path: [], keys: [long], message: `Unrecognized key in body: '${'k'.repeat(64)}…' (5000 characters)` },
      { code: 'unrecognized_keys', path: [], keys: [disguised], message: "Unrecognized key in body: 'isActive??'" },
    ]);
  });

  test.each([
    ['http://idp.example.com/sso', "'http' would send SAML requests unprotected"],
    ['/sso/saml', 'must be an absolute https URL'],
    ['idp.example.com/sso', 'must be an absolute https URL'],
    ['https://user:pw@idp.example.com/sso', 'user name or password'],
    // An empty user name: the WHATWG parser drops it, but the stored value still carries the '@'.
    ['https://@idp.example.com/sso', 'user name or password'],
    // What the WHATWG parser repairs, and the value would keep as sent (a review found them stored).
    ['https://idp.example.com/\r\nSet-Cookie: x=1', 'a control character (U+000D)'],
    ['https://idp.example.com/a\u0007b', 'a control character (U+0007)'],
    ['https://idp.example.com/a b', 'a space'],
    // Unicode's separators and invisible characters, which the WHATWG parser percent-encodes (a fuzzing review found them stored raw).
    ['https://idp.example.com/a\u2028b', 'an invisible or space character (U+2028)'],
    ['https://idp.example.com/a\u00a0b', 'an invisible or space character (U+00A0)'],
    ['https://idp.example.com/a\u3000b', 'an invisible or space character (U+3000)'],
    ['https://idp.example.com/a\u202eb', 'an invisible or space character (U+202E)'],
    ['https://idp.example.com/a\u200bb', 'an invisible or space character (U+200B)'],
    ['https://a\u034fb.example.com/', 'an invisible or space character (U+034F)'],
    ['https://idp.example.com/a\ufe0fb', 'an invisible or space character (U+FE0F)'],
    ['https://idp.example.com/a\u{e0001}b', "an invisible or space character (U+E0001); percent-encode it (in a host name, use its xn-- form) (got 'https://idp.example.com/a<U+E0001>b')"],
    ['https:\\\\idp.example.com\\sso', 'a backslash'],
    ['https://idp.example.com\\@evil.com/', 'a backslash'],
    ['https:idp.example.com/sso', 'must be an absolute https URL'],
    ['https:///path', 'must be an absolute https URL'],
    // Characters the WHATWG parser keeps in a host name and no DNS name holds (a security review stored them).
    ['https://a"b.com/', `entryPoint's host must be a DNS name or an IP address`],
    ['https://idp.example.com;x/sso', `(got 'idp.example.com;x')`],
  ])('refuses entryPoint %j', async (entryPoint, why) => {
    const res = await api('POST', SSO, org.token, { body: configBody(org.id, certs.pem, { entryPoint }) });
    const list = issues(res);
    expect(list).toEqual([{ code: 'custom', path: ['entryPoint'], message: expect.stringContaining(why) }]);
  });

  test.each([
    ['<certificate?>', 'not base64'],
    ['QUJDREVGR0g=', 'not an X.509 certificate'],
    ['-----BEGIN PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----', 'BEGIN PRIVATE KEY'],
  ])('refuses a cert that does not parse (%s) and says why', async (cert, why) => {
    const res = await api('POST', SSO, org.token, { body: configBody(org.id, cert) });
    const list = issues(res);
    expect(list).toHaveLength(1);
    expect(list[0]?.path).toEqual(['cert']);
    expect(list[0]?.message).toContain('cert is not a usable X.509 certificate');
    expect(list[0]?.message).toContain(why);
  });

  test('refuses an expired certificate and names its expiry date', async () => {
    const res = await api('POST', SSO, org.token, { body: configBody(org.id, certs.expiredPem) });
    const list = issues(res);
    expect(list).toHaveLength(1);
    expect(list[0]?.message).toContain(`expired on ${certs.expiredNotAfter}`);
    expect(list[0]?.message).toContain('CN=expired-idp');
  });

  test('reports schema problems and certificate problems together', async () => {
    const res = await api('POST', SSO, org.token, { body: configBody(org.id, certs.expiredPem, { entryPoint: 'ftp://x', isActive: 1 }) });
    expect(issues(res).map((i) => i.path[0]).sort()).toEqual(['cert', 'entryPoint', 'isActive']);
  });

  test('an issuer over 1,024 characters is a too_big 422 and stores nothing; 1,024 is taken', async () => {
    const own = await newOrg('issuer bound');
    const long = await api('POST', SSO, own.token, { body: configBody(own.id, certs.pem, { issuer: `https://idp.example.com/${'i'.repeat(1001)}` }) });
    expect(issues(long)).toEqual([expect.objectContaining({ code: 'too_big', path: ['issuer'] })]);
    expect((await api('GET', `${SSO}?organizationId=${own.id}`, own.token)).status).toBe(404);
    const at = `https://idp.example.com/${'i'.repeat(1000)}`;
    expect(at).toHaveLength(1024);
    expect((await api('POST', SSO, own.token, { body: configBody(own.id, certs.pem, { issuer: at }) })).status).toBe(200);
    expect((await api('GET', `${SSO}?organizationId=${own.id}`, own.token)).body.issuer).toBe(at);
  });

  test.each([1, true, ['okta-saml'], null])('an authProvider of the wrong type (%j) is one issue naming the allowed values, not two', async (authProvider) => {
    const res = await api('POST', SSO, org.token, { body: configBody(org.id, certs.pem, { authProvider }) });
    expect(issues(res)).toEqual([
      { code: 'invalid_type', path: ['authProvider'], message: expect.stringMatching(/^authProvider must be of type string, one of 'okta-saml' \| .*'auth0-saml'$/) },
    ]);
  });

  test('a body that is JSON but not an object is a 422', async () => {
    const res = await api('POST', SSO, org.token, { body: ['x'] });
    expect(issues(res)[0]?.message).toBe('body must be of type object');
  });

  test('GET without organizationId, or with one that is not a UUID, is a 422', async () => {
    expect(issues(await api('GET', SSO, org.token))[0]?.path).toEqual(['organizationId']);
    expect(issues(await api('GET', `${SSO}?organizationId=acme`, org.token))[0]?.code).toBe('invalid_string');
    // ajv's uuid format would take a urn:uuid: prefix that the database then rejects (a 500 before).
    expect(issues(await api('GET', `${SSO}?organizationId=urn:uuid:${org.id}`, org.token))[0]?.code).toBe('invalid_string');
  });

  test('nothing is written when validation fails', async () => {
    const res = await api('GET', `${SSO}?organizationId=${org.id}`, org.token);
    expect(res.status).toBe(404);
  });
});

describe('bad requests (400, Infisical shape)', () => {
  let org: { id: string; token: string };
  beforeAll(async () => {
    org = await newOrg('badreq');
  });

  test('invalid JSON', async () => {
    const res = await api('POST', SSO, org.token, { rawBody: '{"organizationId":', headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ error: 'BadRequest', message: 'The request body is not valid JSON.' });
  });

  test('a field named twice, in POST and PATCH, naming it; nothing is written', async () => {
    const own = await newOrg('twice');
    const json = { 'content-type': 'application/json' };
    const body = JSON.stringify(configBody(own.id, certs.pem));
    const message = "The request body names the field 'isActive' more than once; send each field once (JSON parsers differ on which value counts).";
    for (const method of ['POST', 'PATCH']) {
      const res = await api(method, SSO, own.token, { rawBody: body.replace(/}$/, ',"isActive":false}'), headers: json });
      expect({ status: res.status, body: res.body }).toEqual({ status: 400, body: { reqId: expect.any(String), statusCode: 400, message, error: 'BadRequest' } });
    }
    expect((await api('GET', `${SSO}?organizationId=${own.id}`, own.token)).status).toBe(404);
  });

  test('a content type other than JSON', async () => {
    const res = await api('PATCH', SSO, org.token, { rawBody: 'organizationId=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(res.status).toBe(400);
    expect(res.body.message).toContain('Content-Type must be application/json');
  });

  test('bad consistency headers', async () => {
    const body = configBody(org.id, certs.pem);
    const level = await api('POST', SSO, org.token, { body, headers: { 'SlashID-Required-Consistency': 'everywhere' } });
    expect(level.status).toBe(400);
    expect(level.body.message).toContain('SlashID-Required-Consistency');
    const timeout = await api('PATCH', SSO, org.token, { body: { organizationId: org.id }, headers: { 'SlashID-Required-Consistency-Timeout': '500' } });
    expect(timeout.status).toBe(400);
    expect(timeout.body.message).toContain('1 to 120');
  });
});

describe('GET and PATCH', () => {
  test('GET returns the config with entryPoint, issuer and cert', async () => {
    const org = await newOrg();
    const created = await api('POST', SSO, org.token, { body: configBody(org.id, certs.pem) });
    const res = await api('GET', `${SSO}?organizationId=${org.id}`, org.token);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      ...created.body,
      organization: org.id,
      entryPoint: 'https://idp.example.com/app/sso/saml',
      issuer: 'http://www.okta.com/exk1example',
      cert: certs.pem.trim(), // trimmed, as Infisical trims it
      enableGroupSync: false,
    });
  });

  test('string fields are trimmed before they are checked and stored, as Infisical trims them', async () => {
    const org = await newOrg();
    const res = await api('POST', SSO, org.token, {
      body: configBody(` ${org.id} `, `\n${certs.pem}\n`, { entryPoint: ' https://idp.example.com/sso ', issuer: ' urn:spaced\t' }),
    });
    expect(res.status).toBe(200);
    expect(res.body.orgId).toBe(org.id);
    expect((await api('PATCH', SSO, org.token, { body: { organizationId: org.id, issuer: '  urn:patched ' } })).status).toBe(200);
    const got = await api('GET', `${SSO}?organizationId=%20${org.id}%20`, org.token);
    expect(got.body).toMatchObject({ entryPoint: 'https://idp.example.com/sso', issuer: 'urn:patched', cert: certs.pem.trim() });
    // Blank after trimming is still missing.
    expect(issues(await api('PATCH', SSO, org.token, { body: { organizationId: org.id, issuer: '   ' } })).map((i) => i.path)).toEqual([['issuer']]);
  });

  test('group sync is for the providers Infisical supports it for (google-saml): 400 for another, nothing written', async () => {
    const org = await newOrg();
    const refused = await api('POST', SSO, org.token, { body: configBody(org.id, certs.pem, { enableGroupSync: true }) });
    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({ error: 'BadRequest', message: expect.stringMatching(/Group sync is not supported for this SAML provider/) });
    expect((await api('GET', `${SSO}?organizationId=${org.id}`, org.token)).status).toBe(404);
    expect((await api('POST', SSO, org.token, { body: configBody(org.id, certs.pem) })).status).toBe(200);
    // Turning it on for okta-saml, or moving a syncing config to okta-saml, is refused; google-saml takes it.
    expect((await api('PATCH', SSO, org.token, { body: { organizationId: org.id, enableGroupSync: true } })).status).toBe(400);
    expect((await api('PATCH', SSO, org.token, { body: { organizationId: org.id, enableGroupSync: true, authProvider: 'google-saml' } })).status).toBe(200);
    expect((await api('GET', `${SSO}?organizationId=${org.id}`, org.token)).body).toMatchObject({ authProvider: 'google-saml', enableGroupSync: true });
    expect((await api('PATCH', SSO, org.token, { body: { organizationId: org.id, authProvider: 'okta-saml' } })).status).toBe(400);
    expect((await api('PATCH', SSO, org.token, { body: { organizationId: org.id, authProvider: 'okta-saml', enableGroupSync: false } })).status).toBe(200);
    expect((await api('GET', `${SSO}?organizationId=${org.id}`, org.token)).body).toMatchObject({ authProvider: 'okta-saml', enableGroupSync: false });
  });

  test('a config stored with group sync on before the provider rule existed can still have its other fields changed', async () => {
    const org = await newOrg();
    expect((await api('POST', SSO, org.token, { body: configBody(org.id, certs.pem) })).status).toBe(200);
    // Made by hand: the API no longer lets okta-saml sync groups.
    await region.region.db.$executeRawUnsafe('UPDATE infisical_saml_configs SET enable_group_sync = true WHERE org_id = $1::uuid', org.id);
    const res = await api('PATCH', SSO, org.token, { body: { organizationId: org.id, isActive: false, issuer: 'urn:still-syncing' } });
    expect(res.status).toBe(200);
    expect((await api('GET', `${SSO}?organizationId=${org.id}`, org.token)).body).toMatchObject({
      authProvider: 'okta-saml', enableGroupSync: true, isActive: false, issuer: 'urn:still-syncing',
    });
  });

  test('GET of an org without a config is a 404', async () => {
    const org = await newOrg();
    const res = await api('GET', `${SSO}?organizationId=${org.id}`, org.token);
    expect(res.status).toBe(404);
    expect(res.body.error).toBe('NotFound');
  });

  // "create one with POST" alone sent a client whose create in another region had not replicated yet to create
  // a second one here: answered 200, then discarded when the earlier create arrived.
  test('the 404 of GET and PATCH says a config created in another region may not be here yet, and not to create a second', async () => {
    const org = await newOrg();
    for (const res of [
      await api('GET', `${SSO}?organizationId=${org.id}`, org.token),
      await api('PATCH', SSO, org.token, { body: { organizationId: org.id, isActive: false } }),
    ]) {
      expect(res).toMatchObject({ status: 404, body: { error: 'NotFound' } });
      expect(res.body.message).toContain(`Organization ${org.id} has no SAML config in this region`);
      expect(res.body.message).toContain('not replicated here yet: retry shortly rather than create another, which would lose to it');
    }
  });

  test('PATCH changes only the given fields and moves updatedAt', async () => {
    const org = await newOrg();
    const created = await api('POST', SSO, org.token, { body: configBody(org.id, certs.pem) });
    await new Promise((r) => setTimeout(r, 10));
    const res = await api('PATCH', SSO, org.token, {
      body: { organizationId: org.id, isActive: false, cert: certs.otherPem, entryPoint: 'https://idp.example.com/v2/sso' },
    });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id: created.body.id, isActive: false, createdAt: created.body.createdAt, authProvider: 'okta-saml' });
    expect(Date.parse(res.body.updatedAt)).toBeGreaterThan(Date.parse(created.body.updatedAt));
    const got = await api('GET', `${SSO}?organizationId=${org.id}`, org.token);
    expect(got.body).toMatchObject({ isActive: false, cert: certs.otherPem.trim(), entryPoint: 'https://idp.example.com/v2/sso', issuer: 'http://www.okta.com/exk1example' });
  });

  test('PATCH with only organizationId changes nothing', async () => {
    const org = await newOrg();
    const created = await api('POST', SSO, org.token, { body: configBody(org.id, certs.pem) });
    const res = await api('PATCH', SSO, org.token, { body: { organizationId: org.id } });
    expect(res.status).toBe(200);
    expect(res.body).toEqual(created.body);
    expect(res.headers.get('x-change-id')).toBeNull();
  });

  test('PATCH validates like POST: an expired certificate is refused and the config is unchanged', async () => {
    const org = await newOrg();
    await api('POST', SSO, org.token, { body: configBody(org.id, certs.pem) });
    const res = await api('PATCH', SSO, org.token, { body: { organizationId: org.id, cert: certs.expiredPem, authProvider: 'saml' } });
    expect(issues(res).map((i) => i.path[0]).sort()).toEqual(['authProvider', 'cert']);
    const got = await api('GET', `${SSO}?organizationId=${org.id}`, org.token);
    expect(got.body.cert).toBe(certs.pem.trim());
  });

  test('PATCH refuses an entryPoint with a line break in it (a header injection for whoever redirects to it) and keeps the old one', async () => {
    const org = await newOrg();
    await api('POST', SSO, org.token, { body: configBody(org.id, certs.pem) });
    const before = (await api('GET', `${SSO}?organizationId=${org.id}`, org.token)).body.entryPoint;
    const res = await api('PATCH', SSO, org.token, { body: { organizationId: org.id, entryPoint: 'https://idp.example.com/\r\nSet-Cookie: x=1' } });
    expect(issues(res)).toEqual([{ code: 'custom', path: ['entryPoint'], message: expect.stringContaining('a control character (U+000D)') }]);
    expect((await api('GET', `${SSO}?organizationId=${org.id}`, org.token)).body.entryPoint).toBe(before);
  });

  test('refuses an issuer with a control character in it, as entryPoint is refused, in POST and PATCH; nothing is written', async () => {
    const org = await newOrg();
    for (const [issuer, c, shownAs] of [
      ['http://www.okta.com/exk1\texample', 'U+0009', 'http://www.okta.com/exk1\\texample'],
      ['urn:idp\r\nX-Injected: 1', 'U+000D', 'urn:idp\\r\\nX-Injected: 1'],
      ['urn:idp\u0085next', 'U+0085', 'urn:idp<U+0085>next'],
      ['urn:idp\u007f', 'U+007F', 'urn:idp<U+007F>'],
    ]) {
      const message = `issuer must not contain a control character (${c}); copy the IdP's entity ID as its metadata gives it (got '${shownAs}').`;
      const created = await api('POST', SSO, org.token, { body: configBody(org.id, certs.pem, { issuer }) });
      expect({ issuer, issues: issues(created) }).toEqual({ issuer, issues: [{ code: 'custom', path: ['issuer'], message }] });
    }
    expect((await api('GET', `${SSO}?organizationId=${org.id}`, org.token)).status).toBe(404);

    // Trimmed first, as Infisical trims it: a line break at either end is not kept, and not refused.
    expect((await api('POST', SSO, org.token, { body: configBody(org.id, certs.pem, { issuer: 'urn:idp:one\n' }) })).status).toBe(200);
    const patched = await api('PATCH', SSO, org.token, { body: { organizationId: org.id, issuer: 'urn:idp\u0007two', isActive: false } });
    expect(issues(patched)).toEqual([{ code: 'custom', path: ['issuer'], message: expect.stringContaining('issuer must not contain a control character (U+0007)') }]);
    expect((await api('GET', `${SSO}?organizationId=${org.id}`, org.token)).body).toMatchObject({ issuer: 'urn:idp:one', isActive: true });
  });

  test('refuses an issuer with an invisible formatting character or a line separator, or a blank one, as a label is refused; the joiners are taken', async () => {
    const org = await newOrg();
    for (const [issuer, message] of [
      ['urn:idp:\u202eeno', "issuer must not contain an invisible formatting character (U+202E); copy the IdP's entity ID as its metadata gives it (got 'urn:idp:<U+202E>eno')."],
      ['urn:i\u200bdp', "issuer must not contain an invisible formatting character (U+200B); copy the IdP's entity ID as its metadata gives it (got 'urn:i<U+200B>dp')."],
      ['urn:idp\u2028two', "issuer must not contain a line or paragraph separator (U+2028); copy the IdP's entity ID as its metadata gives it (got 'urn:idp<U+2028>two')."],
      // A Hangul filler alone: not trimmed (no white space), and shows as nothing.
      ['\u3164', 'issuer must not be blank (white space or invisible characters only).'],
    ]) {
      const created = await api('POST', SSO, org.token, { body: configBody(org.id, certs.pem, { issuer }) });
      expect({ issuer, issues: issues(created) }).toEqual({ issuer, issues: [{ code: 'custom', path: ['issuer'], message }] });
    }
    expect((await api('GET', `${SSO}?organizationId=${org.id}`, org.token)).status).toBe(404);

    const joined = 'urn:\u0645\u06cc\u200c\u062e:\u{1f469}\u200d\u{1f4bb}';
    expect((await api('POST', SSO, org.token, { body: configBody(org.id, certs.pem, { issuer: joined }) })).status).toBe(200);
    const patched = await api('PATCH', SSO, org.token, { body: { organizationId: org.id, issuer: 'urn:idp\u2060two' } });
    expect(issues(patched)).toEqual([{ code: 'custom', path: ['issuer'], message: expect.stringContaining('issuer must not contain an invisible formatting character (U+2060)') }]);
    expect((await api('GET', `${SSO}?organizationId=${org.id}`, org.token)).body.issuer).toBe(joined);
  });

  test('an issuer stored before the rule (or replicated from a region without it) is still read, and the config still patched', async () => {
    const org = await newOrg();
    expect((await api('POST', SSO, org.token, { body: configBody(org.id, certs.pem) })).status).toBe(200);
    const old = 'urn:idp:\u202eeno\u200b';
    await region.region.db.infisicalSamlConfig.update({ where: { orgId: org.id }, data: { issuer: old } });
    expect((await api('GET', `${SSO}?organizationId=${org.id}`, org.token)).body.issuer).toBe(old);
    expect((await api('PATCH', SSO, org.token, { body: { organizationId: org.id, isActive: false } })).status).toBe(200);
    expect((await api('GET', `${SSO}?organizationId=${org.id}`, org.token)).body).toMatchObject({ issuer: old, isActive: false });
  });

  test('PATCH of an org without a config is a 404', async () => {
    const org = await newOrg();
    const res = await api('PATCH', SSO, org.token, { body: { organizationId: org.id, isActive: false } });
    expect(res.status).toBe(404);
    expect(res.body).toMatchObject({ error: 'NotFound', message: expect.stringContaining('has no SAML config') });
  });

  test('unknown paths under /api/v1 also answer in Infisical shape', async () => {
    const org = await newOrg();
    for (const [method, path] of [['GET', '/api/v1/sso/other'], ['DELETE', SSO], ['GET', '/api/v1']]) {
      const res = await api(method as string, path as string, org.token);
      expect(res.status).toBe(404);
      expect(res.body.error).toBe('NotFound');
    }
  });

  test('another version under /api (a client that mistyped it) answers in Infisical shape, naming /api/v1', async () => {
    const org = await newOrg();
    const body = configBody(org.id, certs.pem);
    const cases: [string, string, { body?: unknown }][] = [
      ['GET', `/api/v2/sso/config?organizationId=${org.id}`, {}],
      ['POST', '/api/v3/sso/config', { body }],
      ['PATCH', '/API/V2/sso/config', { body: { organizationId: org.id, isActive: false } }],
      ['OPTIONS', '/api/v2/sso/config', {}],
      ['GET', '/api', {}],
      ['GET', '/api/', {}],
    ];
    for (const [method, path, opts] of cases) {
      const res = await api(method, path, org.token, opts);
      const route = path.split('?')[0];
      expect({ method, path, status: res.status, body: res.body }).toEqual({
        method, path, status: 404,
        body: {
          reqId: expect.any(String), statusCode: 404, error: 'NotFound',
          message: `Route ${method}:${route} not found. This service serves the Infisical-compatible API under /api/v1 only (POST, GET and PATCH /api/v1/sso/config).`,
        },
      });
    }
    // Without a token too (nothing to authenticate against on a path that does not exist), and nothing was written.
    const anonymous = await call(url, 'POST', '/api/v2/sso/config', { body });
    expect({ status: anonymous.status, error: anonymous.body.error }).toEqual({ status: 404, error: 'NotFound' });
    expect((await api('GET', `${SSO}?organizationId=${org.id}`, org.token)).status).toBe(404);
    // A path that only starts with the letters is not this dialect's.
    const slashid = await call(url, 'GET', '/apiv2/sso/config');
    expect({ status: slashid.status, errors: slashid.body.errors?.[0]?.httpcode }).toEqual({ status: 404, errors: 404 });
  });
});
