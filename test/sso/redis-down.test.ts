/**
 * Single sign-on while its Redis cannot be reached: a login still starts (it stores nothing), a response is
 * answered 503 with Retry-After in the SlashID envelope, never judged without its replay checks, and the
 * login is not used up: once Redis is back, the same response signs in, once.
 */
import { eventually, type Cluster } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { clusterWithOwnRedis, type OwnRedis } from '../support/redis-server';
import { b64, idpMetadata, requestFromRedirect, signedResponse, signer, type ResponseSpec } from './support/idp-simulator';
import { ssoCredential } from './support/credential';

const US = 'us-iowa';
const ENTITY = 'https://idp.simulator.test/saml';
const A = signer('idp-a');
let cluster: Cluster;
let redis: OwnRedis;
let stop: () => Promise<void>;
let idp: IdpServer;
let cred: string;

beforeAll(async () => {
  idp = await startIdpServer();
  idp.set('idp.xml', idpMetadata({ entityId: ENTITY, ssoUrl: `http://${idp.hostPort}/sso`, certs: [A] }));
  let servers: Map<string, OwnRedis>;
  ({ cluster, redis: servers, stop } = await clusterWithOwnRedis('sso-redis-down', [US], { metadataAllowedHosts: [idp.hostPort] }));
  redis = servers.get(US) as OwnRedis;
  cred = await ssoCredential(cluster.url(US), 'sso redis down', idp.url('idp.xml'));
}, 120_000);
afterAll(async () => {
  await stop?.();
  await idp?.close();
});

async function acs(xml: string, relayState: string) {
  const res = await fetch(`${cluster.url(US)}/sso/saml/${cred}/acs`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ SAMLResponse: b64(xml), RelayState: relayState }),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as { meta?: unknown; errors: { message: string }[]; result?: Record<string, unknown>; token?: string } };
}

test('a response is answered 503 with Retry-After while Redis is down, and signs in once after it is back', async () => {
  await redis.kill();
  // Starting a login stores nothing, so it works without Redis.
  const started = await fetch(`${cluster.url(US)}/sso/saml/${cred}/login?relay_state=app`, { redirect: 'manual' });
  expect(started.status).toBe(302);
  const req = requestFromRedirect(started.headers.get('location') ?? '');
  const spec: ResponseSpec = { issuer: ENTITY, audience: req.issuer, acs: req.acs, inResponseTo: req.id, nameId: 'alice@example.com', attributes: { email: ['alice@example.com'] } };
  const xml = signedResponse(spec, A);

  const down = await acs(xml, 'app');
  expect(down.status).toBe(503);
  expect(down.headers.get('retry-after')).toBe('2');
  expect(down.body.meta).toBeDefined();
  expect(down.body.errors[0]?.message).toMatch(/session store cannot be reached/);
  expect(down.body.result).toBeUndefined();
  expect(down.body.token).toBeUndefined();

  await redis.start();
  // The region reconnects; the login was not used up by the refused attempt, and signs in once.
  let first: Awaited<ReturnType<typeof acs>> | undefined;
  expect(await eventually(async () => (first = await acs(xml, 'app')).status !== 503, 30_000, 250)).toBe(true);
  expect(first?.status).toBe(200);
  expect(first?.body.result).toMatchObject({ credential_id: cred, email: 'alice@example.com', relay_state: 'app' });
  expect((await acs(xml, 'app')).status).toBe(401);
}, 90_000);
