import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { MetadataErrorCode } from '../../src/metadata/errors';
import { parseIdpMetadata, type ParsedMetadata } from '../../src/metadata/parse-metadata';
import { SignedXml } from 'xml-crypto';
import { fixture, metadataRefusal, REFERENCE_NOW } from './support/fixtures';
import { idpMetadata, signer } from '../sso/support/idp-simulator';
import { signEnveloped } from '../../bench/metadata-documents';

const ENVELOPED = 'http://www.w3.org/2000/09/xmldsig#enveloped-signature';
const EXC_C14N = 'http://www.w3.org/2001/10/xml-exc-c14n#';
const C14N = 'http://www.w3.org/TR/2001/REC-xml-c14n-20010315';

const REDIRECT = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect';
const POST = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST';

function parse(xml: string, now = REFERENCE_NOW): ParsedMetadata {
  return parseIdpMetadata(xml, { now });
}

const refusal = metadataRefusal;

function ssoUrl(m: ParsedMetadata, binding: string): string[] {
  return m.ssoServices.filter((s) => s.binding === binding).map((s) => s.location);
}

// Expected values transcribed from test/fixtures/idp-metadata/MANIFEST.md.
interface ValidCase {
  file: string;
  entityId: string;
  redirect: string;
  post: string;
  certs: { notAfter: string; expired: boolean }[];
  signed: boolean;
  validUntil: string | null;
}

const VALID: ValidCase[] = [
  {
    file: 'okta.xml',
    entityId: 'http://www.okta.com/exk9u78i8aMSxvkV70h7',
    redirect: 'https://dev-599847.oktapreview.com/app/expresssaml2dev599847_esaml2sp_1/exk9u78i8aMSxvkV70h7/sso/saml',
    post: 'https://dev-599847.oktapreview.com/app/expresssaml2dev599847_esaml2sp_1/exk9u78i8aMSxvkV70h7/sso/saml',
    certs: [{ notAfter: '2027-03-06T04:55:33.000Z', expired: false }],
    signed: false,
    validUntil: null,
  },
  {
    file: 'azure-entra.xml',
    entityId: 'https://sts.windows.net/81c1df79-e153-4f9d-a101-8dcf04af6c2c/',
    redirect: 'https://login.microsoftonline.com/81c1df79-e153-4f9d-a101-8dcf04af6c2c/saml2',
    post: 'https://login.microsoftonline.com/81c1df79-e153-4f9d-a101-8dcf04af6c2c/saml2',
    certs: [
      { notAfter: '2025-09-28T09:17:32.000Z', expired: true },
      { notAfter: '2027-05-07T16:44:56.000Z', expired: false },
    ],
    signed: true,
    validUntil: null,
  },
  {
    file: 'google-workspace.xml',
    entityId: 'https://accounts.google.com/o/saml2?idpid=C01yz0nbv',
    redirect: 'https://accounts.google.com/o/saml2/idp?idpid=C01yz0nbv',
    post: 'https://accounts.google.com/o/saml2/idp?idpid=C01yz0nbv',
    certs: [{ notAfter: '2030-06-03T14:29:25.000Z', expired: false }],
    signed: false,
    validUntil: '2030-06-03T14:29:25.000Z',
  },
  {
    file: 'keycloak.xml',
    entityId: 'https://lxapocd5.transplace.com:8443/auth/realms/SpringBootKeycloak',
    redirect: 'https://lxapocd5.transplace.com:8443/auth/realms/SpringBootKeycloak/protocol/saml',
    post: 'https://lxapocd5.transplace.com:8443/auth/realms/SpringBootKeycloak/protocol/saml',
    certs: [{ notAfter: '2030-12-10T18:35:11.000Z', expired: false }],
    signed: false,
    validUntil: null,
  },
  {
    file: 'adfs.xml',
    entityId: 'http://adfs-testad.testad.local/adfs/services/trust',
    redirect: 'https://adfs-testad.testad.local/adfs/ls/',
    post: 'https://adfs-testad.testad.local/adfs/ls/',
    certs: [{ notAfter: '2029-10-27T09:42:32.000Z', expired: false }],
    signed: true,
    validUntil: null,
  },
  {
    file: 'auth0.xml',
    entityId: 'urn:dev-tyj7qyzz.auth0.com',
    redirect: 'https://dev-tyj7qyzz.auth0.com/samlp/AX3jRN4ECnojiEepVjvM7yVCEcpVX6w6',
    post: 'https://dev-tyj7qyzz.auth0.com/samlp/AX3jRN4ECnojiEepVjvM7yVCEcpVX6w6',
    certs: [{ notAfter: '2032-12-03T13:21:44.000Z', expired: false }],
    signed: false,
    validUntil: null,
  },
  {
    file: 'simplesamlphp.xml',
    entityId: 'https://guest.login.utexas.edu/idp',
    redirect: 'https://guest.login.utexas.edu/simplesaml/module.php/saml/idp/singleSignOnService',
    post: 'https://guest.login.utexas.edu/simplesaml/module.php/saml/idp/singleSignOnService',
    certs: [{ notAfter: '2033-08-15T21:04:27.000Z', expired: false }],
    signed: false,
    validUntil: null,
  },
  {
    file: 'shibboleth-aggregate-entities.xml',
    entityId: 'https://idp.testshib.org/idp/shibboleth',
    redirect: 'https://idp.testshib.org/idp/profile/SAML2/Redirect/SSO',
    post: 'https://idp.testshib.org/idp/profile/SAML2/POST/SSO',
    certs: [{ notAfter: '2036-08-23T21:20:54.000Z', expired: false }],
    signed: false,
    validUntil: null,
  },
  {
    file: 'two-signing-certs.xml',
    entityId: 'https://accounts.google.com/o/saml2?idpid=C03ddq7te',
    redirect: 'https://accounts.google.com/o/saml2/idp?idpid=C03ddq7te',
    post: 'https://accounts.google.com/o/saml2/idp?idpid=C03ddq7te',
    certs: [
      { notAfter: '2028-10-09T20:03:19.000Z', expired: false },
      { notAfter: '2028-10-09T20:04:55.000Z', expired: false },
    ],
    signed: false,
    validUntil: '2028-10-09T20:03:19.000Z',
  },
];

const INVALID: { file: string; code: MetadataErrorCode; message: RegExp }[] = [
  { file: 'malformed.xml', code: 'not_xml', message: /not well-formed XML/ },
  { file: 'html-error-page.xml', code: 'not_xml', message: /HTML page titled "Error 404 Not Found"/ },
  { file: 'sp-metadata-not-idp.xml', code: 'sp_metadata', message: /service-provider \(SP\) metadata for "https:\/\/accounts\.google\.com\/o\/saml1"/ },
  { file: 'no-sso-service.xml', code: 'no_sso_service', message: /no SingleSignOnService/ },
  { file: 'onelogin-expired-cert.xml', code: 'certificate_expired', message: /expired on 2021-08-05/ },
  { file: 'signed-aggregate-expired-validuntil.xml', code: 'metadata_expired', message: /validUntil is 2017-04-22T12:17:22/ },
  { file: 'signed-metadata-bad-signature.xml', code: 'bad_signature', message: /digest mismatch/ },
];

describe('MANIFEST verdicts at 2026-11-23', () => {
  it('covers every fixture in the directory', () => {
    const files = readdirSync(path.resolve(__dirname, '../fixtures/idp-metadata')).filter((f) => f.endsWith('.xml'));
    expect([...VALID.map((v) => v.file), ...INVALID.map((v) => v.file)].sort()).toEqual(files.sort());
  });

  it.each(VALID)('accepts $file', (c) => {
    const m = parse(fixture(c.file));
    expect(m.entityId).toBe(c.entityId);
    expect(ssoUrl(m, REDIRECT)).toEqual([c.redirect]);
    expect(ssoUrl(m, POST)).toEqual([c.post]);
    expect(m.ssoServices.every((s) => s.binding === REDIRECT || s.binding === POST)).toBe(true);
    expect(m.signingCertificates.map((cert) => ({ notAfter: cert.notAfter, expired: cert.expired }))).toEqual(c.certs);
    expect(m.signed).toBe(c.signed);
    expect(m.validUntil).toBe(c.validUntil);
  });

  it.each(INVALID)('refuses $file with $code', (c) => {
    const err = refusal(fixture(c.file));
    expect(err.code).toBe(c.code);
    expect(err.message).toMatch(c.message);
  });
});

describe('sign-on endpoints', () => {
  // The URL parser keeps ; , ' and " in a host; the origin of the one used goes into a CSP header.
  it.each([
    'https://idp.example;sandbox;upgrade-insecure-requests/sso',
    "https://idp.example,evil'/sso",
  ])('skips an endpoint whose host is not a host name (%s), keeping the others', (bad) => {
    const good = 'https://dev-599847.oktapreview.com/app/expresssaml2dev599847_esaml2sp_1/exk9u78i8aMSxvkV70h7/sso/saml';
    const doc = fixture('okta.xml').replace(`Binding="${POST}" Location="${good}"`, `Binding="${POST}" Location="${bad.replace(/'/g, '&apos;')}"`);
    expect(doc).toContain(bad.split('/')[2]?.replace(/'/g, '&apos;'));
    const m = parse(doc);
    expect(ssoUrl(m, POST)).toEqual([]);
    expect(ssoUrl(m, REDIRECT)).toEqual([good]);
  });

  it('keeps IP-address, port and trailing-dot hosts', () => {
    for (const host of ['192.0.2.10:8443', '[2001:db8::1]', 'idp.example.com.']) {
      const location = `https://${host}/sso`;
      const doc = fixture('okta.xml').replace(/Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="[^"]*"/, `Binding="${POST}" Location="${location}"`);
      expect(ssoUrl(parse(doc), POST)).toEqual([location]);
    }
  });
});

describe('signatures', () => {
  it('accepts Entra metadata although the signer certificate expired, flagging the expired signing cert', () => {
    const m = parse(fixture('azure-entra.xml'));
    expect(m.signed).toBe(true);
    expect(m.signingCertificates.filter((c) => !c.expired)).toHaveLength(1);
  });

  it('refuses adfs.xml with one character changed inside the signed content', () => {
    const original = fixture('adfs.xml');
    const tampered = original.replace('Location="https://adfs-testad.testad.local/adfs/ls/"', 'Location="https://adfs-testad.testad.local/adfs/ls/x"');
    expect(tampered).not.toBe(original);
    expect(refusal(tampered).code).toBe('bad_signature');
  });

  it('refuses adfs.xml with a changed SignatureValue', () => {
    const original = fixture('adfs.xml');
    const tampered = original.replace(/<ds:SignatureValue>(.)/, (_m, c: string) => `<ds:SignatureValue>${c === 'A' ? 'B' : 'A'}`);
    expect(tampered).not.toBe(original);
    expect(refusal(tampered).code).toBe('bad_signature');
  });

  it('refuses a signature that references an inner element instead of the root', () => {
    const original = fixture('adfs.xml');
    const moved = original
      .replace(/<ds:Reference URI="#[^"]+"/, '<ds:Reference URI="#inner"')
      .replace('<IDPSSODescriptor ', '<IDPSSODescriptor ID="inner" ');
    const err = refusal(moved);
    expect(err.code).toBe('bad_signature');
    expect(err.message).toMatch(/cover the whole document/);
  });

  it('refuses a signature whose reference lists more transforms than signers use, before running them', () => {
    // Signed with a valid signature of its own key (a metadata signature is checked with the certificate it
    // carries): xml-crypto runs each canonicalization over the whole document before the signature value.
    const md = idpMetadata({ entityId: 'https://idp.test', ssoUrl: 'https://idp.test/sso', certs: [signer('idp-a')] }).replace('<md:EntityDescriptor ', '<md:EntityDescriptor ID="_md1" ');
    const sign = (transforms: string[]) => {
      const by = signer('stranger');
      const sig = new SignedXml({ privateKey: by.key, publicCert: by.cert, signatureAlgorithm: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256', canonicalizationAlgorithm: EXC_C14N });
      sig.addReference({ xpath: "//*[@ID='_md1']", digestAlgorithm: 'http://www.w3.org/2001/04/xmlenc#sha256', transforms });
      sig.computeSignature(md, { location: { reference: "//*[@ID='_md1']", action: 'prepend' } });
      return sig.getSignedXml();
    };
    expect(parse(sign([ENVELOPED, EXC_C14N])).signed).toBe(true);
    expect(parse(sign([ENVELOPED])).signed).toBe(true);
    for (const transforms of [[ENVELOPED, ...Array<string>(6).fill(C14N)], [ENVELOPED, ENVELOPED, EXC_C14N]]) {
      const err = refusal(sign(transforms));
      expect(err.code).toBe('bad_signature');
      expect(err.message).toMatch(/its reference lists \d+ transforms, where signers use an enveloped-signature transform and one canonicalization/);
    }
    const xpathTransform = sign([ENVELOPED, EXC_C14N]).replace(`<Transform Algorithm="${EXC_C14N}"`, '<Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"');
    const err = refusal(xpathTransform);
    expect(err.message).toMatch(/uses a transform that is not accepted \(http:\/\/www.w3.org\/TR\/1999\/REC-xpath-19991116\)/);
  });

  it('refuses a document whose ID is duplicated to smuggle in a second copy (signature wrapping)', () => {
    const original = fixture('adfs.xml');
    const id = (/<EntityDescriptor ID="([^"]+)"/.exec(original) ?? ['', ''])[1];
    const wrapped = original.replace('<IDPSSODescriptor ', `<Extensions><EntityDescriptor ID="${id}" entityID="x"/></Extensions><IDPSSODescriptor `);
    expect(refusal(wrapped).code).toBe('bad_signature');
  });
});

describe('XML safety', () => {
  it('refuses an entity-expansion bomb without expanding it', () => {
    const bomb =
      '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>' +
      '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="&lol2;"/>';
    expect(refusal(bomb).code).toBe('doctype_not_allowed');
  });

  it('refuses an external entity', () => {
    const xxe =
      '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>' +
      '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="&xxe;"/>';
    expect(refusal(xxe).code).toBe('doctype_not_allowed');
  });

  it('refuses any DOCTYPE, even on otherwise valid metadata', () => {
    const okta = fixture('okta.xml').replace('<md:EntityDescriptor', '<!DOCTYPE md:EntityDescriptor>\n<md:EntityDescriptor');
    expect(refusal(okta).code).toBe('doctype_not_allowed');
  });

  it.each([
    ['', /empty/],
    ['{"metadata": true}', /JSON/],
    ['Service Unavailable', /does not start with a tag/],
    ['<a><b></a>', /not well-formed/],
  ])('refuses %j as not XML', (text, message) => {
    const err = refusal(text);
    expect(err.code).toBe('not_xml');
    expect(err.message).toMatch(message);
  });

  // The parser's own wording (xmldom's "HierarchyRequestError: Only one element can be added…", "element parse
  // error: Error: attribute value no end '"' match") reached the tenant; said in the service's words now.
  it.each([
    ['a second root element', '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="a"></md:EntityDescriptor><x/>', /: there is more after its root element ends \(another element, or text\)\.$/],
    ['text after the root', '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="a"/>junk', /there is more after its root element ends/],
    ['an attribute cut off', '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="a', /: an attribute value is not closed \(a quote is missing\)\.$/],
    ['an undefined entity', '<a b="x&foo;"/>', /: it uses the entity &foo; which XML does not define/],
    ['a mismatched end tag', '<a><b></a>', /: the element <b> is closed by <\/a>\.$/],
    ['a repeated attribute', '<a b="1" b="2"/>', /: the attribute b appears twice on one element\.$/],
    ['a bad element name', '<1a/>', /: "1a" is not a valid element name\.$/],
    ['a < in an attribute', '<a b="x<y"/>', /: an attribute value contains "<" \(XML requires &lt;\)\.$/],
  ])('says what is wrong with %s in its own words', (_what, text, message) => {
    const err = refusal(text);
    expect({ code: err.code, message: err.message }).toEqual({ code: 'not_xml', message: expect.stringMatching(message) });
    expect(err.message).not.toMatch(/Error:|HierarchyRequestError|element parse error|no end '"' match/);
  });

  it('refuses an unquoted attribute value or a stray quote in a start tag: the limits and the parser must read tags alike', () => {
    // xmldom reads `b=x"y` as a value (a warning) and builds what follows as elements; the limits' scan took
    // the '"' for a quoted value up to the next '"', so 100,000 elements nested 5,000 deep went uncounted.
    const okta = fixture('okta.xml');
    const hidden = "<c k='v'/>".repeat(3000) + '<d>'.repeat(100) + '</d>'.repeat(100);
    const smuggled = okta.replace('<md:IDPSSODescriptor', `<md:Extensions><x b=x"y>${hidden}<w>"</w></x></md:Extensions><md:IDPSSODescriptor`);
    for (const [xml, why] of [
      [smuggled, /an attribute value without quotes in a start tag/],
      [okta.replace('<md:IDPSSODescriptor', '<md:Extensions><x "b"="1"/></md:Extensions><md:IDPSSODescriptor'), /a quote where no attribute value starts/],
      [okta.replace('<md:IDPSSODescriptor', '<md:Extensions><x b=="1"/></md:Extensions><md:IDPSSODescriptor'), /an attribute without a quoted value/],
    ] as const) {
      const err = refusal(xml);
      expect({ code: err.code, message: err.message }).toEqual({ code: 'not_xml', message: expect.stringMatching(why) });
    }
  });

  it('reads U+FFFD like any other character (a Latin-1 name fetched as UTF-8 becomes one), though xmldom warns about it', () => {
    const okta = fixture('okta.xml').replace('<md:IDPSSODescriptor', '<md:Organization><md:OrganizationName xml:lang="de">M\uFFFDller GmbH</md:OrganizationName><md:OrganizationDisplayName xml:lang="de">M\uFFFDller</md:OrganizationDisplayName><md:OrganizationURL xml:lang="de">https://example.com</md:OrganizationURL></md:Organization><md:IDPSSODescriptor');
    expect(parse(okta).entityId).toBe('http://www.okta.com/exk9u78i8aMSxvkV70h7');
  });

  it('refuses what xmldom only warns about (attributes without a space between them)', () => {
    const err = refusal(fixture('okta.xml').replace('<md:IDPSSODescriptor', '<md:Extensions><x a="1"b="2"/></md:Extensions><md:IDPSSODescriptor'));
    expect(err.code).toBe('not_xml');
    expect(err.message).toMatch(/not well-formed XML/);
  });

  it('forgives blank lines before the XML declaration', () => {
    expect(parse(`\r\n\n${fixture('okta.xml')}`).entityId).toBe('http://www.okta.com/exk9u78i8aMSxvkV70h7');
  });

  it('refuses well-formed XML that is not SAML metadata', () => {
    const err = refusal('<feed xmlns="http://www.w3.org/2005/Atom"/>');
    expect(err.code).toBe('not_metadata');
    expect(err.message).toMatch(/<feed>/);
  });

  it('recognises well-formed XHTML as an HTML page', () => {
    const err = refusal('<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Sign in</title></head><body/></html>');
    expect(err.message).toMatch(/HTML page titled "Sign in"/);
  });
});

describe('validity and content rules', () => {
  const okta = fixture('okta.xml');
  const withRootAttrs = (attrs: string): string => okta.replace('<md:EntityDescriptor ', `<md:EntityDescriptor ${attrs} `);

  it('refuses metadata whose validUntil has passed, naming the date', () => {
    const err = refusal(withRootAttrs('validUntil="2026-11-22T23:59:59Z"'));
    expect(err.code).toBe('metadata_expired');
    expect(err.message).toMatch(/2026-11-22T23:59:59/);
  });

  it('counts a validUntil of this very instant as passed (the document is valid until then, not at it)', () => {
    expect(REFERENCE_NOW.toISOString()).toBe('2026-11-23T00:00:00.000Z');
    expect(refusal(withRootAttrs('validUntil="2026-11-23T00:00:00Z"')).code).toBe('metadata_expired');
    expect(parse(withRootAttrs('validUntil="2026-11-23T00:00:00.001Z"')).validUntil).toBe('2026-11-23T00:00:00.001Z');
  });

  it('reports the earliest validUntil and the shortest cacheDuration of the entity and its IdP role', () => {
    const xml = okta
      .replace('<md:EntityDescriptor ', '<md:EntityDescriptor validUntil="2027-01-01T00:00:00Z" cacheDuration="PT6H" ')
      .replace('<md:IDPSSODescriptor ', '<md:IDPSSODescriptor validUntil="2026-12-01T00:00:00Z" cacheDuration="PT1H" ');
    expect(parse(xml)).toMatchObject({ validUntil: '2026-12-01T00:00:00.000Z', cacheDuration: 'PT1H' });
  });

  it("never trusts the keys of the entity's other roles: an SP role's signing certificate signs no IdP sign-in", () => {
    const bare = signer('stranger').cert.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
    const sp =
      '<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing">' +
      `<ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>${bare}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>` +
      `<md:AssertionConsumerService Binding="${POST}" Location="https://sp.example/acs" index="0"/></md:SPSSODescriptor>`;
    const fingerprints = (xml: string) => parse(xml).signingCertificates.map((c) => c.fingerprintSha256);
    expect(fingerprints(okta.replace('</md:IDPSSODescriptor>', `</md:IDPSSODescriptor>${sp}`))).toEqual(fingerprints(okta));
  });

  it('refuses more than 20 signing certificates (counted before duplicates are dropped: each is parsed)', () => {
    const kd = /<md:KeyDescriptor use="signing">[\s\S]*?<\/md:KeyDescriptor>/.exec(okta)?.[0] ?? '';
    expect(kd).not.toBe('');
    expect(() => parse(okta.replace(kd, kd.repeat(21)))).toThrow(/lists 21 signing certificates; at most 20/);
    expect(parse(okta.replace(kd, kd.repeat(20))).signingCertificates).toHaveLength(1);
  });

  it('refuses signing certificates of more than 64 KiB of PEM in all, and takes what fits', () => {
    // Certificates made large by a long subjectAltName list, each under the 32 KiB one certificate may have:
    // ~24 KiB of PEM each, so two fit and three do not.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'big-cert-'));
    const bigCert = (n: number): string => {
      const names = Array.from({ length: 850 }, (_, i) => `DNS:h${i}.c${n}.example.com`).join(',');
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '3650', '-subj', `/CN=big${n}`, '-addext', `subjectAltName=${names}`, '-keyout', `k${n}.pem`, '-out', `c${n}.pem`], { cwd: dir, stdio: 'ignore' });
      return readFileSync(path.join(dir, `c${n}.pem`), 'utf8').replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
    };
    try {
      const [a, b, c] = [bigCert(1), bigCert(2), bigCert(3)];
      const kd = /<md:KeyDescriptor use="signing">[\s\S]*?<\/md:KeyDescriptor>/.exec(okta)?.[0] ?? '';
      const withCert = (der: string) => kd.replace(/<ds:X509Certificate>[\s\S]*?<\/ds:X509Certificate>/, `<ds:X509Certificate>${der}</ds:X509Certificate>`);
      const two = parse(okta.replace(kd, withCert(a) + withCert(b))).signingCertificates;
      expect(two).toHaveLength(2);
      const pemChars = two.reduce((n, cert) => n + cert.pem.length, 0);
      expect(pemChars).toBeLessThan(64 * 1024);
      expect(pemChars * 1.5).toBeGreaterThan(64 * 1024);
      const err = refusal(okta.replace(kd, withCert(a) + withCert(b) + withCert(c)));
      expect({ code: err.code, message: err.message }).toEqual({
        code: 'no_signing_certificate',
        message: expect.stringMatching(/lists signing certificates of \d+ KiB in all; at most 64 KiB are accepted/),
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('takes an entityID of 1,024 characters, the most SAML allows, and refuses one of 1,025', () => {
    const withEntityId = (length: number) => okta.replace(/entityID="[^"]*"/, `entityID="urn:${'e'.repeat(length - 4)}"`);
    expect(parse(withEntityId(1024)).entityId).toHaveLength(1024);
    const err = refusal(withEntityId(1025));
    expect({ code: err.code, message: err.message }).toEqual({ code: 'not_metadata', message: expect.stringMatching(/longer than the 1024 characters/) });
  });

  it('stores an endpoint listed twice once, so repeats take none of the eight places of distinct ones', () => {
    const post = /<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"[^>]*>/.exec(okta)?.[0] ?? '';
    expect(post).not.toBe('');
    const others = Array.from({ length: 7 }, (_, i) => `https://idp.example/sso/${i}`);
    const xml = okta.replace(post, post.repeat(3) + others.map((l) => `<md:SingleSignOnService Binding="${POST}" Location="${l}"/>`).join(''));
    const services = parse(xml).ssoServices.filter((s) => s.binding === POST).map((s) => s.location);
    expect(services).toEqual([/Location="([^"]+)"/.exec(post)?.[1], ...others]);
  });

  it('accepts metadata whose validUntil is still ahead and reports it', () => {
    expect(parse(withRootAttrs('validUntil="2026-11-24T00:00:00Z"')).validUntil).toBe('2026-11-24T00:00:00.000Z');
  });

  it('uses the clock it is given: google-workspace.xml is stale after its validUntil', () => {
    const err = refusal(fixture('google-workspace.xml'), new Date('2030-06-04T00:00:00Z'));
    expect(err.code).toBe('metadata_expired');
    expect(err.message).toMatch(/2030-06-03/);
  });

  it('refuses when every signing certificate has expired, listing their dates', () => {
    const err = refusal(fixture('azure-entra.xml'), new Date('2027-06-01T00:00:00Z'));
    expect(err.code).toBe('certificate_expired');
    expect(err.message).toMatch(/2025-09-28/);
    expect(err.message).toMatch(/2027-05-07/);
  });

  it('keeps the raw cacheDuration', () => {
    expect(parse(withRootAttrs('cacheDuration="PT6H"')).cacheDuration).toBe('PT6H');
    expect(parse(okta).cacheDuration).toBeNull();
  });

  it('refuses an IdP whose only SSO endpoints use other bindings, naming them', () => {
    const soapOnly = okta.replace(/bindings:HTTP-(POST|Redirect)/g, 'bindings:SOAP');
    const err = refusal(soapOnly);
    expect(err.code).toBe('no_sso_service');
    expect(err.message).toMatch(/SOAP/);
  });

  it('refuses an IdP with only an encryption key', () => {
    const err = refusal(okta.replace('<md:KeyDescriptor use="signing">', '<md:KeyDescriptor use="encryption">'));
    expect(err.code).toBe('no_signing_certificate');
    expect(err.message).toMatch(/only has encryption keys/);
  });

  it('refuses an IdP whose signing certificate is garbage', () => {
    const garbled = okta.replace(/<ds:X509Certificate>[^<]+</, '<ds:X509Certificate>bm90IGEgY2VydA==<');
    const err = refusal(garbled);
    expect(err.code).toBe('no_signing_certificate');
    expect(err.message).toMatch(/not an X\.509 certificate/);
  });

  it('refuses a document holding several IdPs, naming them', () => {
    const aggregate = fixture('signed-aggregate-expired-validuntil.xml')
      .replace(/<ds:Signature[\s\S]*?<\/ds:Signature>/, '')
      .replace(/ validUntil="[^"]+"/, '');
    const err = refusal(aggregate);
    expect(err.code).toBe('multiple_idps');
    expect(err.message).toMatch(/2 identity providers/);
    expect(err.message).toContain('https://si-saai.ualg.pt/idp/shibboleth');
    expect(err.message).toContain('https://idp.fccn.pt/idp/shibboleth');
  });
});

describe('an EntityDescriptor signed on its own inside an unsigned EntitiesDescriptor', () => {
  const A = signer('idp-a');
  const signedEntity = () => {
    const entity = idpMetadata({ entityId: 'https://idp.wrapped.test', ssoUrl: 'https://idp.wrapped.test/sso', certs: [A] })
      .replace(/^<\?xml[^>]*>/, '')
      .replace('<md:EntityDescriptor ', '<md:EntityDescriptor ID="_wrapped1" ');
    return signEnveloped(entity, A, "//*[@ID='_wrapped1']", { reference: "//*[@ID='_wrapped1']", action: 'prepend' });
  };
  const wrap = (inner: string) => `<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" Name="group">${inner}</md:EntitiesDescriptor>`;

  test('is verified and counts as signed', () => {
    const m = parse(wrap(signedEntity()));
    expect({ signed: m.signed, signedBy: m.signedBy, sso: ssoUrl(m, REDIRECT) }).toEqual({ signed: true, signedBy: expect.stringMatching(/^[0-9a-f:]+$/i), sso: ['https://idp.wrapped.test/sso'] });
  });

  test('changed after signing, it is refused (it was read as unsigned)', () => {
    const tampered = wrap(signedEntity().replace(/Location="https:\/\/idp\.wrapped\.test\/sso"/g, 'Location="https://evil.example/sso"'));
    expect(tampered).toContain('evil.example');
    expect(refusal(tampered).code).toBe('bad_signature');
  });

  test('a signature by reference to the whole document ("") on the inner entity is no signature of it', () => {
    const entity = idpMetadata({ entityId: 'https://idp.wrapped.test', ssoUrl: 'https://idp.wrapped.test/sso', certs: [A] }).replace(/^<\?xml[^>]*>/, '');
    const signedWhole = signEnveloped(entity, A, '/*', { reference: '/*', action: 'prepend' }).replace(/URI="[^"]*"/, 'URI=""');
    expect(refusal(wrap(signedWhole)).code).toBe('bad_signature');
  });
});
