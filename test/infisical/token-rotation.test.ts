/**
 * Rotating TOKEN_SIGNING_SECRET without cutting off the tokens already out (access tokens live up to 30
 * days, SSO keys are cached for an hour): TOKEN_ACCEPTED_SECRETS. Two regions in the middle of a rotation,
 * as an operator rolls it out: us-iowa already signs with the new secret and still accepts the old one;
 * europe-belgium still signs with the old one and already accepts the new one. Every token either issues
 * works in both; a token of any other secret works in neither, whatever key id it names; each JWKS lists
 * its signing key first and the accepted one after it.
 */
import crypto from 'node:crypto';
import jwt from 'jsonwebtoken';
import { signingKeyId } from '../../src/infisical/access-tokens';
import { ssoTokenKey } from '../../src/sso/token-key';
import { call, createOrg, startCluster, type Cluster } from '../support/harness';
import { bearer, issueToken, SSO } from './support/fixtures';

const US = 'us-iowa';
const EU = 'europe-belgium';
const OLD = crypto.randomBytes(32).toString('hex');
const NEW = crypto.randomBytes(32).toString('hex');
let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster('token-rotation', [US, EU], {
    regionEnv: {
      [US]: { TOKEN_SIGNING_SECRET: NEW, TOKEN_ACCEPTED_SECRETS: OLD },
      [EU]: { TOKEN_SIGNING_SECRET: OLD, TOKEN_ACCEPTED_SECRETS: NEW },
    },
  });
}, 120_000);
afterAll(async () => {
  await cluster?.stop();
});

/** The status of reading the organization's SSO config with `token` in `region` (404: authenticated, no config yet). */
async function readWith(region: string, orgId: string, token: string): Promise<number> {
  return (await call(cluster.url(region), 'GET', `${SSO}?organizationId=${orgId}`, { headers: bearer(token) })).status;
}

const forged = (orgId: string, secret: string, kid: string) => {
  const now = Math.floor(Date.now() / 1000);
  return jwt.sign({ sub: orgId, aud: 'infisical-api', iss: 'saml-credential-service', iat: now, exp: now + 600 }, secret, { algorithm: 'HS256', keyid: kid });
};

test('a token issued with either secret is accepted in both regions', async () => {
  const org = await createOrg(cluster.url(US), 'acme', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });
  const fromUs = await issueToken(cluster.url(US), org.id);
  const fromEu = await issueToken(cluster.url(EU), org.id);
  expect(jwt.decode(fromUs, { complete: true })?.header.kid).toBe(signingKeyId(NEW));
  expect(jwt.decode(fromEu, { complete: true })?.header.kid).toBe(signingKeyId(OLD));
  for (const region of [US, EU]) {
    expect({ region, status: await readWith(region, org.id, fromUs) }).toEqual({ region, status: 404 });
    expect({ region, status: await readWith(region, org.id, fromEu) }).toEqual({ region, status: 404 });
  }
});

test('a token of any other secret is refused 401, whichever key id it names', async () => {
  const org = await createOrg(cluster.url(US), 'acme', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });
  const other = crypto.randomBytes(32).toString('hex');
  for (const kid of [signingKeyId(other), signingKeyId(OLD), signingKeyId(NEW), 'unknown']) {
    for (const region of [US, EU]) expect({ region, kid, status: await readWith(region, org.id, forged(org.id, other, kid)) }).toEqual({ region, kid, status: 401 });
  }
  // A token of an accepted secret must still name that secret's key: a kid is not optional during a rotation.
  for (const region of [US, EU]) expect(await readWith(region, org.id, forged(org.id, OLD, signingKeyId(NEW)))).toBe(401);
});

test('each region publishes its signing SSO key first and the accepted one after it', async () => {
  const [us, eu] = await Promise.all([US, EU].map((r) => call(cluster.url(r), 'GET', '/sso/saml/jwks.json')));
  expect((us?.body.keys as { kid: string }[]).map((k) => k.kid)).toEqual([ssoTokenKey(NEW).kid, ssoTokenKey(OLD).kid]);
  expect((eu?.body.keys as { kid: string }[]).map((k) => k.kid)).toEqual([ssoTokenKey(OLD).kid, ssoTokenKey(NEW).kid]);
  expect(us?.body.keys[0]).toEqual(ssoTokenKey(NEW).jwk);
});
