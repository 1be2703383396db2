/**
 * SAML single sign-on through real region processes: the test IdP (test/sso/support/idp-simulator.ts) serves
 * its metadata, the credential is created in us-iowa, and logins run mostly in europe-belgium, so every
 * sign-in also uses a credential created in another region.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import jwt from 'jsonwebtoken';
import { verifyAccessToken } from '../../src/infisical/access-tokens';
import { call, createOrg, eventually, slashidHeaders, startCluster, type Cluster } from '../support/harness';
import { PROJECT_ROOT } from '../../src/paths';
import { freePorts, TEST_SIGNING_SECRET } from '../support/env';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import {
  assertionXml,
  b64,
  fieldsOf,
  idpMetadata,
  newId,
  PERSISTENT_FORMAT,
  POST,
  requestFromRedirect,
  responseXml,
  signedResponse,
  signElement,
  signer,
  type ResponseSpec,
} from './support/idp-simulator';
import { createRedis } from '../../src/redis';
import { alreadyUsed, firstUse, RequestCache, RequestIds, ssoKeys } from '../../src/sso/store';
import { REDIS_URL } from '../support/env';

const PATH = '/organizations/sso/saml/provider-credentials';
const US = 'us-iowa';
const EU = 'europe-belgium';
const ENTITY = 'https://idp.simulator.test/saml';
const A = signer('idp-a');
const B = signer('idp-b');
const STRANGER = signer('stranger');

let cluster: Cluster;
let idp: IdpServer;
let org: { id: string; api_key: string };
let cred: string;
/** npm run idp:simulator, for the README's curl sign-in. */
let simulator: ChildProcess;
let simulatorHost: string;

async function createCredential(doc: string, body: Record<string, unknown> = {}): Promise<string> {
  const res = await call(cluster.url(US), 'POST', PATH, {
    body: { idp_metadata_url: idp.url(doc), email_claims: ['email'], ...body },
    headers: slashidHeaders(org, { 'SlashID-Required-Consistency': 'all_regions' }),
  });
  if (res.status !== 201) throw new Error(`create credential: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.result.id as string;
}

async function login(region: string, id: string, relayState?: string) {
  const q = relayState ? `?relay_state=${encodeURIComponent(relayState)}` : '';
  const res = await fetch(`${cluster.url(region)}/sso/saml/${id}/login${q}`, { redirect: 'manual' });
  expect(res.status).toBe(302);
  return requestFromRedirect(res.headers.get('location') ?? '');
}

async function acs(region: string, id: string, xml: string, relayState = 'from-idp') {
  const res = await fetch(`${cluster.url(region)}/sso/saml/${id}/acs`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ SAMLResponse: b64(xml), RelayState: relayState }),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as { errors: { message: string }[]; result?: Record<string, unknown>; token?: string } };
}

/** A login at `region` and a response to it, as the IdP would answer (override any part). */
async function answer(region: string, id: string, spec: Partial<ResponseSpec> = {}): Promise<ResponseSpec> {
  const req = await login(region, id);
  return { issuer: ENTITY, audience: req.issuer, acs: req.acs, inResponseTo: req.id, nameId: 'alice@example.com', attributes: { email: ['alice@example.com'] }, ...spec };
}

async function refusal(region: string, id: string, xml: string, status: number) {
  const res = await acs(region, id, xml);
  expect(res.status).toBe(status);
  expect(res.body.result).toBeUndefined();
  expect(res.body.token).toBeUndefined();
  return res.body.errors[0]?.message ?? '';
}

const NOT_SIGNED = /not signed by the identity provider of this credential/;

beforeAll(async () => {
  idp = await startIdpServer();
  idp.set('idp.xml', idpMetadata({ entityId: ENTITY, ssoUrl: `http://${idp.hostPort}/sso`, certs: [A] }));
  simulatorHost = `127.0.0.1:${(await freePorts(1))[0]}`;
  simulator = spawn(process.execPath, [path.join(PROJECT_ROOT, 'dist', 'scripts', 'idp-simulator.js')], { env: { ...process.env, PORT: simulatorHost.split(':')[1] }, stdio: 'ignore' });
  cluster = await startCluster('sso', [US, EU], { extra: { metadataAllowedHosts: [idp.hostPort, simulatorHost], metadataRefreshIntervalSeconds: 1, samlClockSkewSeconds: 30 }, env: { LOG_LEVEL: 'info' } });
  org = await createOrg(cluster.url(US), 'sso');
  cred = await createCredential('idp.xml');
}, 120_000);
afterAll(async () => {
  simulator?.kill();
  await cluster?.stop();
  await idp?.close();
});

describe('SP metadata and login', () => {
  test('each region serves SP metadata with one entity ID and its own ACS URL as the default', async () => {
    const docs = await Promise.all([US, EU].map(async (r) => (await fetch(`${cluster.url(r)}/sso/saml/${cred}/metadata`)).text()));
    const entity = (xml: string) => /entityID="([^"]+)"/.exec(xml)?.[1];
    expect(entity(docs[0] ?? '')).toBe(`urn:saml-credential-service:sp:${cred}`);
    expect(entity(docs[1] ?? '')).toBe(entity(docs[0] ?? ''));
    const defaultAcs = (xml: string) => /Location="([^"]+)" index="0" isDefault="true"/.exec(xml)?.[1];
    expect(defaultAcs(docs[1] ?? '')).toBe(`${cluster.url(EU)}/sso/saml/${cred}/acs`);
    expect(defaultAcs(docs[0] ?? '')).toBe(`${cluster.url(US)}/sso/saml/${cred}/acs`);
    expect(docs[1]).toContain(`Binding="${POST}"`);
    expect(docs[1]).toContain('nameid-format:emailAddress');
    // It says what is enforced: the assertion need not be signed itself when the Response around it is.
    for (const doc of docs) expect(/<md:SPSSODescriptor [^>]*>/.exec(doc)?.[0]).toContain('AuthnRequestsSigned="false" WantAssertionsSigned="false"');
    const topSigned = await acs(EU, cred, signedResponse(await answer(EU, cred), A, 'response'));
    expect(topSigned.status).toBe(200);
  });

  test('login answers 302 to the IdP with a deflated AuthnRequest for this region and the relay state', async () => {
    const req = await login(EU, cred, '/after-login?x=1');
    expect(req.xml).toContain(`Destination="http://${idp.hostPort}/sso"`);
    expect(req.acs).toBe(`${cluster.url(EU)}/sso/saml/${cred}/acs`);
    expect(req.issuer).toBe(`urn:saml-credential-service:sp:${cred}`);
    expect(req.relayState).toBe('/after-login?x=1');
    // The id carries the login's time and relay state, authenticated (store.ts RequestIds).
    expect(req.id).toMatch(/^_r1[A-Za-z0-9_-]{54}$/);
    // Each login is its own request id and relay state: no cache may keep the redirect for another.
    const res = await fetch(`${cluster.url(EU)}/sso/saml/${cred}/login`, { redirect: 'manual' });
    expect(res.headers.get('cache-control')).toBe('no-store');
  });

  test('an IdP that only takes HTTP-POST gets an auto-submitting form', async () => {
    idp.set('post-only.xml', idpMetadata({ entityId: ENTITY, ssoUrl: `http://${idp.hostPort}/sso-post`, certs: [A], bindings: [POST] }));
    const id = await createCredential('post-only.xml');
    const res = await fetch(`${cluster.url(EU)}/sso/saml/${id}/login?relay_state=r1`, { redirect: 'manual' });
    expect(res.status).toBe(200);
    const html = await res.text();
    expect(html).toContain(`action="http://${idp.hostPort}/sso-post"`);
    expect(html).toMatch(/<script nonce="[^"]+">document\.forms\[0\]\.submit\(\);<\/script>/);
    const encoded = /name="SAMLRequest" value="([^"]+)"/.exec(html)?.[1] ?? '';
    expect(fieldsOf(Buffer.from(encoded, 'base64').toString('utf8')).acs).toBe(`${cluster.url(EU)}/sso/saml/${id}/acs`);
    expect(res.headers.get('content-security-policy')).toContain(`form-action http://${idp.hostPort}`);
    expect(res.headers.get('cache-control')).toBe('no-store');
  });

  test('a plain http sign-on endpoint at a host metadataAllowedHosts does not list is refused at create, passed over beside an https one, and never used at login', async () => {
    // The metadata comes from an allowed host (the test IdP); its sign-on page would be elsewhere, over plain http.
    idp.set('plain-http-sso.xml', idpMetadata({ entityId: ENTITY, ssoUrl: 'http://idp.example.test/sso', certs: [A] }));
    const res = await call(cluster.url(US), 'POST', PATH, { body: { idp_metadata_url: idp.url('plain-http-sso.xml') }, headers: slashidHeaders(org) });
    expect(res.status).toBe(400);
    expect(res.body.errors[0].message).toBe(
      `idp_metadata_url was refused: The IdP "${ENTITY}" offers single sign-on only over plain http (http://idp.example.test/sso): users' browsers would carry their sign-in unencrypted. ` +
        `Publish an https SingleSignOnService in the IdP's metadata; for an IdP inside your network, an operator can allow plain http by adding "idp.example.test:80" to metadataAllowedHosts. ` +
        `(fetched from ${idp.url('plain-http-sso.xml')})`,
    );
    // Beside an https endpoint, the http one (HTTP-Redirect, which would be preferred) is not stored nor used.
    const https = 'https://idp.example.test/sso-post';
    const mixed = idpMetadata({ entityId: ENTITY, ssoUrl: https, certs: [A], bindings: [POST] }).replace(
      '<md:SingleSignOnService ',
      `<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="http://idp.example.test/sso"/><md:SingleSignOnService `,
    );
    idp.set('mixed-sso.xml', mixed);
    const id = await createCredential('mixed-sso.xml');
    const md = await call(cluster.url(US), 'GET', `${PATH}/${id}/metadata`, { headers: slashidHeaders(org) });
    expect(md.body.result.metadata.sso_services).toEqual([{ binding: POST, location: https }]);
    const login = await fetch(`${cluster.url(US)}/sso/saml/${id}/login`, { redirect: 'manual' });
    expect(login.status).toBe(200);
    expect(await login.text()).toContain(`action="${https}"`);
    // Stored before this was checked: the login is refused (409), saying why, not redirected to http.
    const { Client } = await import('pg');
    const db = new Client({ connectionString: cluster.deployment.file.regions.find((r) => r.id === EU)?.databaseUrl });
    await db.connect();
    let answer: { status: number; location: string | null; message?: string } = { status: 0, location: null };
    try {
      // This cluster refreshes metadata every second, which may put the document back between the two steps.
      expect(await eventually(async () => {
        await db.query(`UPDATE saml_credential_metadata SET metadata = jsonb_set(metadata, '{sso_services}', $2::jsonb) WHERE credential_id = $1`, [
          id,
          JSON.stringify([{ binding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect', location: 'http://idp.example.test/sso' }]),
        ]);
        const r = await fetch(`${cluster.url(EU)}/sso/saml/${id}/login`, { redirect: 'manual' });
        answer = { status: r.status, location: r.headers.get('location') };
        if (r.status !== 409) return false;
        answer.message = ((await r.json()) as { errors: { message: string }[] }).errors[0]?.message;
        return true;
      }, 10_000)).toBe(true);
    } finally {
      await db.end();
    }
    expect(answer.message).toMatch(new RegExp(`^Credential ${id} cannot be used to sign in: The IdP "${ENTITY}" offers single sign-on only over plain http \\(http://idp\\.example\\.test/sso\\)`));
  });

  test('a stored sign-on endpoint whose host is not a host name is refused (409), never put into the CSP header', async () => {
    // Stored before the parser skipped such endpoints: the URL parser keeps ';' in a host.
    idp.set('post-only-2.xml', idpMetadata({ entityId: ENTITY, ssoUrl: `http://${idp.hostPort}/sso-post`, certs: [A], bindings: [POST] }));
    const id = await createCredential('post-only-2.xml');
    const { Client } = await import('pg');
    const db = new Client({ connectionString: cluster.deployment.file.regions.find((r) => r.id === EU)?.databaseUrl });
    await db.connect();
    const csp: string[] = [];
    let message = '';
    try {
      // This cluster refreshes metadata every second, which may put the document back between the two steps.
      expect(await eventually(async () => {
        await db.query(
          `UPDATE saml_credential_metadata SET metadata = jsonb_set(metadata, '{sso_services}', $2::jsonb) WHERE credential_id = $1`,
          [id, JSON.stringify([{ binding: POST, location: 'https://idp.example;sandbox;upgrade-insecure-requests/sso' }])],
        );
        const res = await fetch(`${cluster.url(EU)}/sso/saml/${id}/login`, { redirect: 'manual' });
        csp.push(res.headers.get('content-security-policy') ?? '');
        if (res.status !== 409) return false;
        message = ((await res.json()) as { errors: { message: string }[] }).errors[0]?.message ?? '';
        return true;
      }, 10_000)).toBe(true);
    } finally {
      await db.end();
    }
    expect(message).toMatch(/no usable HTTP-Redirect or HTTP-POST sign-on endpoint/);
    expect(csp.filter((h) => h.includes('sandbox'))).toEqual([]);
    // Next to a usable endpoint, such an endpoint is passed over, not the login refused.
    const db2 = new Client({ connectionString: cluster.deployment.file.regions.find((r) => r.id === EU)?.databaseUrl });
    await db2.connect();
    try {
      expect(await eventually(async () => {
        await db2.query(
          `UPDATE saml_credential_metadata SET metadata = jsonb_set(metadata, '{sso_services}', $2::jsonb) WHERE credential_id = $1`,
          [id, JSON.stringify([
            { binding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect', location: 'https://idp.example;sandbox/sso' },
            { binding: POST, location: `http://${idp.hostPort}/sso-post` },
          ])],
        );
        const res = await fetch(`${cluster.url(EU)}/sso/saml/${id}/login`, { redirect: 'manual' });
        return res.status === 200 && (res.headers.get('content-security-policy') ?? '').endsWith(`form-action http://${idp.hostPort}`);
      }, 10_000)).toBe(true);
    } finally {
      await db2.end();
    }
  });

  test('an empty relay_state= is one 400 saying to leave it out (not also that it is not printable ASCII)', async () => {
    const res = await call(cluster.url(EU), 'GET', `/sso/saml/${cred}/login?relay_state=`);
    expect(res.status).toBe(400);
    const messages = (res.body.errors as { message: string }[]).map((e) => e.message);
    expect(messages).toEqual([
      'Invalid query: relay_state: must NOT have fewer than 1 characters; relay_state is optional (leave it out for none) and, when given, 1 to 80 printable ASCII characters.',
    ]);
    expect(messages[0]).not.toMatch(/must be printable ASCII/);
  });

  test('an unknown credential is a 404 in the SlashID envelope', async () => {
    const res = await call(cluster.url(EU), 'GET', '/sso/saml/00000000-0000-7000-8000-000000000000/login');
    expect(res.status).toBe(404);
    expect(res.body.errors[0].message).toMatch(/not found/);
  });
});

describe('signing in', () => {
  test('a signed assertion for a login at one region signs in there, with the email attribute and a token', async () => {
    // The ACS the IdP uses comes from the region's SP metadata.
    const metadata = await (await fetch(`${cluster.url(EU)}/sso/saml/${cred}/metadata`)).text();
    const acsUrl = /Location="([^"]+)" index="0"/.exec(metadata)?.[1] ?? '';
    const req = await login(EU, cred, 'back-to-app');
    const spec: ResponseSpec = { issuer: ENTITY, audience: req.issuer, acs: acsUrl, inResponseTo: req.id, nameId: 'u-123', nameIdFormat: PERSISTENT_FORMAT, attributes: { email: ['alice@example.com'], groups: ['a', 'b'] } };
    // The IdP returns the login's RelayState with its response (SAML bindings).
    const res = await acs(EU, cred, signedResponse(spec, A), 'back-to-app');
    expect(res.status).toBe(200);
    // The answer carries a token: no cache (browser, proxy) may keep it.
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.body).toMatchObject({ meta: {}, errors: [] });
    expect(res.body.result).toEqual({
      org_id: org.id,
      credential_id: cred,
      email: 'alice@example.com',
      name_id: 'u-123',
      session_index: '_session-1',
      attributes: { email: ['alice@example.com'], groups: ['a', 'b'] },
      relay_state: 'back-to-app',
    });
    // An application checks the token with the public key every region publishes (the same key in each).
    const [jwks, other] = await Promise.all([US, EU].map((r) => call(cluster.url(r), 'GET', '/sso/saml/jwks.json')));
    expect(jwks?.status).toBe(200);
    expect(other?.body).toEqual(jwks?.body);
    const [jwk] = jwks?.body.keys as { kid: string }[];
    const claims = jwt.verify(res.body.token ?? '', crypto.createPublicKey({ key: jwk as crypto.JsonWebKey, format: 'jwk' }), { algorithms: ['ES256'], audience: 'saml-sso', issuer: 'saml-credential-service' }) as jwt.JwtPayload;
    expect(claims).toMatchObject({ sub: 'alice@example.com', org_id: org.id, credential_id: cred, name_id: 'u-123' });
    expect((claims.exp ?? 0) - (claims.iat ?? 0)).toBeLessThanOrEqual(300);
    expect(jwt.decode(res.body.token ?? '', { complete: true })?.header.kid).toBe(jwk?.kid);
    // It is not made with the token secret, which the application does not need (it signs access tokens):
    // not an HS256 token of that secret, not an access token of the Infisical API.
    expect(() => jwt.verify(res.body.token ?? '', TEST_SIGNING_SECRET, { algorithms: ['HS256'] })).toThrow();
    expect(() => verifyAccessToken(TEST_SIGNING_SECRET, res.body.token ?? '')).toThrow();
  });

  test('with no email attribute, an email-format NameID is the email (whole response signed)', async () => {
    const spec = await answer(EU, cred, { nameId: 'bob@example.com', attributes: { department: ['x'] } });
    const res = await acs(EU, cred, signedResponse(spec, A, 'response'));
    expect(res.status).toBe(200);
    expect(res.body.result).toMatchObject({ email: 'bob@example.com', name_id: 'bob@example.com' });
  });

  test('a NameID or SessionIndex over 1024 characters is a 422 naming it (both go into the token); 1024 sign in', async () => {
    const long = await answer(EU, cred, { nameId: `${'a'.repeat(1012)}@example.com`, sessionIndex: 's'.repeat(1024) });
    const ok = await acs(EU, cred, signedResponse(long, A));
    expect(ok.status).toBe(200);
    expect(ok.body.result).toMatchObject({ name_id: long.nameId, session_index: long.sessionIndex });
    const longer = await answer(EU, cred, { sessionIndex: 's'.repeat(100_000) });
    expect(await refusal(EU, cred, signedResponse(longer, A), 422)).toBe("Sign-in refused: the assertion's SessionIndex is 100000 characters long; at most 1024 are taken (it goes into the sign-in token). Check what the IdP application sends as its SessionIndex.");
    const nameId = await answer(EU, cred, { nameId: `${'a'.repeat(1013)}@example.com` });
    expect(await refusal(EU, cred, signedResponse(nameId, A), 422)).toMatch(/^Sign-in refused: the assertion's NameID is 1025 characters long; at most 1024/);
  });

  test('no email anywhere is a 422 that says what to send', async () => {
    const spec = await answer(EU, cred, { nameId: 'u-999', nameIdFormat: PERSISTENT_FORMAT, attributes: { mail2: ['x@example.com'] } });
    expect(await refusal(EU, cred, signedResponse(spec, A), 422)).toMatch(/no email address.*email_claims \("email"\)/);
  });
});

describe('refusals', () => {
  test('a signature by a certificate the IdP metadata does not list (and the refusal is logged with its reason)', async () => {
    expect(await refusal(EU, cred, signedResponse(await answer(EU, cred), STRANGER), 401)).toMatch(NOT_SIGNED);
    const logged = () => cluster.logs(EU).some((l) => l.includes('saml sign-in refused') && l.includes(cred) && NOT_SIGNED.test(l));
    expect(await eventually(async () => logged(), 5000)).toBe(true);
  });

  test('an assertion changed after signing', async () => {
    const xml = signedResponse(await answer(EU, cred), A).replace(/alice@example\.com/g, 'mallory@example.com');
    expect(await refusal(EU, cred, xml, 401)).toMatch(NOT_SIGNED);
  });

  test('an unsigned response', async () => {
    const spec = await answer(EU, cred);
    expect(await refusal(EU, cred, responseXml(spec, assertionXml(spec)), 401)).toMatch(NOT_SIGNED);
  });

  test('signature wrapping: the signature moved onto a forged assertion, the signed one hidden in Extensions', async () => {
    const spec = await answer(EU, cred);
    const genuineId = newId('a');
    const signed = signElement(assertionXml(spec, genuineId), genuineId, A);
    const signature = /<Signature[\s\S]*<\/Signature>/.exec(signed)?.[0] ?? '';
    expect(signature).not.toBe('');
    const genuine = signed.replace(signature, '');
    const forged = assertionXml({ ...spec, nameId: 'mallory@example.com', attributes: { email: ['mallory@example.com'] } }).replace(
      `<saml:Issuer>${ENTITY}</saml:Issuer>`,
      `<saml:Issuer>${ENTITY}</saml:Issuer>${signature}`,
    );
    const xml = responseXml(spec, forged).replace('<samlp:Status>', `<samlp:Extensions>${genuine}</samlp:Extensions><samlp:Status>`);
    expect(await refusal(EU, cred, xml, 401)).toMatch(NOT_SIGNED);
  });

  test('signature wrapping: a forged assertion next to the signed one, or one with the same ID around it', async () => {
    const spec = await answer(EU, cred);
    const id = newId('a');
    const signed = signElement(assertionXml(spec, id), id, A);
    const forged = assertionXml({ ...spec, nameId: 'mallory@example.com', attributes: { email: ['mallory@example.com'] } });
    expect(await refusal(EU, cred, responseXml(spec, forged + signed), 401)).toMatch(NOT_SIGNED);
    const sameId = assertionXml({ ...spec, nameId: 'mallory@example.com', attributes: { email: ['mallory@example.com'] } }, id).replace('</saml:Subject>', `</saml:Subject><saml:Advice>${signed}</saml:Advice>`);
    expect(await refusal(EU, cred, responseXml(spec, sameId), 401)).toMatch(NOT_SIGNED);
  });

  test('another issuer, audience or destination, each named with the value to configure', async () => {
    expect(await refusal(EU, cred, signedResponse(await answer(EU, cred, { issuer: 'https://other-idp.test' }), A), 401)).toContain(`this credential's IdP is "${ENTITY}"`);
    expect(await refusal(EU, cred, signedResponse(await answer(EU, cred, { audience: 'https://someone-else' }), A), 401)).toContain(`urn:saml-credential-service:sp:${cred}`);
    const usAcs = `${cluster.url(US)}/sso/saml/${cred}/acs`;
    expect(await refusal(EU, cred, signedResponse(await answer(EU, cred, { acs: usAcs }), A), 401)).toMatch(/addressed to .*not to this region's ACS URL/);
    expect(await refusal(EU, cred, signedResponse(await answer(EU, cred, { recipient: usAcs }), A), 401)).toMatch(/addressed to .*not to this region's ACS URL/);
  });

  test('an audience refusal lists only the audiences of the restriction that leaves this SP out, and the one expected', async () => {
    const sp = `urn:saml-credential-service:sp:${cred}`;
    // Every AudienceRestriction must name the SP (SAML core 2.5.1.4): the second one here does not.
    const spec = await answer(EU, cred, { audienceRestrictions: [[sp], ['https://someone-else', 'https://another']] });
    const message = await refusal(EU, cred, signedResponse(spec, A), 401);
    expect(message).toBe(
      `Sign-in refused: the assertion is meant for audience "https://someone-else", "https://another", not this service provider; ` +
        `its AudienceRestriction must name "${sp}": set the audience (SP entity ID) of the IdP application to it.`,
    );
    // A restriction that names no audience at all is said as such.
    const empty = await answer(EU, cred, { audienceRestrictions: [[sp], ['']] });
    expect(await refusal(EU, cred, signedResponse(empty, A), 401)).toBe(
      `Sign-in refused: the assertion is meant for audience (none), not this service provider; ` +
        `its AudienceRestriction must name "${sp}": set the audience (SP entity ID) of the IdP application to it.`,
    );
  });

  test('an audience that is this SP\'s entity ID with white space around it is refused saying so, not as another audience', async () => {
    const sp = `urn:saml-credential-service:sp:${cred}`;
    // A pretty-printed assertion: compared as sent (as node-saml does), the audience is not the SP's entity ID.
    const spec = await answer(EU, cred, { audienceRestrictions: [[`\n      ${sp}\n    `]] });
    expect(await refusal(EU, cred, signedResponse(spec, A), 401)).toBe(
      `Sign-in refused: the assertion's audience is "${sp}" with white space or line breaks around it, which is not this service provider's entity ID exactly; ` +
        `have the IdP send the audience "${sp}" as it is, without white space around it.`,
    );
  });

  test('an expired assertion and one not valid yet (beyond the configured skew)', async () => {
    const past = new Date(Date.now() - 120_000);
    expect(await refusal(EU, cred, signedResponse(await answer(EU, cred, { notOnOrAfter: past, notBefore: new Date(Date.now() - 600_000) }), A), 401)).toMatch(/expired at/);
    expect(await refusal(EU, cred, signedResponse(await answer(EU, cred, { notBefore: new Date(Date.now() + 120_000) }), A), 401)).toMatch(/not valid before/);
    // Within the 30 s skew: accepted.
    const res = await acs(EU, cred, signedResponse(await answer(EU, cred, { notBefore: new Date(Date.now() + 10_000) }), A));
    expect(res.status).toBe(200);
  });

  test('a replayed assertion is accepted once', async () => {
    const xml = signedResponse(await answer(EU, cred), A);
    expect((await acs(EU, cred, xml)).status).toBe(200);
    expect(await refusal(EU, cred, xml, 401)).toMatch(/already used/);
  });

  test('an InResponseTo this region never issued, or issued by another region', async () => {
    const spec = await answer(EU, cred, { inResponseTo: '_never-issued' });
    expect(await refusal(EU, cred, signedResponse(spec, A), 401)).toMatch(/did not start/);
    const atUs = await login(US, cred);
    const crossRegion = await answer(EU, cred, { inResponseTo: atUs.id });
    expect(await refusal(EU, cred, signedResponse(crossRegion, A), 401)).toMatch(/did not start/);
  });

  test('an IdP-initiated response (no InResponseTo) and an encrypted assertion', async () => {
    expect(await refusal(EU, cred, signedResponse(await answer(EU, cred, { inResponseTo: null }), A), 403)).toMatch(/IdP-initiated/);
    const spec = await answer(EU, cred, { encrypted: true });
    expect(await refusal(EU, cred, responseXml(spec, ''), 400)).toMatch(/encrypted/);
  });

  test('a form without SAMLResponse, and one that is not XML', async () => {
    const res = await fetch(`${cluster.url(EU)}/sso/saml/${cred}/acs`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'RelayState=x' });
    expect(res.status).toBe(400);
    // Every refusal of the ACS starts as documented.
    expect(((await res.json()) as { errors: { message: string }[] }).errors[0]?.message).toMatch(/^Sign-in refused: invalid form: .*SAMLResponse/);
    const json = await fetch(`${cluster.url(EU)}/sso/saml/${cred}/acs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect({ status: json.status, message: ((await json.json()) as { errors: { message: string }[] }).errors[0]?.message }).toEqual({ status: 400, message: expect.stringMatching(/^Sign-in refused: the IdP must post the SAML response as an HTML form/) });
    expect(await refusal(EU, cred, '<!DOCTYPE x [<!ENTITY a "b">]><x/>', 400)).toMatch(/well-formed|DOCTYPE/);
    // A form in another charset is answered as a form, not as a JSON body.
    const utf16 = await fetch(`${cluster.url(EU)}/sso/saml/${cred}/acs`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded; charset=utf-16' }, body: 'SAMLResponse=x' });
    expect(utf16.status).toBe(400);
    expect(((await utf16.json()) as { errors: { message: string }[] }).errors[0]?.message).toMatch(/^Sign-in refused: the form must be sent in UTF-8/);
  });

  test('a form whose charset is any WHATWG label of UTF-8 or ISO-8859-1 (windows-1252), in any case, is read; the refusal of another lists them', async () => {
    const post = (charset: string, body: string) =>
      fetch(`${cluster.url(EU)}/sso/saml/${cred}/acs`, { method: 'POST', headers: { 'content-type': `application/x-www-form-urlencoded; charset=${charset}` }, body });
    const form = async () => new URLSearchParams({ SAMLResponse: b64(signedResponse(await answer(EU, cred), A)) }).toString();
    for (const charset of ['latin1', 'UTF8']) {
      const res = await post(charset, await form());
      expect({ charset, status: res.status }).toEqual({ charset, status: 200 });
    }
    // Each label is read as a form: 'x' is then refused as not base64 (or not XML), not for its charset.
    for (const charset of ['iso-8859-1', 'ISO-8859-1', 'iso_8859-1', 'ISO8859-1', 'l1', 'cp819', 'IBM819', 'us-ascii', 'ascii', 'windows-1252', 'CP1252', '"latin1"', 'unicode-1-1-utf-8', 'utf-8']) {
      const res = await post(charset, 'SAMLResponse=x');
      const message = ((await res.json()) as { errors: { message: string }[] }).errors[0]?.message;
      expect({ charset, status: res.status, message }).toEqual({ charset, status: 400, message: expect.not.stringMatching(/must be sent in/) });
    }
    for (const charset of ['utf-16', 'latin2', 'iso-8859-15', 'koi8-r']) {
      const res = await post(charset, 'SAMLResponse=x');
      const message = ((await res.json()) as { errors: { message: string }[] }).errors[0]?.message;
      expect({ charset, status: res.status, message }).toEqual({ charset, status: 400, message: expect.stringMatching(/^Sign-in refused: the form must be sent in UTF-8 \(charset utf-8, utf8, .*\) or ISO-8859-1 \(charset iso-8859-1, .*latin1, .*us-ascii.*; any case\)/) });
    }
  });
});

describe("node-saml's own words", () => {
  test('are logged with the refusal for the operators, never answered', async () => {
    const spec = await answer(EU, cred);
    const twoAssertions = responseXml(spec, signElement(assertionXml(spec, 'x1'), 'x1', A) + assertionXml(spec));
    const text = await refusal(EU, cred, twoAssertions, 401);
    expect(text).toMatch(NOT_SIGNED);
    expect(text).not.toMatch(/multiple assertions|Invalid signature/);
    const logged = () => cluster.logs(EU).some((l) => l.includes('saml sign-in refused') && l.includes('"libraryReason":"Invalid signature: multiple assertions"'));
    expect(await eventually(async () => logged(), 5000)).toBe(true);
  });
});

describe('the login a response answers', () => {
  test('is not cancelled by a refused response naming it: the genuine answer still signs in, and only once', async () => {
    const spec = await answer(EU, cred);
    expect(await refusal(EU, cred, signedResponse(spec, STRANGER), 401)).toMatch(NOT_SIGNED);
    expect(await refusal(EU, cred, signedResponse({ ...spec, audience: 'https://someone-else' }, A), 401)).toContain(`urn:saml-credential-service:sp:${cred}`);
    expect((await acs(EU, cred, signedResponse(spec, A))).status).toBe(200);
    // Another assertion for the same, now answered, login.
    expect(await refusal(EU, cred, signedResponse(spec, A), 401)).toMatch(/did not start/);
  });

  test('is not stored anywhere as it starts: anyone may start logins, and they cost nothing', async () => {
    const redis = createRedis(REDIS_URL, 'sso-test', { queueWhileOffline: true });
    const prefix = cluster.deployment.file.redisKeyPrefix ?? '';
    const count = async () => {
      let n = 0;
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}sso:*`, 'COUNT', 1000);
        cursor = next;
        n += keys.length;
      } while (cursor !== '0');
      return n;
    };
    try {
      const before = await count();
      for (let i = 0; i < 30; i++) await login(EU, cred, `/page-${i}`);
      // Before 2026-12-04 each login left a record in Redis for 600 s: 30 more here.
      expect(await count()).toBe(before);
      // Answered, it is recorded (once, and only after the IdP's signature was accepted).
      const spec = await answer(EU, cred);
      expect((await acs(EU, cred, signedResponse(spec, A))).status).toBe(200);
      expect(await count()).toBe(before + 2); // the login answered, and the assertion id
    } finally {
      redis.disconnect();
    }
  });

  test('returns the relay state it was started with when the IdP returns it; another one, or none, is null', async () => {
    const req = await login(EU, cred, '/deep/link');
    const spec: ResponseSpec = { issuer: ENTITY, audience: req.issuer, acs: req.acs, inResponseTo: req.id, nameId: 'alice@example.com', attributes: { email: ['alice@example.com'] } };
    const changed = await acs(EU, cred, signedResponse(spec, A), '/somewhere-else');
    expect({ status: changed.status, relay: changed.body.result?.relay_state }).toEqual({ status: 200, relay: null });
    const again = await login(EU, cred, '/deep/link');
    const returned = await acs(EU, cred, signedResponse({ ...spec, inResponseTo: again.id }, A), '/deep/link');
    expect({ status: returned.status, relay: returned.body.result?.relay_state }).toEqual({ status: 200, relay: '/deep/link' });
    const none = await login(EU, cred);
    const dropped = await acs(EU, cred, signedResponse({ ...spec, inResponseTo: none.id }, A), '');
    expect({ status: dropped.status, relay: dropped.body.result?.relay_state }).toEqual({ status: 200, relay: null });
    // Started without one: a RelayState posted with its answer was put there by someone else.
    const bare = await login(EU, cred);
    const injected = await acs(EU, cred, signedResponse({ ...spec, inResponseTo: bare.id }, A), '/injected');
    expect({ status: injected.status, relay: injected.body.result?.relay_state }).toEqual({ status: 200, relay: null });
  });

  test('is this credential\'s, unaltered, and not past its 10 minutes', async () => {
    idp.set('second.xml', idpMetadata({ entityId: ENTITY, ssoUrl: `http://${idp.hostPort}/sso`, certs: [A] }));
    const other = await createCredential('second.xml');
    const theirs = await login(EU, other);
    expect(await refusal(EU, cred, signedResponse(await answer(EU, cred, { inResponseTo: theirs.id }), A), 401)).toMatch(/did not start/);
    const mine = await login(EU, cred);
    const flipped = mine.id.slice(0, 10) + (mine.id[10] === 'A' ? 'B' : 'A') + mine.id.slice(11);
    expect(await refusal(EU, cred, signedResponse(await answer(EU, cred, { inResponseTo: flipped }), A), 401)).toMatch(/did not start/);
    // Issued 11 minutes ago, or 2 minutes from now (more than a clock's minute), with this deployment's key.
    const ids = new RequestIds([TEST_SIGNING_SECRET], EU, cred);
    for (const at of [Date.now() - 11 * 60_000, Date.now() + 2 * 60_000]) {
      expect(await refusal(EU, cred, signedResponse(await answer(EU, cred, { inResponseTo: ids.issue(null, at) }), A), 401)).toMatch(/did not start/);
    }
    const recent = new RequestIds([TEST_SIGNING_SECRET], EU, cred).issue('/r', Date.now() - 9 * 60_000);
    const signedIn = await acs(EU, cred, signedResponse(await answer(EU, cred, { inResponseTo: recent }), A), '/r');
    expect({ status: signedIn.status, relay: signedIn.body.result?.relay_state }).toEqual({ status: 200, relay: '/r' });
  });

  test('is answered once, whatever spelling of its id the response carries; the record lasts past the id', async () => {
    const redis = createRedis(REDIS_URL, 'sso-test', { queueWhileOffline: true });
    try {
      // An id with a character base64url and base64 spell differently ('-' or '_'), to try both spellings.
      let req = await login(EU, cred, '/once');
      for (let i = 0; i < 20 && !/[-_]/.test(req.id); i++) req = await login(EU, cred, '/once');
      const spec = (inResponseTo: string): ResponseSpec => ({ issuer: ENTITY, audience: req.issuer, acs: req.acs, inResponseTo, nameId: 'alice@example.com', attributes: { email: ['alice@example.com'] } });
      expect((await acs(EU, cred, signedResponse(spec(req.id), A), '/once')).status).toBe(200);
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      // The last character's low four bits are not part of the id's 40 bytes: another one decodes the same.
      const last = alphabet[alphabet.indexOf(req.id.slice(-1)) ^ 1] ?? '';
      const spellings = [req.id.slice(0, -1) + last, req.id.replace(/-/g, '+').replace(/_/g, '/')].filter((v) => v !== req.id);
      expect(spellings.length).toBeGreaterThan(0);
      for (const variant of spellings) {
        expect(new RequestIds([TEST_SIGNING_SECRET], EU, cred).read(variant)).toBeNull();
        expect(await refusal(EU, cred, signedResponse(spec(variant), A), 401)).toMatch(/did not start/);
      }
      // Kept for the id's remaining life and as long again (a clock that steps back must not revive it).
      const ttl = await redis.pttl(ssoKeys(cluster.deployment.file.redisKeyPrefix ?? '', EU).answered(cred, req.id));
      expect(ttl).toBeGreaterThan(600_000);
    } finally {
      redis.disconnect();
    }
  });

  test('its id is read under the accepted token secrets, so a rotation of the secret keeps the logins under way', () => {
    const [before, after] = ['a'.repeat(32), 'b'.repeat(32)];
    const id = new RequestIds([before], EU, 'c1').issue('/x');
    expect(new RequestIds([after, before], EU, 'c1').read(id)?.relayState('/x')).toBe('/x');
    expect(new RequestIds([after], EU, 'c1').read(id)).toBeNull();
    // Bound to its region and credential.
    expect(new RequestIds([before], US, 'c1').read(id)).toBeNull();
    expect(new RequestIds([before], EU, 'c2').read(id)).toBeNull();
  });

  test('its own check of the 10 minutes (not only node-saml\'s): an id past them, or from the future, is neither outstanding nor taken', async () => {
    const redis = createRedis(REDIS_URL, 'sso-test', { queueWhileOffline: true });
    const keys = ssoKeys(`sso-live-${Date.now()}:`, EU);
    const ids = new RequestIds([TEST_SIGNING_SECRET], EU, 'c1');
    const cache = new RequestCache(redis, keys, 'c1', ids);
    try {
      for (const at of [Date.now() - 11 * 60_000, Date.now() + 2 * 60_000]) {
        const id = ids.issue('/x', at);
        expect(await cache.getAsync(id)).toBeNull();
        expect(await cache.take(id, '/x')).toBeNull();
        expect(await redis.exists(keys.answered('c1', id))).toBe(0);
      }
      const recent = ids.issue('/x', Date.now() - 9 * 60_000);
      expect(await cache.getAsync(recent)).not.toBeNull();
      expect(await cache.take(recent, '/x')).toEqual({ relayState: '/x' });
      expect(await cache.take(recent, '/x')).toBeNull();
      await redis.del(keys.answered('c1', recent));
    } finally {
      redis.disconnect();
    }
  });

  test('is never a record in Redis: one planted under a login id (corrupt, or as versions before 2026-12-04 wrote them) is no login, a 401, and the login in flight still signs in', async () => {
    const redis = createRedis(REDIS_URL, 'sso-test', { queueWhileOffline: true });
    // The key under which versions before 2026-12-04 stored a login as it started.
    const requestKey = (id: string) => `${cluster.deployment.file.redisKeyPrefix ?? ''}sso:${EU}:request:${cred}:${id}`;
    const inFlight = await login(EU, cred, '/mine');
    const planted: Record<string, string> = {
      'not JSON': '{not json',
      'JSON null': 'null',
      'wrong types': JSON.stringify({ created_at: 5, relay_state: '/evil' }),
      'wrong relay state': JSON.stringify({ created_at: new Date().toISOString(), relay_state: { to: '/evil' } }),
      // Read as a login, it would pass by allow_idp_initiated (off) and the 24 h bound, and set the relay state.
      'well-formed': JSON.stringify({ created_at: new Date().toISOString(), relay_state: '/evil' }),
    };
    const written: string[] = [];
    try {
      const answers: Record<string, unknown> = {};
      for (const [what, value] of Object.entries(planted)) {
        const id = `_${crypto.randomBytes(20).toString('hex')}`;
        for (const target of [id, inFlight.id]) {
          written.push(requestKey(target));
          await redis.set(requestKey(target), value, 'EX', 600);
        }
        const spec = await answer(EU, cred, { inResponseTo: id, notOnOrAfter: new Date(Date.now() + 3 * 24 * 3600_000) });
        // Signed by the IdP, and by a key it does not list (the login is looked up before node-saml runs).
        for (const [by, key] of [['IdP', A], ['stranger', STRANGER]] as const) {
          const res = await acs(EU, cred, signedResponse({ ...spec, assertionId: newId('a') }, key), '/posted');
          answers[`${what}, signed by ${by}`] = { status: res.status, message: res.body.errors?.[0]?.message, result: res.body.result, token: res.body.token };
        }
      }
      const refusedAsNotStarted = { status: 401, message: expect.stringMatching(/did not start/), result: undefined, token: undefined };
      expect(answers).toEqual(Object.fromEntries(Object.keys(answers).map((what) => [what, refusedAsNotStarted])));
      const mine = await acs(EU, cred, signedResponse(await answer(EU, cred, { inResponseTo: inFlight.id }), A), '/mine');
      expect({ status: mine.status, relay: mine.body.result?.relay_state }).toEqual({ status: 200, relay: '/mine' });
    } finally {
      if (written.length > 0) await redis.del(...written);
      redis.disconnect();
    }
  });

  test('may be answered by an assertion usable for days: the 24 h bound is for IdP-initiated responses, which no login vouches for', async () => {
    const xml = signedResponse(await answer(EU, cred, { notOnOrAfter: new Date(Date.now() + 3 * 24 * 3600_000) }), A);
    const res = await acs(EU, cred, xml);
    expect([res.status, res.body.result?.email]).toEqual([200, 'alice@example.com']);
  });

  test('answered by two responses at once: one signs in', async () => {
    const spec = await answer(EU, cred);
    const results = await Promise.all([signedResponse(spec, A), signedResponse(spec, A)].map((xml) => acs(EU, cred, xml)));
    expect(results.map((r) => r.status).sort()).toEqual([200, 401]);
  });
});

describe('IdP-initiated sign-in', () => {
  const settings = (id: string) => `${PATH}/${id}/sso-settings`;

  test('is off by default, and only the organization can turn it on (in every region)', async () => {
    const read = await call(cluster.url(EU), 'GET', settings(cred), { headers: slashidHeaders(org) });
    expect(read.status).toBe(200);
    expect(read.body.result).toEqual({ credential_id: cred, allow_idp_initiated: false });
    const anonymous = await call(cluster.url(US), 'PATCH', settings(cred), { body: { allow_idp_initiated: true } });
    expect(anonymous.status).toBe(401);
    const other = await createOrg(cluster.url(US), 'other');
    const foreign = await call(cluster.url(US), 'PATCH', settings(cred), { body: { allow_idp_initiated: true }, headers: slashidHeaders(other) });
    expect(foreign.status).toBe(404);
    // The credential routes' 404, which names the case of a credential created elsewhere and not arrived yet.
    expect(foreign.body.errors[0].message).toMatch(/not found in this region: not one of this organization's, deleted, or created in another region/);
    const unread = await call(cluster.url(US), 'GET', settings(cred), { headers: slashidHeaders(other) });
    expect({ status: unread.status, message: unread.body.errors[0].message }).toEqual({ status: 404, message: foreign.body.errors[0].message });
    for (const [body, message] of [
      [{ allow_idp_initiated: 'yes' }, 'Invalid request body: allow_idp_initiated: must be boolean.'],
      [{}, 'Invalid request body: names none of its fields; send at least one of: allow_idp_initiated.'],
    ] as const) {
      const bad = await call(cluster.url(US), 'PATCH', settings(cred), { body, headers: slashidHeaders(org) });
      expect({ status: bad.status, message: bad.body.errors[0].message }).toEqual({ status: 400, message });
    }
  });

  test('once enabled, a response answering no request signs in, once; the IdP\'s RelayState is returned', async () => {
    idp.set('idp-initiated.xml', idpMetadata({ entityId: ENTITY, ssoUrl: `http://${idp.hostPort}/sso`, certs: [A] }));
    const id = await createCredential('idp-initiated.xml');
    const spec = await answer(EU, id, { inResponseTo: null });
    expect(await refusal(EU, id, signedResponse(spec, A), 403)).toMatch(/IdP-initiated/);
    const patched = await call(cluster.url(US), 'PATCH', settings(id), {
      body: { allow_idp_initiated: true },
      headers: slashidHeaders(org, { 'SlashID-Required-Consistency': 'all_regions' }),
    });
    expect(patched.status).toBe(200);
    expect(patched.body.result).toEqual({ credential_id: id, allow_idp_initiated: true });
    const xml = signedResponse(spec, A);
    const first = await acs(EU, id, xml);
    expect(first.status).toBe(200);
    expect(first.body.result).toMatchObject({ email: 'alice@example.com', relay_state: 'from-idp' });
    expect(await refusal(EU, id, xml, 401)).toMatch(/already used/);
    // The IdP's RelayState goes to the application, which redirects with it: printable ASCII only, and an
    // empty one is none. A refused one leaves the assertion unused.
    const next = signedResponse(await answer(EU, id, { inResponseTo: null }), A);
    for (const bad of ['/home\r\nSet-Cookie: a=b', '/home\u0000', '/caf\u00e9', '/\u202egnp.exe', 'x'.repeat(1025)]) {
      const res = await acs(EU, id, next, bad);
      expect({ bad, status: res.status, message: res.body.errors[0]?.message }).toEqual({ bad, status: 400, message: expect.stringMatching(/RelayState: printable ASCII, at most 1024 characters/) });
    }
    const empty = await acs(EU, id, next, '');
    expect(empty.status).toBe(200);
    expect(empty.body.result?.relay_state).toBeNull();
    // One usable for longer than its id is remembered (24 h) could be replayed after that: refused.
    const longLived = await answer(EU, id, { inResponseTo: null, notOnOrAfter: new Date(Date.now() + 3 * 24 * 3600_000) });
    expect(await refusal(EU, id, signedResponse(longLived, A), 401)).toMatch(/more than 24 h from now/);
    // Turned off again (the settings row stays, saying false): refused again, in every region.
    const off = await call(cluster.url(US), 'PATCH', settings(id), {
      body: { allow_idp_initiated: false },
      headers: slashidHeaders(org, { 'SlashID-Required-Consistency': 'all_regions' }),
    });
    expect(off.body.result).toEqual({ credential_id: id, allow_idp_initiated: false });
    for (const r of [EU, US]) expect(await refusal(r, id, signedResponse(await answer(r, id, { inResponseTo: null }), A), 403)).toMatch(/IdP-initiated/);
  });

  test('one IdP-initiated assertion posted several times at once signs in once; its id is remembered as long as it is usable', async () => {
    idp.set('idp-initiated-race.xml', idpMetadata({ entityId: ENTITY, ssoUrl: `http://${idp.hostPort}/sso`, certs: [A] }));
    const id = await createCredential('idp-initiated-race.xml');
    const on = await call(cluster.url(US), 'PATCH', settings(id), { body: { allow_idp_initiated: true }, headers: slashidHeaders(org, { 'SlashID-Required-Consistency': 'all_regions' }) });
    expect(on.status).toBe(200);
    const assertionId = newId('race');
    const until = Date.now() + 5 * 60_000;
    const xml = signedResponse(await answer(EU, id, { inResponseTo: null, assertionId, notOnOrAfter: new Date(until) }), A);
    // No login to take: the assertion id's first use (SET NX) is all that decides among them.
    const answers = await Promise.all(Array.from({ length: 4 }, () => acs(EU, id, xml)));
    expect(answers.map((a) => a.status).sort()).toEqual([200, 401, 401, 401]);
    const redis = createRedis(REDIS_URL, 'sso-test', { queueWhileOffline: true });
    try {
      // Until NotOnOrAfter plus the 30 s of skew it is accepted within (ms, not s).
      const ttl = await redis.pttl(ssoKeys(cluster.deployment.file.redisKeyPrefix ?? '', EU).assertion(id, ENTITY, assertionId));
      expect(ttl).toBeGreaterThan(until + 30_000 - Date.now() - 10_000);
      expect(ttl).toBeLessThanOrEqual(until + 30_000 - Date.now() + 1000);
    } finally {
      redis.disconnect();
    }
  });

  test("a deleted credential's SSO settings cannot be changed: 404, as for any unknown credential", async () => {
    idp.set('deleted-settings.xml', idpMetadata({ entityId: ENTITY, ssoUrl: `http://${idp.hostPort}/sso`, certs: [A] }));
    const id = await createCredential('deleted-settings.xml');
    expect((await call(cluster.url(US), 'DELETE', `${PATH}/${id}`, { headers: slashidHeaders(org) })).status).toBe(204);
    const res = await call(cluster.url(US), 'PATCH', settings(id), { body: { allow_idp_initiated: true }, headers: slashidHeaders(org) });
    expect({ status: res.status, result: res.body.result }).toEqual({ status: 404, result: undefined });
  });

  test('a deleted credential\'s login and SP metadata answer 404 saying it was deleted (not that it may not have arrived yet)', async () => {
    idp.set('deleted-login.xml', idpMetadata({ entityId: ENTITY, ssoUrl: `http://${idp.hostPort}/sso`, certs: [A] }));
    const id = await createCredential('deleted-login.xml');
    expect((await call(cluster.url(US), 'DELETE', `${PATH}/${id}`, { headers: slashidHeaders(org) })).status).toBe(204);
    for (const path of [`/sso/saml/${id}/login`, `/sso/saml/${id}/metadata`]) {
      const res = await fetch(`${cluster.url(US)}${path}`, { redirect: 'manual' });
      expect({ path, status: res.status, body: await res.json() }).toEqual({ path, status: 404, body: { meta: {}, errors: [{ httpcode: 404, message: `SAML provider credentials ${id} was deleted.` }] } });
    }
  });

  test("another organization cannot read a credential's SSO settings", async () => {
    // Created with all_regions, so that its key authenticates in both regions at once.
    const other = await createOrg(cluster.url(US), 'settings reader', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });
    for (const r of [US, EU]) {
      const res = await call(cluster.url(r), 'GET', settings(cred), { headers: slashidHeaders(other) });
      expect({ r, status: res.status, result: res.body.result }).toEqual({ r, status: 404, result: undefined });
    }
  });
});

describe('size', () => {
  test('a form over 512 KB is refused 413, as documented', async () => {
    const res = await fetch(`${cluster.url(US)}/sso/saml/${cred}/acs`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ SAMLResponse: 'A'.repeat(600 * 1024) }),
    });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { errors: { httpcode: number; message: string }[] }).errors[0]).toEqual({ httpcode: 413, message: expect.stringMatching(/over 512 KB/) });
  });
});

describe('the replay cache', () => {
  test('is per credential: another organization\'s IdP claiming the same entity ID cannot use up this IdP\'s assertion ids', async () => {
    const mallory = await createOrg(cluster.url(US), 'mallory');
    idp.set('claims-entity.xml', idpMetadata({ entityId: ENTITY, ssoUrl: `http://${idp.hostPort}/sso`, certs: [STRANGER] }));
    const theirs = await call(cluster.url(US), 'POST', PATH, { body: { idp_metadata_url: idp.url('claims-entity.xml'), email_claims: ['email'] }, headers: slashidHeaders(mallory) });
    expect(theirs.status).toBe(201);
    const malloryCred = theirs.body.result.id as string;
    const on = await call(cluster.url(US), 'PATCH', `${PATH}/${malloryCred}/sso-settings`, { body: { allow_idp_initiated: true }, headers: slashidHeaders(mallory) });
    expect(on.status).toBe(200);
    // Mallory signs in to her own credential with the id the victim's IdP will use next (a guessable id scheme).
    const next = newId('a');
    const hers = await answer(US, malloryCred, { inResponseTo: null, assertionId: next, nameId: 'mallory@example.com', attributes: { email: ['mallory@example.com'] } });
    expect((await acs(US, malloryCred, signedResponse(hers, STRANGER))).status).toBe(200);
    // The victim's own sign-in with that id still works, once.
    const victim = signedResponse(await answer(US, cred, { assertionId: next }), A);
    const signedIn = await acs(US, cred, victim);
    expect({ status: signedIn.status, message: signedIn.body.errors[0]?.message }).toEqual({ status: 200, message: undefined });
    expect(await refusal(US, cred, signedResponse(await answer(US, cred, { assertionId: next }), A), 401)).toMatch(/already used/);
  });

  test('an assertion id remembered under the key of versions before 2026-12-02 (issuer and id only) is still refused', async () => {
    const redis = createRedis(REDIS_URL, 'sso-test', { queueWhileOffline: true });
    const keys = ssoKeys(`sso-legacy-${process.pid}:`, US);
    try {
      await redis.set(keys.legacyAssertion(ENTITY, '_old'), '1', 'PX', 60_000);
      expect(await alreadyUsed(redis, keys, cred, ENTITY, '_old')).toBe(true);
      expect(await alreadyUsed(redis, keys, cred, ENTITY, '_new')).toBe(false);
      expect(await firstUse(redis, keys, cred, ENTITY, '_new', 60_000)).toBe(true);
      expect(await alreadyUsed(redis, keys, cred, ENTITY, '_new')).toBe(true);
    } finally {
      await redis.del(keys.legacyAssertion(ENTITY, '_old'), keys.assertion(cred, ENTITY, '_new'));
      redis.disconnect();
    }
  });
});

describe('certificate rotation', () => {
  test('both listed certificates work; once a refresh removes the old one, it is refused', async () => {
    idp.set('rotating.xml', idpMetadata({ entityId: ENTITY, ssoUrl: `http://${idp.hostPort}/sso`, certs: [A, B] }));
    const id = await createCredential('rotating.xml');
    for (const by of [A, B]) expect((await acs(EU, id, signedResponse(await answer(EU, id), by))).status).toBe(200);

    idp.set('rotating.xml', idpMetadata({ entityId: ENTITY, ssoUrl: `http://${idp.hostPort}/sso`, certs: [B] }));
    const refreshed = await eventually(async () => {
      const md = await call(cluster.url(EU), 'GET', `${PATH}/${id}/metadata`, { headers: slashidHeaders(org) });
      return md.body.result.metadata.signing_certificates.length === 1;
    }, 30_000, 250);
    expect(refreshed).toBe(true);
    expect(await refusal(EU, id, signedResponse(await answer(EU, id), A), 401)).toMatch(NOT_SIGNED);
    expect((await acs(EU, id, signedResponse(await answer(EU, id), B))).status).toBe(200);
  });
});

describe('README', () => {
  test("the curl sign-in with the IdP simulator runs as written and prints what it says", async () => {
    const readme = fs.readFileSync(path.join(PROJECT_ROOT, 'README.md'), 'utf8');
    const block = /```sh\n(SIM=\$\{SIM:-[\s\S]*?)```/.exec(readme)?.[1] ?? '';
    expect(block).toContain('/acs');
    const prelude = `H=(-H "SlashID-OrgID: ${org.id}" -H "SlashID-API-Key: ${org.api_key}")\nset -e\n`;
    const { stdout } = await promisify(execFile)('bash', ['-c', prelude + block], {
      env: { ...process.env, US: cluster.url(US), EU: cluster.url(EU), SIM: `http://${simulatorHost}` },
      timeout: 30_000,
    });
    const expected = block.split('\n').filter((l) => l.startsWith('# ') && !l.startsWith('# Start') && !l.startsWith('# The same')).map((l) => l.slice(2));
    const lines = stdout.trim().split('\n');
    expect(lines).toHaveLength(expected.length);
    expected.forEach((want, i) => {
      const pattern = want.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace('…', '[^"]+').replace('http://127\\.0\\.0\\.1:8082', cluster.url(EU).replace(/\./g, '\\.'));
      expect(lines[i]).toMatch(new RegExp(`^${pattern}$`));
    });
  });
});
