/**
 * Idempotency-Key on POST /api/v1/sso/config, on one region. Every answer is checked against the seed's
 * response schemas, the new 422 included.
 */
import { idempotencyRowId } from '../../src/idempotency/request';
import { CREATE_ENDPOINT } from '../../src/infisical/routes';
import { call, createOrg, slashidHeaders } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { bearer, certValidUntil, configBody, issueToken, makeCerts, SSO, type TestCerts } from '../infisical/support/fixtures';
import { expectSeedShape } from '../infisical/support/seed-schemas';

let r: InProcessRegion;
let idp: IdpServer;
let certs: TestCerts;

beforeAll(async () => {
  certs = makeCerts();
  idp = await startIdpServer();
  r = await startInProcess('idem-infisical', ['us-iowa'], { metadataAllowedHosts: [idp.hostPort] });
});
afterAll(async () => {
  await r?.stop();
  await idp?.close();
});

type Org = { id: string; api_key: string; token: string };

async function newOrg(name = 'acme'): Promise<Org> {
  const org = await createOrg(r.url, name);
  return { ...org, token: await issueToken(r.url, org.id) };
}

async function post(org: Org, body: unknown, key?: string) {
  const res = await call(r.url, 'POST', SSO, { body, headers: bearer(org.token, key === undefined ? {} : { 'Idempotency-Key': key }) });
  expectSeedShape('POST', res);
  return res;
}

const configs = (org: Org) => r.region.db.infisicalSamlConfig.count({ where: { orgId: org.id } });

test('a retry with the same key and body answers 200 with the same config, marked as replayed, instead of 409', async () => {
  const org = await newOrg();
  const first = await post(org, configBody(org.id, certs.pem), 'sso-1');
  expect(first.status).toBe(200);
  expect(first.headers.get('idempotent-replayed')).toBeNull();
  const again = await post(org, configBody(org.id, certs.pem), 'sso-1');
  expect(again.status).toBe(200);
  expect(again.headers.get('idempotent-replayed')).toBe('true');
  expect(again.body).toEqual(first.body);
  expect(again.headers.get('x-change-id')).toBe(first.headers.get('x-change-id'));
  expect(again.headers.get('x-change-id')).toMatch(/^[0-9a-f-]{36}$/);
  expect(await configs(org)).toBe(1);
});

test('a retry that spells organizationId in the other case is the same request and replays (it was a 422)', async () => {
  const org = await newOrg();
  const first = await post(org, configBody(org.id.toUpperCase(), certs.pem), 'sso-case');
  expect(first.status).toBe(200);
  const again = await post(org, configBody(org.id.toLowerCase(), certs.pem), 'sso-case');
  expect({ status: again.status, replayed: again.headers.get('idempotent-replayed') }).toEqual({ status: 200, replayed: 'true' });
  expect(again.body).toEqual(first.body);
  expect(await configs(org)).toBe(1);
});

test('a retry after the certificate it uploaded expired replays the 200, not a 422 for the certificate', async () => {
  const [org, other] = [await newOrg(), await newOrg('other')];
  const cert = certValidUntil(new Date(Date.now() + 10 * 60_000));
  const body = configBody(org.id, cert);
  const first = await post(org, body, 'cert-expires');
  expect(first.status).toBe(200);
  // Twenty minutes on (this process's clock, which the in-process region reads): the certificate has expired.
  const realNow = Date.now.bind(Date);
  const later = jest.spyOn(Date, 'now').mockImplementation(() => realNow() + 20 * 60_000);
  try {
    const again = await post(org, body, 'cert-expires');
    expect({ status: again.status, replayed: again.headers.get('idempotent-replayed') }).toEqual({ status: 200, replayed: 'true' });
    expect(again.body).toEqual(first.body);
    // A new request with that certificate is still refused.
    const fresh = await post(other, configBody(other.id, cert), 'cert-expires');
    expect(fresh.status).toBe(422);
    expect(JSON.stringify(fresh.body)).toContain('expired');
  } finally {
    later.mockRestore();
  }
});

test('the same key with a different body answers 422 IdempotencyKeyReused and changes nothing', async () => {
  const org = await newOrg();
  await post(org, configBody(org.id, certs.pem), 'sso-2');
  const before = await r.region.db.infisicalSamlConfig.findUniqueOrThrow({ where: { orgId: org.id } });
  const other = await post(org, configBody(org.id, certs.otherPem, { issuer: 'someone-else' }), 'sso-2');
  expect(other.status).toBe(422);
  expect(other.body).toEqual({
    reqId: expect.any(String),
    statusCode: 422,
    error: 'IdempotencyKeyReused',
    message: expect.stringContaining("Idempotency-Key 'sso-2' was already used with a different request body"),
  });
  expect(other.body.reqId).toBe(other.headers.get('x-request-id'));
  const after = await r.region.db.infisicalSamlConfig.findUniqueOrThrow({ where: { orgId: org.id } });
  expect(after).toEqual(before);
});

test('two organizations use the same key independently', async () => {
  const a = await newOrg('a');
  const b = await newOrg('b');
  const ra = await post(a, configBody(a.id, certs.pem), 'shared');
  const rb = await post(b, configBody(b.id, certs.pem), 'shared');
  expect([ra.status, rb.status]).toEqual([200, 200]);
  expect(rb.headers.get('idempotent-replayed')).toBeNull();
  expect(rb.body.orgId).toBe(b.id);
  expect(rb.body.id).not.toBe(ra.body.id);
});

test("a key is per target organization, whoever's token sends it: a parent's token may use one key for two children, and a child's retry of its own create replays", async () => {
  const parent = await newOrg('idem parent');
  const child = async (name: string): Promise<Org> => {
    const org = await createOrg(r.url, name, { parent_id: parent.id });
    return { ...org, token: await issueToken(r.url, org.id) };
  };
  const [a, b] = [await child('idem child a'), await child('idem child b')];
  const forA = await post(parent, configBody(a.id, certs.pem), 'per-target');
  expect(forA.status).toBe(200);
  const forB = await post(parent, configBody(b.id, certs.pem), 'per-target');
  expect(forB.status).toBe(200);
  expect(forB.headers.get('idempotent-replayed')).toBeNull();
  expect(forB.body.orgId).toBe(b.id);
  // The same request for a, sent with a's own token: the same create, answered as the first.
  const retried = await post(a, configBody(a.id, certs.pem), 'per-target');
  expect(retried.status).toBe(200);
  expect(retried.headers.get('idempotent-replayed')).toBe('true');
  expect(retried.body.id).toBe(forA.body.id);
  expect([await configs(a), await configs(b)]).toEqual([1, 1]);
});

test('a key is per endpoint: the same key on the SlashID create is a separate request', async () => {
  const org = await newOrg();
  const sso = await post(org, configBody(org.id, certs.pem), 'both-apis');
  const cred = await call(r.url, 'POST', '/organizations/sso/saml/provider-credentials', {
    body: { idp_metadata_url: idp.url('okta.xml') },
    headers: slashidHeaders(org, { 'Idempotency-Key': 'both-apis' }),
  });
  expect(sso.status).toBe(200);
  expect(cred.status).toBe(201);
  expect(cred.headers.get('idempotent-replayed')).toBeNull();
});

test('without a key, the second create answers 409 as before', async () => {
  const org = await newOrg();
  expect((await post(org, configBody(org.id, certs.pem))).status).toBe(200);
  const second = await post(org, configBody(org.id, certs.pem));
  expect(second.status).toBe(409);
  expect(second.body.error).toBe('Conflict');
});

test('a create that conflicts does not store its key', async () => {
  const org = await newOrg();
  await post(org, configBody(org.id, certs.pem));
  const second = await post(org, configBody(org.id, certs.pem), 'after-conflict');
  expect(second.status).toBe(409);
  expect(await r.region.db.idempotencyKey.count({ where: { orgId: org.id } })).toBe(0);
});

test.each([
  ['an empty key', ''],
  ['a key of 256 characters', 'k'.repeat(256)],
  ['a key with a space', 'a b'],
])('%s answers 400 BadRequest and writes nothing', async (_n, key) => {
  const org = await newOrg();
  const res = await post(org, configBody(org.id, certs.pem), key);
  expect(res.status).toBe(400);
  expect(res.body).toMatchObject({ statusCode: 400, error: 'BadRequest', message: expect.stringContaining('Idempotency-Key') });
  expect(await configs(org)).toBe(0);
});

test('ten concurrent creates with one key all answer 200 with the one config', async () => {
  const org = await newOrg();
  const answers = await Promise.all(Array.from({ length: 10 }, () => post(org, configBody(org.id, certs.pem), 'burst')));
  expect(answers.map((a) => a.status)).toEqual(Array(10).fill(200));
  expect(new Set(answers.map((a) => JSON.stringify(a.body))).size).toBe(1);
  expect(answers.filter((a) => a.headers.get('idempotent-replayed') === null)).toHaveLength(1);
  expect(await configs(org)).toBe(1);
});

test('an expired key is a new request: the create then meets the existing config and answers 409', async () => {
  const org = await newOrg();
  await post(org, configBody(org.id, certs.pem), 'expiring');
  await r.region.db.idempotencyKey.update({
    where: { id: idempotencyRowId(org.id, CREATE_ENDPOINT, 'expiring') },
    data: { expiresAt: new Date(Date.now() - 1000) },
  });
  const retry = await post(org, configBody(org.id, certs.pem), 'expiring');
  expect(retry.status).toBe(409);
});
