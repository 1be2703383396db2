/**
 * What an IdP or a browser may post to the ACS beyond the README's example: a form the parser refuses is
 * answered as every ACS refusal is ("Sign-in refused: …", in the SlashID envelope), a response written
 * in ISO-8859-1 (as its XML declaration says) is read as such, and one that is not SAML 2.0 is refused.
 */
import zlib from 'node:zlib';
import { startCluster, type Cluster } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { assertionXml, idpMetadata, newId, requestFromRedirect, responseXml, signedResponse, signElement, signer, type ResponseSpec } from './support/idp-simulator';
import { ssoCredential } from './support/credential';

const US = 'us-iowa';
const ENTITY = 'https://idp.simulator.test/saml';
const A = signer('idp-a');
let cluster: Cluster;
let idp: IdpServer;
let cred: string;

beforeAll(async () => {
  idp = await startIdpServer();
  idp.set('idp.xml', idpMetadata({ entityId: ENTITY, ssoUrl: `http://${idp.hostPort}/sso`, certs: [A] }));
  cluster = await startCluster('sso-acs-form', [US], { extra: { metadataAllowedHosts: [idp.hostPort] } });
  cred = await ssoCredential(cluster.url(US), 'sso acs form', idp.url('idp.xml'));
}, 120_000);
afterAll(async () => {
  await cluster?.stop();
  await idp?.close();
});

async function post(body: string | Buffer, headers: Record<string, string> = {}) {
  const res = await fetch(`${cluster.url(US)}/sso/saml/${cred}/acs`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body,
  });
  return { status: res.status, body: (await res.json()) as { meta?: unknown; errors: { httpcode: number; message: string }[]; result?: Record<string, unknown> } };
}

async function answer(over: Partial<ResponseSpec> = {}): Promise<ResponseSpec> {
  const res = await fetch(`${cluster.url(US)}/sso/saml/${cred}/login`, { redirect: 'manual' });
  expect(res.status).toBe(302);
  const req = requestFromRedirect(res.headers.get('location') ?? '');
  return { issuer: ENTITY, audience: req.issuer, acs: req.acs, inResponseTo: req.id, nameId: 'alice@example.com', attributes: { email: ['alice@example.com'] }, ...over };
}

describe('a form the parser refuses is a sign-in refusal, as documented', () => {
  test('more than 20 fields', async () => {
    const fields = new URLSearchParams({ SAMLResponse: 'PHg+' });
    for (let i = 0; i < 25; i++) fields.set(`f${i}`, '1');
    const res = await post(fields.toString());
    expect(res.status).toBe(400);
    expect(res.body.meta).toEqual({});
    expect(res.body.errors[0]?.message).toMatch(/^Sign-in refused: the form has more than 20 fields/);
  });

  test('a body that is not compressed as its Content-Encoding says, and an encoding not read', async () => {
    const corrupt = await post(Buffer.from('SAMLResponse=PHg%2B'), { 'content-encoding': 'gzip' });
    expect(corrupt.status).toBe(400);
    expect(corrupt.body.errors[0]?.message).toMatch(/^Sign-in refused: the posted form could not be read/);
    const unknown = await post(Buffer.from('SAMLResponse=PHg%2B'), { 'content-encoding': 'zstd' });
    expect(unknown.status).toBe(400);
    expect(unknown.body.errors[0]?.message).toMatch(/^Sign-in refused: the form's Content-Encoding is not one this service reads/);
  });

  test('a gzip-compressed form is read', async () => {
    const xml = signedResponse(await answer(), A);
    const body = zlib.gzipSync(new URLSearchParams({ SAMLResponse: Buffer.from(xml).toString('base64') }).toString());
    const res = await post(body, { 'content-encoding': 'gzip' });
    expect(res.status).toBe(200);
    expect(res.body.result).toMatchObject({ email: 'alice@example.com' });
  });
});

describe('the XML encoding', () => {
  test('a response declared and written in ISO-8859-1, with an accented name, signs in', async () => {
    const xml = '<?xml version="1.0" encoding="ISO-8859-1"?>' + signedResponse(await answer({ attributes: { email: ['alice@example.com'], name: ['Zoë Müller'] } }), A);
    const res = await post(new URLSearchParams({ SAMLResponse: Buffer.from(xml, 'latin1').toString('base64') }).toString());
    expect(res.status).toBe(200);
    expect(res.body.result).toMatchObject({ email: 'alice@example.com', attributes: { name: ['Zoë Müller'] } });
  });

  test('a UTF-8 response with an accented name signs in, with or without a byte order mark', async () => {
    for (const bom of ['', '\ufeff']) {
      const xml = `${bom}<?xml version="1.0" encoding="UTF-8"?>` + signedResponse(await answer({ attributes: { email: ['alice@example.com'], name: ['Zoë Müller'] } }), A);
      const res = await post(new URLSearchParams({ SAMLResponse: Buffer.from(xml, 'utf8').toString('base64') }).toString());
      expect({ bom, status: res.status, name: res.body.result?.attributes }).toEqual({ bom, status: 200, name: { email: ['alice@example.com'], name: ['Zoë Müller'] } });
    }
  });
});

describe('the SAML Version', () => {
  const form = (xml: string) => new URLSearchParams({ SAMLResponse: Buffer.from(xml, 'utf8').toString('base64') }).toString();
  /** The answer to `spec` with its Response's (signed whole) or its assertion's (signed alone) Version edited. */
  const withVersion = (spec: ResponseSpec, on: 'Response' | 'assertion', version: string | null) => {
    const set = (xml: string) => xml.replace(/ Version="2\.0"/, version === null ? '' : ` Version="${version}"`);
    const [assertionId, responseId] = [newId('a'), newId('r')];
    const s = { ...spec, assertionId, responseId };
    if (on === 'Response') return signElement(set(responseXml(s, assertionXml(s, assertionId))), responseId, A);
    return responseXml(s, signElement(set(assertionXml(s, assertionId)), assertionId, A));
  };

  test.each([
    ['a Response of Version="1.1"', 'Response', '1.1', /^Sign-in refused: the Response has Version="1\.1", not Version="2\.0"/],
    ['a Response without Version', 'Response', null, /^Sign-in refused: the Response has no Version attribute, not Version="2\.0"/],
    ['an assertion of Version="1.1"', 'assertion', '1.1', /^Sign-in refused: the assertion has Version="1\.1", not Version="2\.0"/],
    ['an assertion without Version', 'assertion', null, /^Sign-in refused: the assertion has no Version attribute, not Version="2\.0"/],
  ] as const)('%s is refused 401, naming it; the login is not used up', async (_name, on, version, message) => {
    const spec = await answer();
    const res = await post(form(withVersion(spec, on, version)));
    expect({ status: res.status, message: res.body.errors[0]?.message, result: res.body.result }).toEqual({ status: 401, message: expect.stringMatching(message), result: undefined });
    expect(res.body.errors[0]?.message).toContain('set the IdP application to SAML 2.0');
    // The same login's SAML 2.0 answer still signs in.
    const genuine = await post(form(signedResponse(spec, A)));
    expect(genuine.status).toBe(200);
  });

  test.each([
    ['a Response', 'Response', ' 2.0', ' 2.0'],
    ['an assertion', 'assertion', '2.0&#9;', '2.0\\u0009'],
  ] as const)('%s whose Version is "2.0" with white space around it is refused, saying so (not that it is not "2.0")', async (_name, on, version, shown) => {
    const spec = await answer();
    const res = await post(form(withVersion(spec, on, version)));
    expect({ status: res.status, message: res.body.errors[0]?.message }).toEqual({
      status: 401,
      message: `Sign-in refused: the ${on} has Version="${shown}": "2.0" with white space around it, which is not Version="2.0" exactly; have the IdP send Version="2.0" without white space.`,
    });
    expect((await post(form(signedResponse(spec, A)))).status).toBe(200);
  });
});
