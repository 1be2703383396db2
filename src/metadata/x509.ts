import { X509Certificate } from 'node:crypto';
import { MetadataError } from './errors';

export interface CertificateInfo {
  pem: string;
  subject: string;
  issuer: string;
  /** ISO 8601, UTC */
  notBefore: string;
  /** ISO 8601, UTC */
  notAfter: string;
  /** SHA-256 of the DER, upper-case hex pairs separated by colons (as openssl prints it) */
  fingerprintSha256: string;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

function base64Body(text: string): string {
  const trimmed = text.trim();
  if (trimmed === '') throw new MetadataError('invalid_certificate', 'The certificate is empty.');
  let body = trimmed;
  if (trimmed.includes('-----BEGIN')) {
    const block = PEM_BLOCK.exec(trimmed);
    if (!block) {
      throw new MetadataError(
        'invalid_certificate',
        'The certificate has a "-----BEGIN" line without a matching "-----END" line.',
      );
    }
    if (block[1] !== 'CERTIFICATE') {
      throw new MetadataError(
        'invalid_certificate',
        `Expected a "BEGIN CERTIFICATE" block but found "BEGIN ${block[1]}".`,
      );
    }
    body = block[2];
  }
  const compact = body.replace(/\s+/g, '');
  if (!BASE64.test(compact) || compact.length % 4 === 1) {
    throw new MetadataError(
      'invalid_certificate',
      'The certificate is not base64: expected a PEM block or the base64 text of a DER certificate.',
    );
  }
  return compact;
}

function toPem(base64: string): string {
  const lines = base64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`;
}

/**
 * Node 20's X509Certificate only gives OpenSSL's text form ("Mar  6 04:55:33 2027 GMT");
 * parse it explicitly rather than trusting Date's lenient string parsing.
 */
function opensslDateToIso(text: string): string {
  const m = /^([A-Z][a-z]{2}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) (\d{4}) GMT$/.exec(text.trim());
  const month = m ? MONTHS.indexOf(m[1]) : -1;
  if (!m || month < 0) {
    throw new MetadataError('invalid_certificate', `The certificate has an unreadable validity date "${text}".`);
  }
  const ms = Date.UTC(Number(m[6]), month, Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5]));
  return new Date(ms).toISOString();
}

function oneLineName(name: string): string {
  return name.split('\n').filter((part) => part !== '').join(', ');
}

/**
 * Parses a certificate given as PEM or as bare base64 DER (the form used inside
 * <ds:X509Certificate>), with any whitespace. Validity dates are reported, not judged:
 * whether an expired certificate is acceptable depends on what it is used for.
 */
export function parseCertificate(text: string): CertificateInfo {
  const base64 = base64Body(text);
  const der = Buffer.from(base64, 'base64');
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch (err) {
    // Node tries PEM before DER, so its message is often about PEM and would only mislead.
    const detail = err instanceof Error ? err.message.replace(/^error:[0-9A-F]+:/, '') : '';
    const why = detail === '' || /PEM routines/.test(detail) ? '' : ` (${detail})`;
    throw new MetadataError(
      'invalid_certificate',
      `The text is base64 but not an X.509 certificate: the decoded bytes are not a DER-encoded certificate${why}.`,
    );
  }
  return {
    pem: toPem(base64),
    subject: oneLineName(cert.subject),
    issuer: oneLineName(cert.issuer),
    notBefore: opensslDateToIso(cert.validFrom),
    notAfter: opensslDateToIso(cert.validTo),
    fingerprintSha256: cert.fingerprint256,
  };
}

/** A short label for messages: the certificate's CN if it has one, else its whole subject. */
export function certificateLabel(info: CertificateInfo): string {
  const cn = /(?:^|, )CN=([^,]+)/.exec(info.subject);
  return cn ? `"${cn[1]}"` : `"${info.subject}"`;
}
