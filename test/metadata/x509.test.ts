import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MetadataError } from '../../src/metadata/errors';
import { parseCertificate } from '../../src/metadata/x509';
import { fixture } from './support/fixtures';
import { TEST_TLS_CERT } from './support/tls-material';

const OKTA_CERT_B64 = (/<ds:X509Certificate>([^<]+)</.exec(fixture('okta.xml')) ?? ['', ''])[1];

function refusal(text: string): MetadataError {
  try {
    parseCertificate(text);
  } catch (err) {
    if (err instanceof MetadataError) return err;
    throw err;
  }
  throw new Error('parseCertificate accepted the input');
}

describe('parseCertificate', () => {
  it('reads a certificate whose subject and issuer are empty (named in its subjectAltName only; it threw a TypeError)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'x509-'));
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30', '-subj', '/', '-addext', 'subjectAltName=DNS:idp.example.com', '-keyout', 'k.pem', '-out', 'c.pem'], { cwd: dir, stdio: 'ignore' });
      const info = parseCertificate(fs.readFileSync(path.join(dir, 'c.pem'), 'utf8'));
      expect({ subject: info.subject, issuer: info.issuer }).toEqual({ subject: '', issuer: '' });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads bare base64 DER with line breaks, as found in metadata', () => {
    expect(OKTA_CERT_B64).toContain('\n');
    const info = parseCertificate(OKTA_CERT_B64);
    expect(info.subject).toContain('CN=dev-599847');
    expect(info.subject).toContain('O=Okta');
    expect(info.notAfter).toBe('2027-03-06T04:55:33.000Z');
    expect(info.notBefore).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.000Z$/);
    expect(info.pem).toMatch(/^-----BEGIN CERTIFICATE-----\n(?:[A-Za-z0-9+/=]{1,64}\n)+-----END CERTIFICATE-----\n$/);
  });

  it('reports the SHA-256 fingerprint of the DER bytes', () => {
    const der = Buffer.from(OKTA_CERT_B64.replace(/\s+/g, ''), 'base64');
    const expected = createHash('sha256').update(der).digest('hex').toUpperCase().match(/../g)?.join(':');
    expect(parseCertificate(OKTA_CERT_B64).fingerprintSha256).toBe(expected);
  });

  it('reads a PEM block, with surrounding whitespace, to the same certificate', () => {
    const fromBare = parseCertificate(OKTA_CERT_B64);
    const fromPem = parseCertificate(`\n  ${fromBare.pem}  \n`);
    expect(fromPem).toEqual(fromBare);
    expect(parseCertificate(TEST_TLS_CERT).subject).toBe('CN=localhost');
    expect(parseCertificate(TEST_TLS_CERT).notAfter).toBe('2126-10-30T15:26:48.000Z');
  });

  it('refuses bytes after the certificate in one base64 body: a second certificate, or junk (OpenSSL reads the first and ignores them)', () => {
    const der = Buffer.from(OKTA_CERT_B64.replace(/\s+/g, ''), 'base64');
    const other = Buffer.from(TEST_TLS_CERT.replace(/-----[A-Z ]+-----|\s+/g, ''), 'base64');
    for (const bytes of [Buffer.concat([der, other]), Buffer.concat([der, Buffer.from('JUNKJUNKJUNK')])]) {
      const b64 = bytes.toString('base64');
      const pem = `-----BEGIN CERTIFICATE-----\n${b64.match(/.{1,64}/g)?.join('\n')}\n-----END CERTIFICATE-----\n`;
      for (const text of [b64, pem]) {
        const err = refusal(text);
        expect(err.code).toBe('invalid_certificate');
        expect(err.message).toContain(`${bytes.length - der.length} byte(s) after the certificate`);
      }
    }
    expect(parseCertificate(der.toString('base64')).subject).toContain('CN=dev-599847');
  });

  it('says "not base64" for text that is not base64', () => {
    const err = refusal('this is not a certificate!');
    expect(err.code).toBe('invalid_certificate');
    expect(err.message).toMatch(/not base64/);
  });

  it('says "not an X.509 certificate" for base64 of something else', () => {
    const err = refusal(Buffer.from('hello world, definitely not DER').toString('base64'));
    expect(err.code).toBe('invalid_certificate');
    expect(err.message).toMatch(/not an X\.509 certificate: /);
  });

  it('names the wrong PEM type, e.g. a private key pasted by mistake', () => {
    const err = refusal('-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n');
    expect(err.message).toMatch(/found "BEGIN PRIVATE KEY"/);
  });

  it('names the two characters "\\n" of a certificate copied from a .env line or an escaped string (it said "text outside its block")', () => {
    for (const text of [TEST_TLS_CERT.trim().replace(/\n/g, '\\n'), TEST_TLS_CERT.trim().replace(/\n/g, '\\r\\n')]) {
      const err = refusal(text);
      expect(err.code).toBe('invalid_certificate');
      expect(err.message).toMatch(/a backslash escape \("\\n" or "\\r", two characters\) where its line breaks belong/);
    }
  });

  it('refuses empty input and a truncated PEM block', () => {
    expect(refusal('   ').message).toMatch(/empty/);
    expect(refusal('-----BEGIN CERTIFICATE-----\nMIIB').message).toMatch(/without a matching "-----END/);
  });
});
