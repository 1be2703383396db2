/**
 * The SAML Response validator on its own (no region): signature placement and wrapping, the one answer
 * before the signature verifies, and the email rules.
 */
import { SignedXml } from 'xml-crypto';
import { emailOf, validateResponse, type Expectations } from '../../src/sso/response';
import { assertionXml, newId, PERSISTENT_FORMAT, responseXml, signedResponse, signElement, signer, type ResponseSpec } from './support/idp-simulator';

const A = signer('idp-a');
const ACS = 'https://sp.test/sso/saml/c1/acs';
const exp = (over: Partial<Expectations> = {}): Expectations => ({
  idpEntityId: 'https://idp.test',
  spEntityId: 'urn:sp:c1',
  acsUrl: ACS,
  certificates: [{ pem: A.cert }],
  now: Date.now(),
  skewMs: 30_000,
  ...over,
});
const spec = (over: Partial<ResponseSpec> = {}): ResponseSpec => ({
  issuer: 'https://idp.test',
  audience: 'urn:sp:c1',
  acs: ACS,
  inResponseTo: '_req1',
  nameId: 'alice@example.com',
  attributes: { email: ['alice@example.com'] },
  ...over,
});
const message = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('expected a refusal');
};
const NOT_SIGNED = /not signed by the identity provider/;

test('reads the assertion of a valid response, signed on the assertion or on the whole response', () => {
  for (const what of ['assertion', 'response'] as const) {
    const a = validateResponse(signedResponse(spec({ sessionIndex: '_s9' }), A, what), exp());
    expect(a).toMatchObject({ inResponseTo: '_req1', nameId: 'alice@example.com', sessionIndex: '_s9', attributes: { email: ['alice@example.com'] } });
  }
});

test('the signature must reference its own parent: a signature moved onto a forged assertion is refused', () => {
  const s = spec();
  const id = newId('a');
  const signed = signElement(assertionXml(s, id), id, A);
  const signature = /<Signature[\s\S]*<\/Signature>/.exec(signed)?.[0] ?? '';
  const forged = assertionXml({ ...s, nameId: 'mallory@example.com' }).replace('</saml:Issuer>', `</saml:Issuer>${signature}`);
  const xml = responseXml(s, forged).replace('<samlp:Status>', `<samlp:Extensions>${signed.replace(signature, '')}</samlp:Extensions><samlp:Status>`);
  expect(message(() => validateResponse(xml, exp()))).toMatch(NOT_SIGNED);
});

test('what is read is what was signed: a comment injected into a signed NameID does not truncate it', () => {
  // The IdP signed "alice@example.com.evil.test"; comments are outside the canonical form, so the signature
  // still verifies, and a reader of the posted DOM's first text node would see "alice@example.com".
  const signed = signedResponse(spec({ nameId: 'alice@example.com.evil.test', attributes: {} }), A);
  const xml = signed.replace('alice@example.com.evil.test</saml:NameID>', 'alice@example.com<!---->.evil.test</saml:NameID>');
  expect(xml).not.toBe(signed);
  expect(validateResponse(xml, exp()).nameId).toBe('alice@example.com.evil.test');
});

test('every failure before the signature verifies gets the same answer', () => {
  const other = signer('stranger');
  const answers = new Set([
    message(() => validateResponse(signedResponse(spec(), other), exp())),
    message(() => validateResponse(signedResponse(spec(), A).replace('alice@', 'mallory@'), exp())),
    message(() => validateResponse(responseXml(spec(), assertionXml(spec())), exp())),
    message(() => validateResponse(signedResponse(spec({ audience: 'wrong' }), other), exp())),
  ]);
  expect(answers.size).toBe(1);
  expect([...answers][0]).toMatch(NOT_SIGNED);
});

test('an HMAC "signature" keyed with the public certificate is refused (key confusion)', () => {
  const s = spec();
  const id = newId('a');
  const sig = new SignedXml({ privateKey: A.cert, signatureAlgorithm: 'http://www.w3.org/2000/09/xmldsig#hmac-sha1', canonicalizationAlgorithm: 'http://www.w3.org/2001/10/xml-exc-c14n#' });
  sig.enableHMAC();
  sig.addReference({ xpath: `//*[@ID='${id}']`, transforms: ['http://www.w3.org/2000/09/xmldsig#enveloped-signature', 'http://www.w3.org/2001/10/xml-exc-c14n#'], digestAlgorithm: 'http://www.w3.org/2001/04/xmlenc#sha256' });
  sig.computeSignature(assertionXml(s, id), { location: { reference: `//*[@ID='${id}']/*[local-name(.)='Issuer']`, action: 'after' } });
  expect(message(() => validateResponse(responseXml(s, sig.getSignedXml()), exp()))).toMatch(NOT_SIGNED);
});

test('an IdP status other than Success is refused with the status named', () => {
  const xml = signedResponse(spec(), A, 'response');
  const failed = xml.replace('status:Success', 'status:Requester');
  // Re-sign so only the status is wrong.
  const id = /samlp:Response [^>]*ID="([^"]+)"/.exec(failed)?.[1] ?? '';
  const unsigned = failed.replace(/<Signature[\s\S]*?<\/Signature>/, '');
  expect(message(() => validateResponse(signElement(unsigned, id, A), exp()))).toMatch(/status Requester/);
});

describe('email', () => {
  const assertion = (over: Partial<ResponseSpec>) => validateResponse(signedResponse(spec(over), A), exp());
  test('the first of email_claims present wins', () => {
    const a = assertion({ attributes: { mail: ['m@example.com'], email: ['e@example.com'] } });
    expect(emailOf(a, ['upn', 'mail', 'email'])).toEqual({ email: 'm@example.com' });
  });
  test('a claim present but not an email address is named', () => {
    const a = assertion({ attributes: { email: ['not-an-email'] } });
    expect(emailOf(a, ['email'])).toEqual({ problem: expect.stringMatching(/"email".*not-an-email.*not an email address/) });
  });
  test('else an email NameID; a persistent NameID is never taken as the email', () => {
    expect(emailOf(assertion({ attributes: {} }), ['email'])).toEqual({ email: 'alice@example.com' });
    expect(emailOf(assertion({ attributes: {}, nameId: 'x@y.test', nameIdFormat: PERSISTENT_FORMAT }), ['email'])).toEqual({ problem: expect.stringMatching(/no email address/) });
  });
});
