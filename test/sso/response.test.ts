/**
 * The SAML Response validator on its own (no region): signature placement and wrapping, the one answer
 * before the signature verifies, and the email rules. The login it answers ('_req1') is outstanding in a
 * stand-in for node-saml's request cache (the Redis-backed one is tested through the regions, sso.test.ts).
 */
import type { CacheProvider } from '@node-saml/node-saml';
import { SignedXml } from 'xml-crypto';
import { AppError } from '../../src/http/errors';
import { parseIdpMetadata } from '../../src/metadata/parse-metadata';
import { signEnveloped } from '../../bench/metadata-documents';
import { emailOf } from '../../src/sso/email';
import { parseResponse, validateResponse, type Expectations } from '../../src/sso/response';
import { assertionXml, expiredSigner, idpMetadata, newId, PERSISTENT_FORMAT, responseXml, signedResponse, signElement, signer, type ResponseSpec, type Signer } from './support/idp-simulator';

const A = signer('idp-a');
const ACS = 'https://sp.test/sso/saml/c1/acs';
const outstanding: CacheProvider = {
  saveAsync: async () => null,
  getAsync: async (id) => (id === '_req1' ? new Date().toISOString() : null),
  removeAsync: async () => null,
};
const exp = (over: Partial<Expectations> = {}): Expectations => ({
  idpEntityId: 'https://idp.test',
  spEntityId: 'urn:sp:c1',
  acsUrl: ACS,
  certificates: [{ pem: A.cert }],
  certificatesAt: new Date(),
  skewMs: 30_000,
  requests: outstanding,
  ...over,
});
const validate = (xml: string, expectations = exp()) => validateResponse(parseResponse(xml), expectations);
const spec = (over: Partial<ResponseSpec> = {}): ResponseSpec => ({
  issuer: 'https://idp.test',
  audience: 'urn:sp:c1',
  acs: ACS,
  inResponseTo: '_req1',
  nameId: 'alice@example.com',
  attributes: { email: ['alice@example.com'] },
  ...over,
});
const message = async (fn: () => Promise<unknown>) => {
  try {
    await fn();
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('expected a refusal');
};
const NOT_SIGNED = /not signed by the identity provider/;

test('reads the assertion of a valid response, signed on the assertion or on the whole response', async () => {
  for (const what of ['assertion', 'response'] as const) {
    const a = await validate(signedResponse(spec({ sessionIndex: '_s9' }), A, what), exp());
    expect(a).toMatchObject({ inResponseTo: '_req1', nameId: 'alice@example.com', sessionIndex: '_s9', attributes: { email: ['alice@example.com'] } });
  }
});

test('the signature must reference its own parent: a signature moved onto a forged assertion is refused', async () => {
  const s = spec();
  const id = newId('a');
  const signed = signElement(assertionXml(s, id), id, A);
  const signature = /<Signature[\s\S]*<\/Signature>/.exec(signed)?.[0] ?? '';
  const forged = assertionXml({ ...s, nameId: 'mallory@example.com' }).replace('</saml:Issuer>', `</saml:Issuer>${signature}`);
  const xml = responseXml(s, forged).replace('<samlp:Status>', `<samlp:Extensions>${signed.replace(signature, '')}</samlp:Extensions><samlp:Status>`);
  expect(await message(() => validate(xml, exp()))).toMatch(NOT_SIGNED);
});

test('what is read is what was signed: a comment injected into a signed NameID does not truncate it', async () => {
  // The IdP signed "alice@example.com.evil.test"; comments are outside the canonical form, so the signature
  // still verifies, and a reader of the posted DOM's first text node would see "alice@example.com".
  const signed = signedResponse(spec({ nameId: 'alice@example.com.evil.test', attributes: {} }), A);
  const xml = signed.replace('alice@example.com.evil.test</saml:NameID>', 'alice@example.com<!---->.evil.test</saml:NameID>');
  expect(xml).not.toBe(signed);
  expect((await validate(xml, exp())).nameId).toBe('alice@example.com.evil.test');
});

test('every failure before the signature verifies gets the same answer', async () => {
  const other = signer('stranger');
  const answers = new Set(await Promise.all([
    message(() => validate(signedResponse(spec(), other), exp())),
    message(() => validate(signedResponse(spec(), A).replace('alice@', 'mallory@'), exp())),
    message(() => validate(responseXml(spec(), assertionXml(spec())), exp())),
    message(() => validate(signedResponse(spec({ audience: 'wrong' }), other), exp())),
  ]));
  expect(answers.size).toBe(1);
  expect([...answers][0]).toMatch(NOT_SIGNED);
});

test('an HMAC "signature" keyed with the public certificate is refused (key confusion)', async () => {
  const s = spec();
  const id = newId('a');
  const sig = new SignedXml({ privateKey: A.cert, signatureAlgorithm: 'http://www.w3.org/2000/09/xmldsig#hmac-sha1', canonicalizationAlgorithm: 'http://www.w3.org/2001/10/xml-exc-c14n#' });
  sig.enableHMAC();
  sig.addReference({ xpath: `//*[@ID='${id}']`, transforms: ['http://www.w3.org/2000/09/xmldsig#enveloped-signature', 'http://www.w3.org/2001/10/xml-exc-c14n#'], digestAlgorithm: 'http://www.w3.org/2001/04/xmlenc#sha256' });
  sig.computeSignature(assertionXml(s, id), { location: { reference: `//*[@ID='${id}']/*[local-name(.)='Issuer']`, action: 'after' } });
  expect(await message(() => validate(responseXml(s, sig.getSignedXml()), exp()))).toMatch(/signed with hmac-sha1, which is not accepted/);
});

test('an assertion without an AuthnStatement is no sign-in (SAML profiles 4.1.4.2), though signed and addressed to us', async () => {
  expect(await message(() => validate(signedResponse(spec({ authnStatement: false }), A), exp()))).toMatch(/has no AuthnStatement/);
  expect(await message(() => validate(signedResponse(spec({ authnStatement: false }), A, 'response'), exp()))).toMatch(/has no AuthnStatement/);
});

test("the Conditions' times as documented: none, or NotOnOrAfter alone, are accepted; NotBefore without NotOnOrAfter is refused (node-saml reads the lifetime from it)", async () => {
  const signedWith = (edit: (xml: string) => string) => {
    const s = spec();
    const id = newId('a');
    return responseXml(s, signElement(edit(assertionXml(s, id)), id, A));
  };
  await expect(validate(signedWith((x) => x.replace(/<saml:Conditions [^>]*>/, '<saml:Conditions>')), exp())).resolves.toMatchObject({ nameId: 'alice@example.com' });
  await expect(validate(signedWith((x) => x.replace(/<saml:Conditions NotBefore="[^"]*"/, '<saml:Conditions')), exp())).resolves.toMatchObject({ nameId: 'alice@example.com' });
  expect(await message(() => validate(signedWith((x) => x.replace(/(<saml:Conditions NotBefore="[^"]*") NotOnOrAfter="[^"]*"/, '$1')), exp()))).toMatch(/lacks a valid IssueInstant, or a NotOnOrAfter/);
});

test('an IdP status other than Success is refused with the status named', async () => {
  const xml = signedResponse(spec(), A, 'response');
  const failed = xml.replace('status:Success', 'status:Requester');
  // Re-sign so only the status is wrong.
  const id = /samlp:Response [^>]*ID="([^"]+)"/.exec(failed)?.[1] ?? '';
  const unsigned = failed.replace(/<Signature[\s\S]*?<\/Signature>/, '');
  expect(await message(() => validate(signElement(unsigned, id, A), exp()))).toMatch(/status Requester/);
});

test('the second-level status code, which says what went wrong, is named with the first', async () => {
  const xml = responseXml(spec(), '')
    .replace(
      '<samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/>',
      '<samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Responder"><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"/></samlp:StatusCode><samlp:StatusMessage>User cancelled</samlp:StatusMessage>',
    );
  expect(await message(() => validate(xml))).toMatch(/did not authenticate the user \(status Responder\/AuthnFailed: User cancelled\)/);
});

describe('email', () => {
  const assertion = (over: Partial<ResponseSpec>) => validate(signedResponse(spec(over), A), exp());
  test('the first of email_claims present wins', async () => {
    const a = await assertion({ attributes: { mail: ['m@example.com'], email: ['e@example.com'] } });
    expect(emailOf(a, ['upn', 'mail', 'email'])).toEqual({ email: 'm@example.com' });
  });
  test('a claim present but not an email address is named', async () => {
    const a = await assertion({ attributes: { email: ['not-an-email'] } });
    expect(emailOf(a, ['email'])).toEqual({ problem: expect.stringMatching(/"email".*not-an-email.*not an email address/) });
  });
  test('an address with controls, invisible format characters or a malformed domain is none; the domain is lower-cased', async () => {
    const bad = ['a\u0085b@example.com', 'ad\u200dmin@example.com', 'admin@exa\u202emple.com', 'a\u007f@example.com', 'x@-', 'x@-example.com', 'x@example-.com', 'x@example..com', 'x@.com', '.x@example.com', 'x..y@example.com', 'x@exa_mple.com', 'x@'];
    for (const value of bad) {
      const a = await assertion({ nameId: 'ignored', nameIdFormat: PERSISTENT_FORMAT, attributes: { email: [value] } });
      expect({ value, outcome: emailOf(a, ['email']) }).toEqual({ value, outcome: { problem: expect.stringMatching(/not an email address/) } });
      // The refusal quotes the value without its controls and invisible characters.
      expect('problem' in emailOf(a, ['email']) && /[\p{Cc}\p{Cf}]/u.test((emailOf(a, ['email']) as { problem: string }).problem)).toBe(false);
    }
    const good = await assertion({ attributes: { email: ['Alice.O+tag@Example.COM'] } });
    expect(emailOf(good, ['email'])).toEqual({ email: 'Alice.O+tag@example.com' });
    expect(emailOf(await assertion({ attributes: { email: ['jürgen@bücher.de'] } }), ['email'])).toEqual({ email: 'jürgen@bücher.de' });
    expect(emailOf(await assertion({ attributes: {}, nameId: 'Bob@EXAMPLE.com' }), ['email'])).toEqual({ email: 'Bob@example.com' });
  });
  test('a NameID without a Format (SAML: unspecified) that is an email address is the email', async () => {
    const s = spec({ attributes: {} });
    const id = newId('a');
    const xml = responseXml(s, signElement(assertionXml(s, id).replace(/ Format="[^"]*"/, ''), id, A));
    expect(emailOf(await validate(xml), ['email'])).toEqual({ email: 'alice@example.com' });
  });
  test('of two attributes with one FriendlyName, a claim of that name reads the first', async () => {
    const s = spec({ attributes: { 'urn:oid:0.9.2342.19200300.100.1.3': ['first@example.com'], 'urn:example:mail': ['second@example.com'] } });
    const id = newId('a');
    const xml = responseXml(s, signElement(assertionXml(s, id).replace(/<saml:Attribute Name="[^"]*"/g, '$& FriendlyName="mail"'), id, A));
    expect(emailOf(await validate(xml), ['mail'])).toEqual({ email: 'first@example.com' });
  });
  test('else an email NameID; a persistent NameID is never taken as the email', async () => {
    expect(emailOf(await assertion({ attributes: {} }), ['email'])).toEqual({ email: 'alice@example.com' });
    expect(emailOf(await assertion({ attributes: {}, nameId: 'x@y.test', nameIdFormat: PERSISTENT_FORMAT }), ['email'])).toEqual({ problem: expect.stringMatching(/no email address/) });
  });
  test('a refusal of a NameID that reads as an address says its format is why, not that it is no address', async () => {
    const transient = await assertion({ attributes: {}, nameId: 'x@y.test', nameIdFormat: 'urn:oasis:names:tc:SAML:2.0:nameid-format:transient' });
    const outcome = emailOf(transient, ['email']) as { problem: string };
    expect(outcome.problem).toMatch(/the NameID's format is transient, not emailAddress \(or unspecified\)/);
    expect(outcome.problem).not.toMatch(/NameID is not an email address/);
    expect(emailOf(await assertion({ attributes: {}, nameId: '00u1abc', nameIdFormat: PERSISTENT_FORMAT }), ['email'])).toEqual({ problem: expect.stringMatching(/the NameID is not an email address/) });
  });
});

describe('where the signature is (node-saml takes either)', () => {
  const stranger = signer('stranger');
  const nested = (assertionBy: typeof A, responseBy: typeof A) => {
    const s = spec({ assertionId: newId('a'), responseId: newId('r') });
    const inner = signElement(assertionXml(s, s.assertionId), s.assertionId ?? '', assertionBy);
    return signElement(responseXml(s, inner), s.responseId ?? '', responseBy);
  };

  test('only the Response signed, or only the Assertion: both are read', async () => {
    for (const what of ['assertion', 'response'] as const) {
      const xml = signedResponse(spec(), A, what);
      expect((xml.match(/<Signature /g) ?? []).length).toBe(1);
      expect(await validate(xml)).toMatchObject({ nameId: 'alice@example.com', inResponseTo: '_req1' });
    }
  });

  test('a Response signature that does not verify leaves the response unsigned: its signed assertion still counts', async () => {
    expect(await validate(nested(A, stranger))).toMatchObject({ nameId: 'alice@example.com' });
    // The IdP's signature over the Response covers the assertion, whatever signature the assertion carries.
    expect(await validate(nested(stranger, A))).toMatchObject({ nameId: 'alice@example.com' });
    expect(await message(() => validate(nested(stranger, stranger)))).toMatch(NOT_SIGNED);
  });
});

describe('InResponseTo', () => {
  test('a login this service did not start is refused as such', async () => {
    expect(await message(() => validate(signedResponse(spec({ inResponseTo: '_other' }), A)))).toMatch(/did not start/);
  });

  test('the request answered must be named in the signed assertion, not only in the (unsigned) Response', async () => {
    const s = spec({ assertionId: newId('a') });
    const unsignedIrt = responseXml(s, signElement(assertionXml({ ...s, inResponseTo: null }), s.assertionId ?? '', A));
    expect(await message(() => validate(unsignedIrt))).toMatch(/names the request it answers, but its signed assertion does not/);
    const onlySigned = responseXml({ ...s, inResponseTo: null }, signElement(assertionXml(s), s.assertionId ?? '', A));
    expect(await message(() => validate(onlySigned))).toMatch(/answer different requests/);
  });
});

test('an unsigned error response without an assertion is refused with the IdP status, never node-saml\'s words', async () => {
  const xml = responseXml(spec(), '')
    .replace('<samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/>', '<samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Responder"/><samlp:StatusMessage>User is not assigned</samlp:StatusMessage>');
  const text = await message(() => validate(xml));
  expect(text).toMatch(/did not authenticate the user \(status Responder: User is not assigned\)/);
  expect(text).not.toMatch(/SAML provider returned/);
});

test('an attribute named like a field (nameID, issuer) never stands in for the assertion\'s own NameID or Issuer', async () => {
  const s = spec({ assertionId: newId('a'), attributes: { nameID: ['mallory@example.com'], issuer: ['https://idp.test'] } });
  const withoutNameId = assertionXml(s).replace(/<saml:NameID [^>]*>[^<]*<\/saml:NameID>/, '<saml:EncryptedID/>');
  expect(await message(() => validate(responseXml(s, signElement(withoutNameId, s.assertionId ?? '', A))))).toMatch(/no \(unencrypted\) NameID/);
  const withoutIssuer = assertionXml(s).replace('<saml:Issuer>https://idp.test</saml:Issuer>', '');
  const id = s.assertionId ?? '';
  const signedNoIssuer = signEnveloped(withoutIssuer, A, `//*[@ID='${id}']`, { reference: `//*[@ID='${id}']`, action: 'prepend' });
  expect(await message(() => validate(responseXml(s, signedNoIssuer)))).toMatch(/names no Issuer/);
});

/** Signs the assertion `id` of `xml` as an IdP would, with the given algorithms. */
function signWith(xml: string, id: string, by: Signer, signatureAlgorithm: string, digestAlgorithm: string): string {
  const sig = new SignedXml({ privateKey: by.key, publicCert: by.cert, signatureAlgorithm, canonicalizationAlgorithm: 'http://www.w3.org/2001/10/xml-exc-c14n#' });
  sig.addReference({ xpath: `//*[@ID='${id}']`, digestAlgorithm, transforms: ['http://www.w3.org/2000/09/xmldsig#enveloped-signature', 'http://www.w3.org/2001/10/xml-exc-c14n#'] });
  sig.computeSignature(xml, { location: { reference: `//*[@ID='${id}']/*[local-name(.)='Issuer']`, action: 'after' } });
  return sig.getSignedXml();
}
const RSA_SHA1 = 'http://www.w3.org/2000/09/xmldsig#rsa-sha1';
const RSA_SHA256 = 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256';
const SHA1 = 'http://www.w3.org/2000/09/xmldsig#sha1';
const SHA256 = 'http://www.w3.org/2001/04/xmlenc#sha256';

test('a signature or digest with SHA-1 is refused, though the IdP\'s key made it', async () => {
  for (const [alg, digest] of [[RSA_SHA1, SHA1], [RSA_SHA256, SHA1], [RSA_SHA1, SHA256]] as const) {
    const s = spec();
    const id = newId('a');
    const xml = responseXml(s, signWith(assertionXml(s, id), id, A, alg, digest));
    expect(await message(() => validate(xml))).toMatch(/is not accepted \(SHA-1 and weaker are refused\); set the IdP application's signature and digest algorithms to SHA-256/);
  }
  const s = spec();
  const id = newId('a');
  await expect(validate(responseXml(s, signWith(assertionXml(s, id), id, A, RSA_SHA256, SHA256)))).resolves.toMatchObject({ nameId: 'alice@example.com' });
});

test('an attribute value with U+FFFD (directory data decoded with the wrong charset) does not stop a sign-in', async () => {
  const a = await validate(signedResponse(spec({ attributes: { email: ['alice@example.com'], displayName: ['J\uFFFDrg M\uFFFDller'] } }), A));
  expect(a.attributes.displayName).toEqual(['J\uFFFDrg M\uFFFDller']);
});

test('a signature whose reference lists more transforms than signers use is refused, though the IdP\'s key made it', async () => {
  // node-saml's check runs each transform (a canonicalization: serialise and parse again) over the signed
  // element before it looks at the signature value.
  const s = spec();
  const id = newId('a');
  const sig = new SignedXml({ privateKey: A.key, publicCert: A.cert, signatureAlgorithm: RSA_SHA256, canonicalizationAlgorithm: 'http://www.w3.org/2001/10/xml-exc-c14n#' });
  const c14n = 'http://www.w3.org/TR/2001/REC-xml-c14n-20010315';
  sig.addReference({ xpath: `//*[@ID='${id}']`, digestAlgorithm: SHA256, transforms: ['http://www.w3.org/2000/09/xmldsig#enveloped-signature', c14n, c14n, c14n, c14n, c14n] });
  sig.computeSignature(assertionXml(s, id), { location: { reference: `//*[@ID='${id}']/*[local-name(.)='Issuer']`, action: 'after' } });
  expect(await message(() => validate(responseXml(s, sig.getSignedXml())))).toMatch(/signature is not accepted: its reference lists 6 transforms/);
});

test('an IdP certificate with a key under 2048 bits is not trusted: refused in metadata, and ignored if stored', async () => {
  const weak = signer('weak-1024');
  expect(() => parseIdpMetadata(idpMetadata({ entityId: 'https://idp.test', ssoUrl: 'https://idp.test/sso', certs: [weak] }), { now: new Date() })).toThrow(/1024-bit RSA key; keys that short can be broken/);
  // Beside a strong one, the weak certificate is dropped and the strong one kept.
  const both = parseIdpMetadata(idpMetadata({ entityId: 'https://idp.test', ssoUrl: 'https://idp.test/sso', certs: [weak, A] }), { now: new Date() });
  expect(both.signingCertificates.map((c) => c.pem.replace(/\s+/g, ''))).toEqual([A.cert.replace(/\s+/g, '')]);
  // Metadata whose own signature was made with such a key is read, and that signature counts for nothing
  // (as one by a certificate nobody trusts), instead of the document being refused as not verifying.
  const md = idpMetadata({ entityId: 'https://idp.test', ssoUrl: 'https://idp.test/sso', certs: [A] }).replace('<md:EntityDescriptor ', '<md:EntityDescriptor ID="_md1" ');
  const byWeak = parseIdpMetadata(signEnveloped(md, weak, "//*[@ID='_md1']", { reference: "//*[@ID='_md1']", action: 'prepend' }), { now: new Date() });
  expect({ signed: byWeak.signed, signedBy: byWeak.signedBy, certs: byWeak.signingCertificates.length }).toEqual({ signed: true, signedBy: null, certs: 1 });
  const byStrong = parseIdpMetadata(signEnveloped(md, signer('stranger'), "//*[@ID='_md1']", { reference: "//*[@ID='_md1']", action: 'prepend' }), { now: new Date() });
  expect(byStrong.signedBy).toMatch(/^[0-9A-F:]+$/);
  // A weak certificate stored before this rule never verifies a sign-in.
  const s = spec();
  const id = newId('a');
  const signed = responseXml(s, signElement(assertionXml(s, id), id, weak));
  expect(await message(() => validate(signed, exp({ certificates: [{ pem: weak.cert }] })))).toMatch(NOT_SIGNED);
});

test('when every certificate of the credential has expired, nothing verifies: a response signed by one is refused naming it, an unsigned one as not signed', async () => {
  const expired = expiredSigner();
  const only = exp({ certificates: [{ pem: expired.cert }] });
  expect(await message(() => validate(signedResponse(spec(), expired), only))).toMatch(/signed with the IdP's certificate "expired-idp", which expired on 2020-02-01/);
  expect(await message(() => validate(responseXml(spec(), assertionXml(spec())), only))).toMatch(NOT_SIGNED);
  expect(await message(() => validate(signedResponse(spec(), signer('stranger')), only))).toMatch(NOT_SIGNED);
});

test('node-saml checks the signature with the certificate that made it only (each check parses and digests the whole document again)', async () => {
  const others = [signer('idp-b'), signer('stranger'), signer('weak-1024')];
  const certificates = [...others, A].map((c) => ({ pem: c.cert }));
  const check = jest.spyOn(SignedXml.prototype, 'checkSignature');
  try {
    for (const what of ['assertion', 'response'] as const) {
      check.mockClear();
      await expect(validate(signedResponse(spec(), A, what), exp({ certificates }))).resolves.toMatchObject({ nameId: 'alice@example.com' });
      expect({ what, checks: check.mock.calls.length }).toEqual({ what, checks: 1 });
    }
    // Signed by a key no certificate holds: refused without node-saml's check (a forged post costs a parse),
    // and still answered in node-saml's order: a response to no outstanding login as such.
    check.mockClear();
    const certs = exp({ certificates: [...others.slice(0, 1), A].map((c) => ({ pem: c.cert })) });
    expect(await message(() => validate(signedResponse(spec({ inResponseTo: null }), signer('stranger'), 'assertion'), certs))).toMatch(NOT_SIGNED);
    expect(await message(() => validate(signedResponse(spec(), signer('stranger'), 'response'), certs))).toMatch(NOT_SIGNED);
    expect(await message(() => validate(signedResponse(spec({ inResponseTo: '_unknown' }), signer('stranger'), 'assertion'), certs))).toMatch(/did not start/);
    expect(check.mock.calls.length).toBe(0);
  } finally {
    check.mockRestore();
  }
});

test('a response over 256 KiB is refused before any parsing', async () => {
  const s = spec();
  const id = newId('a');
  const pad = `<saml:AttributeStatement><saml:Attribute Name="pad"><saml:AttributeValue>${'x'.repeat(300 * 1024)}</saml:AttributeValue></saml:Attribute></saml:AttributeStatement>`;
  const xml = responseXml(s, signElement(assertionXml(s, id).replace('</saml:Assertion>', `${pad}</saml:Assertion>`), id, A));
  let err: unknown;
  try {
    parseResponse(xml);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(AppError);
  expect({ status: (err as AppError).status, message: (err as Error).message }).toEqual({ status: 413, message: expect.stringMatching(/^Sign-in refused: SAMLResponse decodes to \d+ KiB; at most 256 KiB are accepted/) });
});

test('an assertion whose canonical form gains namespace declarations is read (it was a 500)', async () => {
  // Exclusive c14n copies the 26 prefixes the NameID uses onto it: 53 attributes on one element, over the
  // 50 the posted document may have per element.
  const prefixes = Array.from({ length: 26 }, (_, i) => `p${i}`);
  const s = spec();
  const id = newId('a');
  const assertion = assertionXml(s, id).replace('<saml:NameID ', `<saml:NameID${prefixes.map((p) => ` ${p}:a="1"`).join('')} `);
  const xml = signElement(responseXml(s, '__A__').replace('<samlp:Response ', `<samlp:Response${prefixes.map((p) => ` xmlns:${p}="urn:x:${p}"`).join('')} `).replace('__A__', assertion), id, A);
  await expect(validate(xml)).resolves.toMatchObject({ nameId: 'alice@example.com' });
});

test('attributes named like Object.prototype members are attributes like any other (a TypeError, 500, before)', async () => {
  const s = spec({ attributes: {} });
  const id = newId('a');
  const assertion = assertionXml(s, id).replace('</saml:Assertion>', '<saml:AttributeStatement><saml:Attribute Name="constructor" FriendlyName="mail"/><saml:Attribute Name="__proto__"><saml:AttributeValue>x@example.com</saml:AttributeValue></saml:Attribute></saml:AttributeStatement></saml:Assertion>');
  const a = await validate(responseXml(s, signElement(assertion, id, A)));
  expect(emailOf(a, ['mail'])).toEqual({ email: 'alice@example.com' });
  expect(emailOf(a, ['toString', 'hasOwnProperty'])).toEqual({ email: 'alice@example.com' });
  // Read from the signed assertion, not node-saml's profile (which dropped it), one named __proto__ is one too.
  expect(a.attributes.__proto__).toEqual(['x@example.com']);
  expect(emailOf(a, ['__proto__'])).toEqual({ email: 'x@example.com' });
});

test('a bearer confirmation not valid yet is refused, for an IdP-initiated response too (node-saml checks it only for a login\'s)', async () => {
  for (const inResponseTo of ['_req1', null]) {
    const s = spec({ inResponseTo });
    const id = newId('a');
    const later = new Date(Date.now() + 3600_000).toISOString();
    const assertion = assertionXml(s, id).replace('<saml:SubjectConfirmationData', `<saml:SubjectConfirmationData NotBefore="${later}"`);
    // (node-saml's own refusal of the login's reads as its generic expiry.)
    expect(await message(() => validate(responseXml(s, signElement(assertion, id, A))))).toMatch(inResponseTo ? /Sign-in refused/ : /subject confirmation is not valid before/);
  }
});

test('an Assertion outside the SAML namespace is refused (node-saml reads assertions by local name; the checks here by namespace)', async () => {
  const s = spec();
  const id = newId('a');
  const foreign = assertionXml(s, id)
    .replace('<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"', '<x:Assertion xmlns:x="urn:not-saml" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"')
    .replace('</saml:Assertion>', '</x:Assertion>');
  // Signed with SHA-1, which a SAML-namespace assertion would be refused for.
  const xml = responseXml(s, signWith(foreign, id, A, RSA_SHA1, SHA1));
  let err: unknown;
  try {
    parseResponse(xml);
  } catch (e) {
    err = e;
  }
  expect({ status: (err as AppError | undefined)?.status, message: (err as Error | undefined)?.message }).toEqual({ status: 400, message: expect.stringMatching(/outside the SAML 2.0 assertion namespace/) });
});

test('a response without an assertion, signed by a key the IdP does not list, is still answered by what it carries (an IdP status, an encrypted assertion)', async () => {
  const stranger = signer('stranger');
  const rid = newId('r');
  const failed = responseXml(spec({ responseId: rid }), '')
    .replace('<samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/>', '<samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Responder"/><samlp:StatusMessage>User is not assigned</samlp:StatusMessage>');
  expect(await message(() => validate(signElement(failed, rid, stranger)))).toMatch(/did not authenticate the user \(status Responder/);
  const eid = newId('r');
  const encrypted = signElement(responseXml(spec({ responseId: eid, encrypted: true }), ''), eid, stranger);
  expect(await message(() => validate(encrypted))).toMatch(/encrypted, which this service does not support/);
});

test('extra signatures are refused at once: more than one on an element (node-saml refuses it too), more than two in all', async () => {
  const s = spec();
  const id = newId('a');
  const signed = signElement(assertionXml(s, id), id, signer('stranger'));
  const signature = /<Signature[\s\S]*<\/Signature>/.exec(signed)?.[0] ?? '';
  const check = jest.spyOn(SignedXml.prototype, 'checkSignature');
  try {
    const twice = responseXml(s, signed.replace(signature, signature + signature));
    expect(await message(() => validate(twice))).toMatch(NOT_SIGNED);
    expect(check.mock.calls.length).toBe(0);
  } finally {
    check.mockRestore();
  }
  const decoys = responseXml(s, signed.replace('</saml:Assertion>', `${'<x:SignedInfo xmlns:x="urn:x"/>'.repeat(5)}</saml:Assertion>`));
  let err: unknown;
  try {
    parseResponse(decoys);
  } catch (e) {
    err = e;
  }
  expect({ status: (err as AppError | undefined)?.status, message: (err as Error | undefined)?.message }).toEqual({ status: 400, message: expect.stringMatching(/more than two XML signatures/) });
});

describe('what node-saml does not check (the profile\'s rules, checked here)', () => {
  const withAssertion = (s: ResponseSpec, edit: (xml: string) => string) => {
    const id = newId('a');
    return responseXml(s, signElement(edit(assertionXml(s, id)), id, A));
  };

  test('a signed Response addressed to another Destination is refused', async () => {
    const xml = signedResponse(spec({ destination: 'https://sp.test/sso/saml/c2/acs' }), A, 'response');
    expect(await message(() => validate(xml))).toMatch(/the response is addressed to "https:\/\/sp\.test\/sso\/saml\/c2\/acs"/);
  });

  test("the Response's own Issuer is checked too, not only the assertion's", async () => {
    // Only the first Issuer (the Response's) is replaced; the signed assertion's names the IdP.
    const xml = withAssertion(spec(), (a) => a).replace('<saml:Issuer>https://idp.test</saml:Issuer>', '<saml:Issuer>https://other.test</saml:Issuer>');
    expect(await message(() => validate(xml))).toMatch(/issued by "https:\/\/other\.test"/);
  });

  test.each([
    ['no Recipient', (a: string) => a.replace(/ Recipient="[^"]*"/, ''), /addressed to no Recipient/],
    ['the host\'s root ACS', (a: string) => a.replace(/ Recipient="[^"]*"/, ' Recipient="https://sp.test/acs"'), /addressed to "https:\/\/sp\.test\/acs"/],
    ['another credential\'s ACS', (a: string) => a.replace(/ Recipient="[^"]*"/, ' Recipient="https://sp.test/sso/saml/c2/acs"'), /addressed to "https:\/\/sp\.test\/sso\/saml\/c2\/acs"/],
  ])('a bearer confirmation addressed to %s is refused', async (_name, edit, why) => {
    expect(await message(() => validate(withAssertion(spec(), edit)))).toMatch(why);
  });

  test('an expired bearer confirmation is refused, for an IdP-initiated response too (node-saml checks its times only for a login\'s)', async () => {
    const past = new Date(Date.now() - 120_000).toISOString();
    // The Conditions stay valid; only the confirmation's NotOnOrAfter is past (beyond the 30 s skew).
    const xml = withAssertion(spec({ inResponseTo: null }), (a) => a.replace(/(<saml:SubjectConfirmationData[^>]*NotOnOrAfter=")[^"]+/, `$1${past}`));
    expect(await message(() => validate(xml))).toMatch(/subject confirmation expired at/);
  });

  test('a confirmation that is not bearer (holder-of-key) is no browser sign-in', async () => {
    const xml = withAssertion(spec(), (a) => a.replace('urn:oasis:names:tc:SAML:2.0:cm:bearer', 'urn:oasis:names:tc:SAML:2.0:cm:holder-of-key'));
    expect(await message(() => validate(xml))).toMatch(/no bearer SubjectConfirmation/);
  });

  test('a bearer confirmation valid from a few seconds ahead (an IdP clock ahead, within the skew) is accepted', async () => {
    const soon = new Date(Date.now() + 10_000).toISOString();
    const xml = withAssertion(spec({ inResponseTo: null }), (a) => a.replace('<saml:SubjectConfirmationData', `<saml:SubjectConfirmationData NotBefore="${soon}"`));
    expect((await validate(xml)).nameId).toBe('alice@example.com');
  });

  test('a bearer confirmation valid only from beyond the skew (90 s ahead, 30 s tolerated) is refused', async () => {
    const ahead = new Date(Date.now() + 90_000).toISOString();
    const xml = withAssertion(spec({ inResponseTo: null }), (a) => a.replace('<saml:SubjectConfirmationData', `<saml:SubjectConfirmationData NotBefore="${ahead}"`));
    expect(await message(() => validate(xml))).toMatch(/subject confirmation is not valid before/);
  });

  test('when the Conditions end before the bearer confirmation, the assertion is usable (and its id remembered) until the Conditions end, plus the skew', async () => {
    const conditionsEnd = new Date(Date.now() + 2 * 60_000);
    const s = spec({ notOnOrAfter: new Date(Date.now() + 10 * 60_000) });
    const xml = withAssertion(s, (a) => a.replace(/(<saml:Conditions NotBefore="[^"]*" NotOnOrAfter=")[^"]+/, `$1${conditionsEnd.toISOString()}`));
    expect((await validate(xml)).usableUntil).toBe(conditionsEnd.getTime() + 30_000);
  });

  test('the assertion is usable (and its id remembered) until its NotOnOrAfter plus the skew it is accepted within', async () => {
    const until = new Date(Date.now() + 5 * 60_000);
    const a = await validate(signedResponse(spec({ notOnOrAfter: until }), A));
    expect(a.usableUntil).toBe(until.getTime() + 30_000);
  });

  test('the request store failing (Redis down) while node-saml looks the login up is its 503, not a refusal of the response', async () => {
    const down = new AppError(503, 'sso_unavailable', 'the session store is down', { retryAfterSeconds: 2 });
    const requests: CacheProvider = { saveAsync: async () => null, removeAsync: async () => null, getAsync: async () => Promise.reject(down) };
    const err = await validate(signedResponse(spec(), A), exp({ requests })).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).status).toBe(503);
  });
});
