/**
 * Hostile SAML responses posted to a region's ACS (one region in the test process: real HTTP, Postgres and
 * Redis), each built from a response the IdP's key validly signed: the signature-wrapping variants XSW1–XSW8
 * and IDs that appear twice or under other attribute names, comments, processing instructions, CDATA and
 * XInclude inside signed text, DOCTYPEs, the algorithms and transforms a signature may name, a certificate
 * the message brings or the metadata lists as expired, and a response for one credential posted to another's
 * ACS. Each refusal is a 4xx "Sign-in refused: …" in the SlashID envelope with no token; where the
 * attack names a login, the genuine response still signs in afterwards (the refused one recorded nothing).
 * What sso.test.ts and response.test.ts already cover is not repeated here.
 */
import { SignedXml } from 'xml-crypto';
import { call, createOrg, slashidHeaders } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { assertionXml, b64, expiredSigner, idpMetadata, newId, PERSISTENT_FORMAT, requestFromRedirect, responseXml, signedResponse, signElement, signer, type ResponseSpec, type Signer } from './support/idp-simulator';

const PATH = '/organizations/sso/saml/provider-credentials';
const ENTITY = 'https://idp.attacks.test/saml';
const A = signer('idp-a');
const STRANGER = signer('stranger');
const RSA_SHA256 = 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256';
const SHA256 = 'http://www.w3.org/2001/04/xmlenc#sha256';
const ENVELOPED = 'http://www.w3.org/2000/09/xmldsig#enveloped-signature';
const EXC_C14N = 'http://www.w3.org/2001/10/xml-exc-c14n#';
const NOT_SIGNED = /^Sign-in refused: the SAML response is not signed by the identity provider of this credential/;
const MALLORY = { nameId: 'mallory@example.com', attributes: { email: ['mallory@example.com'] } };

let r: InProcessRegion;
let idp: IdpServer;
/** A credential of the IdP (key A); a second one of another organization with the same IdP metadata. */
let cred: string;
let other: string;
/** A credential whose IdP metadata lists A and a certificate that expired in 2020 (key `expired`). */
let withExpired: string;
let expired: Signer;

async function credentialOf(orgName: string, doc: string): Promise<{ id: string; org: { id: string; api_key: string } }> {
  const org = await createOrg(r.url, orgName);
  const res = await call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url(doc), email_claims: ['email'] }, headers: slashidHeaders(org) });
  if (res.status !== 201) throw new Error(`create credential: ${res.status} ${JSON.stringify(res.body)}`);
  return { id: res.body.result.id as string, org };
}

beforeAll(async () => {
  expired = expiredSigner();
  idp = await startIdpServer();
  idp.set('idp.xml', idpMetadata({ entityId: ENTITY, ssoUrl: `http://${idp.hostPort}/sso`, certs: [A] }));
  idp.set('with-expired.xml', idpMetadata({ entityId: ENTITY, ssoUrl: `http://${idp.hostPort}/sso`, certs: [A, expired] }));
  r = await startInProcess('sso-acs-attacks', ['us-iowa', 'europe-belgium'], { metadataAllowedHosts: [idp.hostPort], samlClockSkewSeconds: 30 });
  cred = (await credentialOf('victim', 'idp.xml')).id;
  const second = await credentialOf('neighbour', 'idp.xml');
  other = second.id;
  const on = await call(r.url, 'PATCH', `${PATH}/${other}/sso-settings`, { body: { allow_idp_initiated: true }, headers: slashidHeaders(second.org) });
  expect(on.status).toBe(200);
  withExpired = (await credentialOf('rotating', 'with-expired.xml')).id;
}, 120_000);
afterAll(async () => {
  await r?.stop();
  await idp?.close();
});

interface Answer {
  status: number;
  body: { errors: { httpcode: number; message: string }[]; result?: Record<string, unknown>; token?: string };
}

async function post(id: string, xml: string): Promise<Answer> {
  const res = await fetch(`${r.url}/sso/saml/${id}/acs`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ SAMLResponse: b64(xml) }),
  });
  return { status: res.status, body: (await res.json()) as Answer['body'] };
}

/** A login of credential `id` and the IdP's answer to it for alice (override any part). */
async function answer(id: string, over: Partial<ResponseSpec> = {}): Promise<ResponseSpec> {
  const res = await fetch(`${r.url}/sso/saml/${id}/login`, { redirect: 'manual' });
  expect(res.status).toBe(302);
  const req = requestFromRedirect(res.headers.get('location') ?? '');
  return { issuer: ENTITY, audience: req.issuer, acs: req.acs, inResponseTo: req.id, nameId: 'alice@example.com', attributes: { email: ['alice@example.com'] }, ...over };
}

/** Posts `xml`, expects the ACS's refusal (4xx, the SlashID envelope, no result, no token); its message. */
async function refusal(id: string, xml: string, status = 401): Promise<string> {
  const res = await post(id, xml);
  expect({ status: res.status, result: res.body.result, token: res.body.token, httpcode: res.body.errors[0]?.httpcode }).toEqual({ status, result: undefined, token: undefined, httpcode: status });
  const message = res.body.errors[0]?.message ?? '';
  expect(message).toMatch(/^Sign-in refused: /);
  return message;
}

async function signsIn(id: string, xml: string): Promise<Record<string, unknown>> {
  const res = await post(id, xml);
  expect({ status: res.status, errors: res.body.errors }).toEqual({ status: 200, errors: [] });
  expect(typeof res.body.token).toBe('string');
  return res.body.result ?? {};
}

/** Signs in with `xml` and returns the sign-in token's claims. */
async function tokenClaims(id: string, xml: string): Promise<{ iat: number; exp: number }> {
  const res = await post(id, xml);
  expect({ status: res.status, errors: res.body.errors }).toEqual({ status: 200, errors: [] });
  const payload = (res.body.token ?? '').split('.')[1] ?? '';
  return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { iat: number; exp: number };
}

const SIGNATURE = /<Signature[\s\S]*<\/Signature>/;
const signatureOf = (xml: string) => SIGNATURE.exec(xml)?.[0] ?? '';

/** What a wrapping attack is made of: alice's assertion signed by the IdP, its signature, and mallory's. */
function assertionParts(s: ResponseSpec) {
  const id = newId('a');
  const signed = signElement(assertionXml(s, id), id, A);
  const signature = signatureOf(signed);
  expect(signature).not.toBe('');
  return {
    id,
    signed,
    signature,
    /** The signed assertion without its signature: what the digest covers. */
    unsigned: signed.replace(signature, ''),
    evil: (evilId = newId('a')) => assertionXml({ ...s, ...MALLORY }, evilId),
    /** `assertion` with `signature` right after its Issuer, where the IdP put it. */
    withSignature: (assertion: string, sig = signature) => assertion.replace(`<saml:Issuer>${s.issuer}</saml:Issuer>`, `<saml:Issuer>${s.issuer}</saml:Issuer>${sig}`),
  };
}

/** Alice's assertion `id` signed by `by` with the given algorithms and transforms (xml-crypto, as an IdP). */
function signWith(s: ResponseSpec, o: { by?: Signer; signatureAlgorithm?: string; canonicalization?: string; transforms?: string[]; extraTransform?: [string, unknown] }): string {
  const id = newId('a');
  const by = o.by ?? A;
  const sig = new SignedXml({ privateKey: by.key, publicCert: by.cert, signatureAlgorithm: o.signatureAlgorithm ?? RSA_SHA256, canonicalizationAlgorithm: o.canonicalization ?? EXC_C14N });
  if (o.extraTransform) (sig.CanonicalizationAlgorithms as Record<string, unknown>)[o.extraTransform[0]] = o.extraTransform[1];
  sig.addReference({ xpath: `//*[@ID='${id}']`, digestAlgorithm: SHA256, transforms: o.transforms ?? [ENVELOPED, EXC_C14N] });
  sig.computeSignature(assertionXml(s, id), { location: { reference: `//*[@ID='${id}']/*[local-name(.)='Issuer']`, action: 'after' } });
  return responseXml(s, sig.getSignedXml());
}

describe('signature wrapping (XSW) of a signed assertion: refused, and the login it names still signs in with the genuine response', () => {
  const variants: [string, (s: ResponseSpec, p: ReturnType<typeof assertionParts>) => string][] = [
    // XSW3: mallory's assertion (another ID, unsigned) before the signed one.
    ['XSW3: a forged assertion before the signed one', (s, p) => responseXml(s, p.evil() + p.signed)],
    // XSW4: the signed assertion moved inside mallory's (another ID).
    ['XSW4: the signed assertion inside a forged one', (s, p) => responseXml(s, p.evil().replace('</saml:Assertion>', `${p.signed}</saml:Assertion>`))],
    // XSW5: mallory's assertion takes the signed ID and the signature; the genuine one, unsigned, follows.
    ['XSW5: the signature on a forged assertion of the same ID, the genuine one after it', (s, p) => responseXml(s, p.withSignature(p.evil(p.id)) + p.unsigned)],
    // XSW6: as XSW5, with the genuine assertion inside the signature.
    ['XSW6: the genuine assertion inside the signature of a forged one', (s, p) => responseXml(s, p.withSignature(p.evil(p.id), p.signature.replace('</Signature>', `${p.unsigned}</Signature>`)))],
    // XSW7: the signed assertion in Extensions, mallory's unsigned one in its place.
    ['XSW7: the signed assertion in Extensions, a forged one in its place', (s, p) => responseXml(s, p.evil()).replace('<samlp:Status>', `<samlp:Extensions>${p.signed}</samlp:Extensions><samlp:Status>`)],
    // XSW8: as XSW6, the genuine assertion in a ds:Object of the signature.
    ['XSW8: the genuine assertion in a ds:Object of the signature of a forged one', (s, p) => responseXml(s, p.withSignature(p.evil(p.id), p.signature.replace('</Signature>', `<Object>${p.unsigned}</Object></Signature>`)))],
    // The signed ID twice: mallory's copy in Extensions, the signed assertion in place.
    ['the signed ID on a second element (a forged assertion in Extensions)', (s, p) => responseXml(s, p.signed).replace('<samlp:Status>', `<samlp:Extensions>${p.evil(p.id)}</samlp:Extensions><samlp:Status>`)],
    // The signed ID under other attribute names, which xml-crypto also resolves (Id, id, a namespaced ID).
    ...(['Id', 'id', 'x:ID'] as const).map((name): [string, (s: ResponseSpec, p: ReturnType<typeof assertionParts>) => string] => [
      `the signature on a forged assertion, the genuine one in Extensions under ${name}= instead of ID=`,
      (s, p) => responseXml(s, p.withSignature(p.evil(p.id))).replace('<samlp:Status>', `<samlp:Extensions>${p.unsigned.replace(` ID="${p.id}"`, ` xmlns:x="urn:x" ${name}="${p.id}"`)}</samlp:Extensions><samlp:Status>`),
    ]),
    // The assertion's signature moved up onto the Response (its digest still matches: it references the assertion).
    ['the assertion\'s signature moved onto the Response, beside a forged assertion', (s, p) => responseXml(s, p.evil()).replace('<samlp:Status>', `${p.signature}<samlp:Extensions>${p.unsigned}</samlp:Extensions><samlp:Status>`)],
    // A decoy under another attribute name beside the genuine, signed assertion: the ID no longer names one element.
    ['a decoy element carrying the signed ID as Id= beside the signed assertion', (s, p) => responseXml(s, p.signed).replace('<samlp:Status>', `<samlp:Extensions><x:e xmlns:x="urn:x" Id="${p.id}">mallory@example.com</x:e></samlp:Extensions><samlp:Status>`)],
  ];

  test.each(variants)('%s', async (_name, build) => {
    const s = await answer(cred);
    const p = assertionParts(s);
    expect(await refusal(cred, build(s, p))).toMatch(NOT_SIGNED);
    expect(await signsIn(cred, responseXml(s, p.signed))).toMatchObject({ email: 'alice@example.com', name_id: 'alice@example.com' });
  });
});

describe('signature wrapping (XSW) of a signed Response', () => {
  /** A response to `s` signed over the Response, its signature, and the same response without it. */
  function responseParts(s: ResponseSpec) {
    const responseId = newId('r');
    const signed = signedResponse({ ...s, responseId }, A, 'response');
    const signature = signatureOf(signed);
    return { signed, signature, unsigned: signed.replace(signature, '') };
  }
  /** A response of mallory's (another ID) carrying the genuine response's signature after its Issuer. */
  const forgedWith = (s: ResponseSpec, signature: string, before = '') =>
    responseXml({ ...s, ...MALLORY }, assertionXml({ ...s, ...MALLORY })).replace(`<saml:Issuer>${s.issuer}</saml:Issuer>`, `<saml:Issuer>${s.issuer}</saml:Issuer>${before}${signature}`);

  test.each([
    // XSW1: the genuine response, unsigned, as a child of the signature on a forged one.
    ['XSW1: the genuine response inside the signature of a forged one', (s: ResponseSpec, p: ReturnType<typeof responseParts>) => forgedWith(s, p.signature.replace('</Signature>', `${p.unsigned}</Signature>`))],
    // XSW2: the genuine response before the signature, a sibling of it.
    ['XSW2: the genuine response before the signature of a forged one', (s: ResponseSpec, p: ReturnType<typeof responseParts>) => forgedWith(s, p.signature, p.unsigned)],
    // The Response's signature moved into its assertion, now mallory's (the digest, over the Response less the
    // signature, would have to match: it does not, and the signature must be its referenced element's child anyway).
    ['the Response\'s signature moved into a forged assertion', (s: ResponseSpec, p: ReturnType<typeof responseParts>) => p.unsigned.replace(/<saml:Assertion[\s\S]*<\/saml:Assertion>/, assertionXml({ ...s, ...MALLORY }).replace(`<saml:Issuer>${s.issuer}</saml:Issuer>`, `<saml:Issuer>${s.issuer}</saml:Issuer>${p.signature}`))],
    // The signed Response's assertion replaced by mallory's.
    ['the assertion of a signed Response replaced', (s: ResponseSpec, p: ReturnType<typeof responseParts>) => p.signed.replace(/<saml:Assertion[\s\S]*<\/saml:Assertion>/, assertionXml({ ...s, ...MALLORY }))],
  ])('%s', async (_name, build) => {
    const s = await answer(cred);
    const p = responseParts(s);
    expect(await refusal(cred, build(s, p))).toMatch(NOT_SIGNED);
    expect(await signsIn(cred, p.signed)).toMatchObject({ email: 'alice@example.com' });
  });
});

describe('markup injected into signed text (the CVE-2017-11428 family)', () => {
  // The IdP signed alice@example.com.evil.test: a user of the IdP who may choose that name. A comment or an
  // empty CDATA section splitting it leaves the signature valid (neither is in the canonical form): whoever
  // read only the first text node would sign in alice@example.com.
  test.each([
    ['a comment', '<!---->'],
    ['an empty CDATA section', '<![CDATA[]]>'],
  ])('%s inside the NameID or the email attribute: the whole signed value is read, never its first part (assertion or Response signed)', async (_name, markup) => {
    for (const what of ['assertion', 'response'] as const) {
      const asNameId = await answer(cred, { nameId: 'alice@example.com.evil.test', attributes: {} });
      const nameIdXml = signedResponse(asNameId, A, what).replace('alice@example.com.evil.test</saml:NameID>', `alice@example.com${markup}.evil.test</saml:NameID>`);
      expect(nameIdXml).toContain(markup);
      expect({ what, result: await signsIn(cred, nameIdXml) }).toMatchObject({ what, result: { email: 'alice@example.com.evil.test', name_id: 'alice@example.com.evil.test' } });
      const asAttribute = await answer(cred, { nameId: 'u-1', nameIdFormat: PERSISTENT_FORMAT, attributes: { email: ['alice@example.com.evil.test'] } });
      const attributeXml = signedResponse(asAttribute, A, what).replace('alice@example.com.evil.test</saml:AttributeValue>', `alice@example.com${markup}.evil.test</saml:AttributeValue>`);
      expect(attributeXml).toContain(markup);
      const result = await signsIn(cred, attributeXml);
      expect({ what, result }).toMatchObject({ what, result: { email: 'alice@example.com.evil.test', attributes: { email: ['alice@example.com.evil.test'] } } });
    }
  });

  test('a comment inside a NameID signed with a #WithComments transform: the signature covers no comment (a same-document reference), and the whole value is read', async () => {
    const s = await answer(cred, { nameId: 'alice@example.com.evil.test', attributes: {} });
    const genuine = signWith(s, { transforms: [ENVELOPED, `${EXC_C14N}WithComments`] });
    expect(genuine).toContain(`Algorithm="${EXC_C14N}WithComments"`);
    const xml = genuine.replace('alice@example.com.evil.test</saml:NameID>', 'alice@example.com<!---->.evil.test</saml:NameID>');
    expect(await signsIn(cred, xml)).toMatchObject({ email: 'alice@example.com.evil.test', name_id: 'alice@example.com.evil.test' });
  });

  test('a processing instruction or an XInclude inside the NameID changes what was signed: refused, and no file is read', async () => {
    for (const markup of ['<?evil x?>', '<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd" parse="text"/>']) {
      const s = await answer(cred, { nameId: 'alice@example.com.evil.test', attributes: {} });
      const xml = signedResponse(s, A).replace('alice@example.com.evil.test</saml:NameID>', `alice@example.com${markup}.evil.test</saml:NameID>`);
      const message = await refusal(cred, xml);
      expect(message).toMatch(NOT_SIGNED);
      expect(message).not.toMatch(/root:/);
    }
  });

  test('a DOCTYPE in front of a signed response (an entity in the NameID, an external entity, entity expansion) is a 400', async () => {
    const s = await answer(cred, { nameId: 'alice@example.com.evil.test', attributes: {} });
    const genuine = signedResponse(s, A);
    const doctypes = [
      '<!DOCTYPE samlp:Response [<!ENTITY e "alice@example.com">]>',
      '<!DOCTYPE samlp:Response [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
      `<!DOCTYPE samlp:Response [<!ENTITY a "aaaaaaaaaa">${Array.from({ length: 9 }, (_, i) => `<!ENTITY ${'b'.repeat(i + 1)} "${`&${i === 0 ? 'a' : 'b'.repeat(i)};`.repeat(10)}">`).join('')}]>`,
    ];
    for (const doctype of doctypes) {
      const xml = doctype + genuine.replace('alice@example.com.evil.test</saml:NameID>', '&e;.evil.test</saml:NameID>');
      expect(await refusal(cred, xml, 400)).toMatch(/DOCTYPE/);
    }
    expect(await signsIn(cred, genuine)).toMatchObject({ email: 'alice@example.com.evil.test' });
  });
});

describe('what the signature names', () => {
  test('a transform other than enveloped-signature and a canonicalization (an XPath filter, XSLT) is refused, though the IdP\'s key made the signature', async () => {
    // The transform runs as xml-crypto's enveloped-signature does, under the other name, so the IdP's key makes
    // a valid signature naming it.
    const Enveloped = (new SignedXml().CanonicalizationAlgorithms as Record<string, new () => { getAlgorithmName(): string }>)[ENVELOPED];
    if (Enveloped === undefined) throw new Error('xml-crypto has no enveloped-signature transform');
    for (const transform of ['http://www.w3.org/TR/1999/REC-xpath-19991116', 'http://www.w3.org/TR/1999/REC-xslt-19991116']) {
      const Named = class extends Enveloped {
        override getAlgorithmName(): string {
          return transform;
        }
      };
      const s = await answer(cred);
      const xml = signWith(s, { transforms: [transform, EXC_C14N], extraTransform: [transform, Named] });
      expect(xml).toContain(`Algorithm="${transform}"`);
      expect(await refusal(cred, xml)).toMatch(/signature is not accepted: its reference uses a transform that is not accepted/);
    }
  });

  test('a signature with no SignatureMethod algorithm, or "none", is refused saying so (no 5xx)', async () => {
    const s = await answer(cred);
    const genuine = signWith(s, {});
    expect(await refusal(cred, genuine.replace(`<SignatureMethod Algorithm="${RSA_SHA256}"/>`, '<SignatureMethod/>'))).toMatch(/signed with no algorithm, which is not accepted/);
    expect(await refusal(cred, genuine.replace(`<SignatureMethod Algorithm="${RSA_SHA256}"/>`, '<SignatureMethod Algorithm="none"/>'))).toMatch(/signed with none, which is not accepted/);
    expect(await signsIn(cred, genuine)).toMatchObject({ email: 'alice@example.com' });
  });

  test('a SignedInfo canonicalized by an algorithm that is no canonicalization (enveloped-signature), or an unknown one, is refused, not a 5xx', async () => {
    const s = await answer(cred);
    const genuine = signWith(s, {});
    for (const algorithm of [ENVELOPED, 'urn:x:unknown']) {
      const xml = genuine.replace(`<CanonicalizationMethod Algorithm="${EXC_C14N}"/>`, `<CanonicalizationMethod Algorithm="${algorithm}"/>`);
      expect(xml).not.toBe(genuine);
      expect(await refusal(cred, xml)).toMatch(NOT_SIGNED);
    }
    expect(await signsIn(cred, genuine)).toMatchObject({ email: 'alice@example.com' });
  });

  test("a signature whose KeyInfo carries the IdP's own certificate, made with another key, is refused: only the metadata's certificates count", async () => {
    const s = await answer(cred);
    const byStranger = signedResponse(s, STRANGER);
    const bare = (pem: string) => pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
    const claimsIdp = byStranger.replace(bare(STRANGER.cert), bare(A.cert));
    expect(claimsIdp).toContain(bare(A.cert));
    expect(await refusal(cred, claimsIdp)).toMatch(NOT_SIGNED);
  });

  test('a Response signature over the whole document (Reference URI="") is refused', async () => {
    const s = await answer(cred);
    const rid = newId('r');
    const whole = signElement(responseXml({ ...s, responseId: rid }, assertionXml(s)), rid, A);
    const sig = new SignedXml({ privateKey: A.key, publicCert: A.cert, signatureAlgorithm: RSA_SHA256, canonicalizationAlgorithm: EXC_C14N });
    sig.addReference({ xpath: '/*', uri: '', isEmptyUri: true, digestAlgorithm: SHA256, transforms: [ENVELOPED, EXC_C14N] });
    sig.computeSignature(whole.replace(signatureOf(whole), ''), { location: { reference: `/*/*[local-name(.)='Issuer']`, action: 'after' } });
    const xml = sig.getSignedXml();
    expect(xml).toContain('URI=""');
    expect(await refusal(cred, xml)).toMatch(NOT_SIGNED);
  });
});

describe('certificates', () => {
  test('a signature by a certificate the IdP metadata still lists but which has expired is refused, saying so; the current one signs in', async () => {
    const s = await answer(withExpired);
    expect(await refusal(withExpired, signedResponse(s, expired))).toBe(
      'Sign-in refused: the SAML response is signed with the IdP\'s certificate "expired-idp", which expired on 2020-02-01: an expired certificate verifies no sign-in. ' +
        'Have the IdP sign with its current certificate (listed in its metadata), then sign in again.',
    );
    // Over the Response too; and the login was not used up.
    expect(await refusal(withExpired, signedResponse(s, expired, 'response'))).toMatch(/expired on 2020-02-01/);
    expect(await signsIn(withExpired, signedResponse(s, A))).toMatchObject({ email: 'alice@example.com' });
  });
});

describe('the assertion itself', () => {
  const withSessionEnd = (s: ResponseSpec, end: Date | null) => {
    const id = newId('a');
    const assertion = assertionXml(s, id).replace('<saml:AuthnStatement ', end === null ? '<saml:AuthnStatement ' : `<saml:AuthnStatement SessionNotOnOrAfter="${end.toISOString()}" `);
    return responseXml(s, signElement(assertion, id, A));
  };

  test("the sign-in token expires when the user's session at the IdP ends (SessionNotOnOrAfter), if that is sooner than its 300 s", async () => {
    // Ends in 2 minutes (and a fraction of a second: exp is whole seconds, not after the session's end).
    // exp allows the region's 30 s clock skew after it, as the rule that accepts the assertion does.
    const soon = new Date(Date.now() + 120_000 + 500);
    const short = await tokenClaims(cred, withSessionEnd(await answer(cred), soon));
    expect(short.exp).toBe(Math.floor((soon.getTime() + 30_000) / 1000));
    expect(short.exp - short.iat).toBeLessThan(300);
    // Ended 10 s ago by the IdP's clock, within the skew: accepted, with a token for what the skew leaves
    // (not one expired when issued).
    const ended = new Date(Date.now() - 10_000);
    const withinSkew = await tokenClaims(cred, withSessionEnd(await answer(cred), ended));
    expect(withinSkew.exp).toBe(Math.floor((ended.getTime() + 30_000) / 1000));
    expect(withinSkew.exp).toBeGreaterThan(withinSkew.iat);
    // Ending after the 300 s, or not said: 300 s.
    const later = await tokenClaims(cred, withSessionEnd(await answer(cred), new Date(Date.now() + 60 * 60_000)));
    expect(later.exp - later.iat).toBe(300);
    const unsaid = await tokenClaims(cred, withSessionEnd(await answer(cred), null));
    expect(unsaid.exp - unsaid.iat).toBe(300);
  });

  test('an empty bearer SubjectConfirmationData (no Recipient, no NotOnOrAfter) is refused saying so, not as expired; a login\'s and an IdP-initiated one', async () => {
    const empty = (s: ResponseSpec) => {
      const id = newId('a');
      const assertion = assertionXml(s, id).replace(/<saml:SubjectConfirmationData [^>]*\/>/, '<saml:SubjectConfirmationData/>');
      expect(assertion).toContain('<saml:SubjectConfirmationData/>');
      return responseXml(s, signElement(assertion, id, A));
    };
    const message = /^Sign-in refused: the assertion's bearer SubjectConfirmationData has neither a Recipient nor a NotOnOrAfter; the Web Browser SSO profile requires both/;
    const forLogin = await answer(cred);
    const idpInitiated = await answer(other, { inResponseTo: null });
    for (const [id, s] of [[cred, forLogin], [other, idpInitiated]] as const) {
      const refused = await refusal(id, empty(s));
      expect(refused).toMatch(message);
      expect(refused).not.toMatch(/expired/);
    }
    // With a Recipient but no NotOnOrAfter: that one is named.
    const id = newId('a');
    const noEnd = assertionXml(forLogin, id).replace(/(<saml:SubjectConfirmationData [^>]*) NotOnOrAfter="[^"]*"/, '$1');
    expect(await refusal(cred, responseXml(forLogin, signElement(noEnd, id, A)))).toBe(
      "Sign-in refused: the assertion's bearer SubjectConfirmationData has no NotOnOrAfter (the Web Browser SSO profile requires one); check the IdP.",
    );
    expect(await signsIn(cred, signedResponse(forLogin, A))).toMatchObject({ email: 'alice@example.com' });
  });

  test('an attribute the IdP sends twice (two Attribute elements of one Name, in one AttributeStatement or two) is one attribute with every value in order: the email is the first', async () => {
    // node-saml keeps the last element of a Name only: the second address signed the user in, and the first
    // was missing from the attributes.
    const twice = (s: ResponseSpec, where: 'same statement' | 'second statement') => {
      const id = newId('a');
      const extra = '<saml:Attribute Name="email"><saml:AttributeValue>second@example.org</saml:AttributeValue></saml:Attribute>';
      const assertion = assertionXml(s, id).replace('</saml:AttributeStatement>', where === 'same statement' ? `${extra}</saml:AttributeStatement>` : `</saml:AttributeStatement><saml:AttributeStatement>${extra}</saml:AttributeStatement>`);
      expect(assertion.match(/Name="email"/g)).toHaveLength(2);
      return responseXml(s, signElement(assertion, id, A));
    };
    for (const where of ['same statement', 'second statement'] as const) {
      expect(await signsIn(cred, twice(await answer(cred), where))).toMatchObject({ email: 'alice@example.com', attributes: { email: ['alice@example.com', 'second@example.org'] } });
    }
  });

  test('an assertion with two Subjects, or a Subject with two identifiers (NameID and NameID, EncryptedID or BaseID), is refused: SAML allows one, and which is the user would be a guess', async () => {
    // node-saml (and this service until 2026-12-07) read the first Subject's first NameID: alice signed in, and
    // whoever read the second would have taken mallory.
    const s = await answer(cred);
    const edited = (edit: (xml: string) => string) => {
      const id = newId('a');
      const assertion = edit(assertionXml(s, id));
      return responseXml(s, signElement(assertion, id, A));
    };
    const subject = /<saml:Subject>[\s\S]*<\/saml:Subject>/;
    const twoSubjects = edited((x) => x.replace(subject, (m) => `${m}${m.replace('alice@example.com', 'mallory@example.com')}`));
    expect(twoSubjects.match(/<saml:Subject>/g)).toHaveLength(2);
    expect(await refusal(cred, twoSubjects)).toBe(
      'Sign-in refused: the assertion has 2 Subject elements; SAML allows one (the user the assertion is about), so which one is the user would be a guess. Check the IdP application.',
    );
    const second: Record<string, [string, string]> = {
      'NameID, NameID': ['', '<saml:NameID>mallory@example.com</saml:NameID>'],
      'NameID, EncryptedID': ['', '<saml:EncryptedID><xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#"/></saml:EncryptedID>'],
      'BaseID, NameID': ['<saml:BaseID NameQualifier="https://idp.attacks.test/saml"/>', ''],
    };
    for (const [listed, [before, after]] of Object.entries(second)) {
      const xml = edited((x) => x.replace(/<saml:NameID [^>]*>[^<]*<\/saml:NameID>/, (m) => `${before}${m}${after}`));
      expect(await refusal(cred, xml)).toBe(
        `Sign-in refused: the assertion's Subject has 2 identifiers (${listed}); SAML allows one (a NameID, a BaseID or an EncryptedID), so which one is the user would be a guess. Check the IdP application.`,
      );
    }
    // The refusals used up nothing: the IdP's genuine answer to the login signs in.
    expect(await signsIn(cred, signedResponse(s, A))).toMatchObject({ email: 'alice@example.com', name_id: 'alice@example.com' });
  });

  test("an IssueInstant (the Response's or the assertion's) or an AuthnInstant in the future beyond the skew is refused; one missing or not a date too; within the skew signs in", async () => {
    // node-saml checks none of them against the clock: each of these signed in until 2026-12-07.
    const s = await answer(cred);
    const ahead = new Date(Date.now() + 10 * 60_000).toISOString();
    const withTimes = (assertionEdit: (xml: string) => string, responseEdit: (xml: string) => string = (x) => x) => {
      const id = newId('a');
      const assertion = signElement(assertionEdit(assertionXml(s, id)), id, A);
      return responseEdit(responseXml(s, assertion));
    };
    const responseIssued = /(<samlp:Response [^>]*)IssueInstant="[^"]*"/;
    const assertionIssued = /(<saml:Assertion [^>]*)IssueInstant="[^"]*"/;
    const authnInstant = /(<saml:AuthnStatement [^>]*)AuthnInstant="[^"]*"/;
    const clocks = "check that the IdP's and this service's clocks are right, then sign in again";
    const cases: [string, string][] = [
      [withTimes((x) => x, (x) => x.replace(responseIssued, `$1IssueInstant="${ahead}"`)), `the Response was issued at ${ahead} (the Response's IssueInstant), which is in the future by this service's clock, beyond the 30 s clock skew allowed; ${clocks}.`],
      [withTimes((x) => x.replace(assertionIssued, `$1IssueInstant="${ahead}"`)), `the assertion was issued at ${ahead} (the assertion's IssueInstant), which is in the future by this service's clock, beyond the 30 s clock skew allowed; ${clocks}.`],
      [withTimes((x) => x.replace(authnInstant, `$1AuthnInstant="${ahead}"`)), `the user authenticated at the IdP at ${ahead} (the AuthnStatement's AuthnInstant), which is in the future by this service's clock, beyond the 30 s clock skew allowed; ${clocks}.`],
      [withTimes((x) => x, (x) => x.replace(responseIssued, '$1')), "the Response's IssueInstant is missing (SAML requires it); check the IdP."],
      [withTimes((x) => x.replace(authnInstant, '$1')), "the AuthnStatement's AuthnInstant is missing (SAML requires it); check the IdP."],
      [withTimes((x) => x.replace(authnInstant, '$1AuthnInstant="yesterday"')), "the AuthnStatement's AuthnInstant \"yesterday\" is not a valid date; check the IdP."],
    ];
    for (const [xml, message] of cases) expect(await refusal(cred, xml)).toBe(`Sign-in refused: ${message}`);
    // A second AuthnStatement counts as the first does.
    const secondStatement = withTimes((x) =>
      x.replace('</saml:AuthnStatement>', `</saml:AuthnStatement><saml:AuthnStatement AuthnInstant="${ahead}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:Password</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>`),
    );
    expect(await refusal(cred, secondStatement)).toMatch(/^Sign-in refused: the user authenticated at the IdP at .* \(the AuthnStatement's AuthnInstant\), which is in the future/);
    // 10 s ahead, within the 30 s skew (an IdP clock ahead of this one): signs in, and nothing above used up the login.
    const soon = new Date(Date.now() + 10_000).toISOString();
    const within = withTimes((x) => x.replace(assertionIssued, `$1IssueInstant="${soon}"`).replace(authnInstant, `$1AuthnInstant="${soon}"`), (x) => x.replace(responseIssued, `$1IssueInstant="${soon}"`));
    expect(await signsIn(cred, within)).toMatchObject({ email: 'alice@example.com' });
  });

  test('a session at the IdP with less than a second left (with the skew) is refused, not answered with a token that expires as it is issued (exp == iat); a second left signs in', async () => {
    const s = await answer(cred);
    // This service's clock pinned 200 ms into a second (in-process region: Date.now is the service's), so that
    // what is left of the session is exact. node-saml reads new Date(), the real clock, which the assertion's
    // Conditions (5 minutes) allow either way.
    const at = Math.floor(Date.now() / 1000) * 1000 + 200;
    const clock = jest.spyOn(Date, 'now').mockReturnValue(at);
    try {
      // SessionNotOnOrAfter 29.5 s ago: 500 ms left with the 30 s skew; the token's exp would be its iat.
      const nearlyOver = new Date(at - 30_000 + 500);
      expect(await refusal(cred, withSessionEnd(s, nearlyOver))).toBe(
        `Sign-in refused: the user's session at the IdP ends at ${nearlyOver.toISOString()} (the AuthnStatement's SessionNotOnOrAfter): less than a second is left of it, ` +
          "with the 30 s clock skew allowed, too little for a sign-in token; sign in again at the IdP (check that the IdP's and this service's clocks are right).",
      );
      // A second left: a token of one second, and the refusal above used up neither the login nor anything else.
      const claims = await tokenClaims(cred, withSessionEnd(s, new Date(at - 30_000 + 1000)));
      expect(claims).toMatchObject({ iat: Math.floor(at / 1000), exp: Math.floor(at / 1000) + 1 });
    } finally {
      clock.mockRestore();
    }
  });

  test('an assertion without a Subject is refused', async () => {
    const s = await answer(cred);
    const id = newId('a');
    const noSubject = assertionXml(s, id).replace(/<saml:Subject>[\s\S]*<\/saml:Subject>/, '');
    expect(noSubject).not.toContain('Subject');
    expect(await refusal(cred, responseXml(s, signElement(noSubject, id, A)))).toBe('Sign-in refused: the assertion has no (unencrypted) NameID in its Subject.');
  });

  test('an EncryptedAssertion beside a signed Assertion is refused (one assertion only)', async () => {
    const s = await answer(cred);
    const p = assertionParts(s);
    const xml = responseXml(s, p.signed).replace('</samlp:Response>', '<saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#"/></saml:EncryptedAssertion></samlp:Response>');
    expect(await refusal(cred, xml)).toMatch(NOT_SIGNED);
    expect(await signsIn(cred, responseXml(s, p.signed))).toMatchObject({ email: 'alice@example.com' });
  });

  test('an AuthnStatement whose SessionNotOnOrAfter has passed (beyond the skew) is refused: the IdP says the session is over; a bad date too, and one still ahead signs in', async () => {
    const s = await answer(cred);
    const id = newId('a');
    const ended = new Date(Date.now() - 10 * 60_000).toISOString();
    const assertion = assertionXml(s, id).replace('<saml:AuthnStatement ', `<saml:AuthnStatement SessionNotOnOrAfter="${ended}" `);
    expect(await refusal(cred, responseXml(s, signElement(assertion, id, A)))).toBe(
      `Sign-in refused: the user's session at the IdP ended at ${ended} (the AuthnStatement's SessionNotOnOrAfter); sign in again (check that the IdP's and this service's clocks are right, then sign in again).`,
    );
    const notADate = assertionXml(s, id).replace('<saml:AuthnStatement ', '<saml:AuthnStatement SessionNotOnOrAfter="soon" ');
    expect(await refusal(cred, responseXml(s, signElement(notADate, id, A)))).toMatch(/SessionNotOnOrAfter is not a valid date/);
    // Ended 10 s ago, within the 30 s skew: an IdP clock behind this one's.
    const justEnded = new Date(Date.now() - 10_000).toISOString();
    const withinSkew = assertionXml(s, id).replace('<saml:AuthnStatement ', `<saml:AuthnStatement SessionNotOnOrAfter="${justEnded}" `);
    expect(await signsIn(cred, responseXml(s, signElement(withinSkew, id, A)))).toMatchObject({ email: 'alice@example.com' });
    const s2 = await answer(cred);
    const id2 = newId('a');
    const later = new Date(Date.now() + 10 * 60_000).toISOString();
    const live = assertionXml(s2, id2).replace('<saml:AuthnStatement ', `<saml:AuthnStatement SessionNotOnOrAfter="${later}" `);
    expect(await signsIn(cred, responseXml(s2, signElement(live, id2, A)))).toMatchObject({ email: 'alice@example.com' });
  });

  test("every AuthnStatement's SessionNotOnOrAfter counts, not only the first's: one that has passed refuses the assertion, the earliest ends the token", async () => {
    // A second AuthnStatement (another authentication of the user) that says its session ended: the first,
    // which says nothing of its end, signed the user in until 2026-12-07.
    const second = (s: ResponseSpec, end: Date) => {
      const id = newId('a');
      const assertion = assertionXml(s, id).replace(
        '</saml:AuthnStatement>',
        `</saml:AuthnStatement><saml:AuthnStatement AuthnInstant="${new Date().toISOString()}" SessionNotOnOrAfter="${end.toISOString()}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:Password</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>`,
      );
      expect(assertion.match(/<saml:AuthnStatement /g)).toHaveLength(2);
      return responseXml(s, signElement(assertion, id, A));
    };
    const ended = new Date(Date.now() - 10 * 60_000);
    expect(await refusal(cred, second(await answer(cred), ended))).toBe(
      `Sign-in refused: the user's session at the IdP ended at ${ended.toISOString()} (the AuthnStatement's SessionNotOnOrAfter); sign in again (check that the IdP's and this service's clocks are right, then sign in again).`,
    );
    const soon = new Date(Date.now() + 120_000);
    const claims = await tokenClaims(cred, second(await answer(cred), soon));
    expect(claims.exp).toBe(Math.floor((soon.getTime() + 30_000) / 1000));
  });
});

describe('a response addressed elsewhere', () => {
  const NO_DESTINATION = /^Sign-in refused: the Response is signed but has no Destination attribute, which SAML requires of a signed response posted to an ACS; have the IdP application set Destination to this region's ACS URL "http:\/\/[^"]+\/sso\/saml\/[^"]+\/acs"/;
  /** The answer to `s` without the Response's Destination, signed on the Response, the assertion or both (xml-crypto, as an IdP). */
  const withoutDestination = (s: ResponseSpec, signed: { response: boolean; assertion: boolean; responseBy?: Signer }) => {
    const [assertionId, responseId] = [newId('a'), newId('r')];
    const spec = { ...s, assertionId, responseId };
    const assertion = signed.assertion ? signElement(assertionXml(spec, assertionId), assertionId, A) : assertionXml(spec, assertionId);
    const xml = responseXml(spec, assertion).replace(/ Destination="[^"]*"/, '');
    expect(xml).not.toMatch(/<samlp:Response [^>]*Destination=/);
    return signed.response ? signElement(xml, responseId, signed.responseBy ?? A) : xml;
  };

  test('a signed Response without a Destination is refused, naming it (SAML Bindings 3.5.5.2); the login is not used up', async () => {
    const s = await answer(cred);
    expect(await refusal(cred, withoutDestination(s, { response: true, assertion: false }))).toMatch(NO_DESTINATION);
    expect(await refusal(cred, withoutDestination(s, { response: true, assertion: true }))).toMatch(NO_DESTINATION);
    // A Response signature that does not verify (another key) beside a signed assertion: the Response is still a
    // signed message, so it still needs its Destination.
    expect(await refusal(cred, withoutDestination(s, { response: true, assertion: true, responseBy: STRANGER }))).toMatch(NO_DESTINATION);
    expect(await signsIn(cred, signedResponse(s, A, 'response'))).toMatchObject({ email: 'alice@example.com' });
  });

  test('an unsigned Response whose assertion is signed may omit its Destination: it signs in', async () => {
    const s = await answer(cred);
    expect(await signsIn(cred, withoutDestination(s, { response: false, assertion: true }))).toMatchObject({ email: 'alice@example.com' });
  });

  test("one credential's response posted to another credential's ACS, both of one IdP (the same certificate), is refused", async () => {
    // A login of `cred`, answered: `other` did not start that login.
    const login = await answer(cred);
    const xml = signedResponse(login, A);
    expect(await refusal(other, xml)).toMatch(/did not start/);
    // IdP-initiated (which `other` allows): meant for `cred`'s audience and ACS.
    const idpInitiated = signedResponse({ ...login, inResponseTo: null }, A);
    expect(await refusal(other, idpInitiated)).toMatch(/meant for audience|addressed to/);
    // Both still sign in where they were meant to (the IdP-initiated one is refused there: not allowed for `cred`).
    expect(await signsIn(cred, xml)).toMatchObject({ email: 'alice@example.com' });
    expect(await refusal(cred, idpInitiated, 403)).toMatch(/IdP-initiated/);
  });

  test("an IdP-initiated response addressed to another region's ACS is refused here, so each region's replay cache suffices", async () => {
    const metadata = await (await fetch(`${r.url}/sso/saml/${other}/metadata`)).text();
    const elsewhere = /Location="([^"]+)" index="1"/.exec(metadata)?.[1] ?? '';
    expect(elsewhere).toMatch(/\/sso\/saml\/.*\/acs$/);
    const s = await answer(other, { inResponseTo: null });
    expect(elsewhere).not.toBe(s.acs);
    expect(await refusal(other, signedResponse({ ...s, acs: elsewhere }, A))).toMatch(/addressed to/);
    expect(await signsIn(other, signedResponse(s, A))).toMatchObject({ email: 'alice@example.com' });
  });
});
