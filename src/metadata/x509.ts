import { X509Certificate } from 'node:crypto';
import { excerpt, MetadataError } from './errors';

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

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const PEM_LABEL = /^[A-Z0-9 ]{1,64}$/;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
/** Far above any real certificate (an 8192-bit RSA one is ~3 KiB of base64); bounds the work per certificate. */
export const MAX_CERTIFICATE_CHARS = 32 * 1024;

/**
 * The body of the PEM block that `text` (trimmed) must be, found with indexOf (a backtracking pattern over repeated
 * "-----BEGIN A-----" lines costs one full scan per line).
 */
function pemBody(text: string): string {
  const begin = text.indexOf('-----BEGIN ');
  const labelEnd = begin < 0 ? -1 : text.indexOf('-----', begin + 11);
  const label = labelEnd < 0 ? '' : text.slice(begin + 11, labelEnd);
  const endMarker = `-----END ${label}-----`;
  const end = PEM_LABEL.test(label) ? text.indexOf(endMarker, labelEnd + 5) : -1;
  if (end < 0) {
    throw new MetadataError('invalid_certificate', 'The certificate has a "-----BEGIN" line without a matching "-----END" line.');
  }
  if (label !== 'CERTIFICATE') {
    throw new MetadataError('invalid_certificate', `Expected a "BEGIN CERTIFICATE" block but found "BEGIN ${label}".`);
  }
  // One certificate, and nothing else: what is checked must be all that is kept (a stored value is shown and
  // used as sent, so a second, expired certificate or any other text after the first would ride along).
  if (begin !== 0 || end + endMarker.length !== text.length) {
    throw new MetadataError('invalid_certificate', 'The value has text outside its one "BEGIN CERTIFICATE" block (a second certificate, or other text); send the one certificate alone.');
  }
  return text.slice(labelEnd + 5, end);
}

function base64Body(text: string): string {
  if (text.length > MAX_CERTIFICATE_CHARS) {
    throw new MetadataError('invalid_certificate', `The certificate is longer than ${MAX_CERTIFICATE_CHARS / 1024} KiB; no real certificate is.`);
  }
  const trimmed = text.trim();
  if (trimmed === '') throw new MetadataError('invalid_certificate', 'The certificate is empty.');
  // A backslash belongs to neither PEM nor base64: a certificate copied out of a JSON string or a .env line.
  if (/\\[nr]/.test(trimmed)) {
    throw new MetadataError(
      'invalid_certificate',
      'The certificate holds a backslash escape ("\\n" or "\\r", two characters) where its line breaks belong (copied from a .env line or an escaped string?): send the PEM with real line breaks, or the base64 text alone.',
    );
  }
  const body = trimmed.includes('-----BEGIN') ? pemBody(trimmed) : trimmed;
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
    throw new MetadataError('invalid_certificate', `The certificate has an unreadable validity date "${excerpt(text, 40)}".`);
  }
  const ms = Date.UTC(Number(m[6]), month, Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5]));
  return new Date(ms).toISOString();
}

function oneLineName(name: string | undefined): string {
  // Node gives no string at all for an empty name (a certificate may name its subject in its SANs only).
  return (name ?? '').split('\n').filter((part) => part !== '').join(', ');
}

/** The shortest RSA (and DSA) key a signing certificate may have: shorter ones can be factored. */
export const MIN_RSA_BITS = 2048;

/** Why the certificate's public key is too weak to trust, or null. */
function weakKey(cert: X509Certificate): string | null {
  const key = cert.publicKey;
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if ((key.asymmetricKeyType === 'rsa' || key.asymmetricKeyType === 'rsa-pss' || key.asymmetricKeyType === 'dsa') && (bits === undefined || bits < MIN_RSA_BITS)) {
    return `a ${bits ?? 'unknown'}-bit ${key.asymmetricKeyType.toUpperCase()} key`;
  }
  return null;
}

/** Whether a stored PEM certificate's key is strong enough to verify a signature with (see weakKey). */
export function strongSigningKey(pem: string): boolean {
  try {
    return readCertificate(pem).weak === null;
  } catch {
    return false;
  }
}

/**
 * Parses a certificate given as PEM or as bare base64 DER (the form used inside
 * <ds:X509Certificate>), with any whitespace. Validity dates are reported, not judged:
 * whether an expired certificate is acceptable depends on what it is used for.
 */
export function parseCertificate(text: string): CertificateInfo {
  const { info, weak } = readCertificate(text);
  if (weak !== null) throw new MetadataError('invalid_certificate', `The certificate "${excerpt(info.subject, 80)}" has ${weak}; keys that short can be broken, so it cannot be trusted to sign. The IdP needs a new signing certificate (RSA of at least ${MIN_RSA_BITS} bits, or EC).`);
  return info;
}

/**
 * parseCertificate without the key-size rule: the certificate and why its key is too weak to trust (null
 * when it is not). For a certificate that is read but not trusted for it (a metadata signature's signer).
 */
export function readCertificate(text: string): { info: CertificateInfo; weak: string | null } {
  const base64 = base64Body(text);
  const der = Buffer.from(base64, 'base64');
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch (err) {
    // Node tries PEM before DER, so its message is often about PEM and would only mislead.
    const detail = err instanceof Error ? err.message.replace(/^error:[0-9A-F]+:/, '') : '';
    const why = detail === '' || /PEM routines/.test(detail) ? '' : ` (${excerpt(detail, 120)})`;
    throw new MetadataError(
      'invalid_certificate',
      `The text is base64 but not an X.509 certificate: the decoded bytes are not a DER-encoded certificate${why}.`,
    );
  }
  // OpenSSL reads the first certificate of the bytes and ignores what follows it; the value is kept as sent,
  // so a second certificate (an expired one, say) or other bytes after the first would ride along unchecked.
  if (cert.raw.length !== der.length) {
    throw new MetadataError(
      'invalid_certificate',
      `The decoded bytes hold ${der.length - cert.raw.length} byte(s) after the certificate (a second certificate, or other data); send the one certificate alone.`,
    );
  }
  const info: CertificateInfo = {
    pem: toPem(base64),
    subject: oneLineName(cert.subject),
    issuer: oneLineName(cert.issuer),
    notBefore: opensslDateToIso(cert.validFrom),
    notAfter: opensslDateToIso(cert.validTo),
    fingerprintSha256: cert.fingerprint256,
  };
  return { info, weak: weakKey(cert) };
}

/** A short label for messages: the certificate's CN if it has one, else its whole subject. */
export function certificateLabel(info: CertificateInfo): string {
  const cn = /(?:^|, )CN=([^,]+)/.exec(info.subject.slice(0, 1000));
  return `"${excerpt(cn ? cn[1] : info.subject, 80)}"`;
}
