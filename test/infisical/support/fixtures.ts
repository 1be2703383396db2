/**
 * Real certificates made with openssl at test time, access tokens, and a valid config body.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { adminHeaders, call } from '../../support/harness';

export interface TestCerts {
  /** Valid for 30 days, PEM. */
  pem: string;
  /** The same certificate as bare base64 DER on one line, as IdPs show it in their metadata. */
  bareBase64: string;
  /** Valid from 2020-01-01 to 2020-02-01 only. */
  expiredPem: string;
  expiredNotAfter: string;
  /** A second valid certificate, for updates. */
  otherPem: string;
  /** Valid, with an empty subject and issuer (named in its subjectAltName only, as RFC 5280 allows). */
  noSubjectPem: string;
}

const openssl = (args: string[], cwd: string) => execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });

function selfSigned(dir: string, name: string, cn: string): string {
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30', '-subj', `/CN=${cn}`, '-keyout', `${name}.key`, '-out', `${name}.pem`], dir);
  return fs.readFileSync(path.join(dir, `${name}.pem`), 'utf8');
}

/** `req -x509` cannot back-date a certificate in OpenSSL 3.0; `ca -selfsign` takes explicit dates. */
function expired(dir: string): string {
  return dated(dir, 'expired-idp', '20200101000000Z', '20200201000000Z');
}

/** A self-signed certificate valid from 2020-01-01 until `notAfter` (whole seconds), PEM. */
export function certValidUntil(notAfter: Date): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'infisical-certs-'));
  try {
    // YYYYMMDDHHMMSSZ, as `openssl ca -enddate` takes it.
    return dated(dir, 'soon-expired-idp', '20200101000000Z', notAfter.toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, 'Z'));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function dated(dir: string, cn: string, start: string, end: string): string {
  fs.mkdirSync(path.join(dir, 'ca'));
  fs.writeFileSync(path.join(dir, 'ca', 'index.txt'), '');
  fs.writeFileSync(path.join(dir, 'ca', 'serial'), '01\n');
  fs.writeFileSync(
    path.join(dir, 'ca.cnf'),
    ['[ca]', 'default_ca = x', '[x]', 'database = ca/index.txt', 'new_certs_dir = ca', 'serial = ca/serial',
      'default_md = sha256', 'policy = p', 'unique_subject = no', '[p]', 'commonName = supplied', ''].join('\n'),
  );
  openssl(['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-keyout', 'old.key', '-out', 'old.csr'], dir);
  openssl(['ca', '-batch', '-config', 'ca.cnf', '-selfsign', '-keyfile', 'old.key', '-in', 'old.csr', '-out', 'old.pem',
    '-startdate', start, '-enddate', end, '-notext'], dir);
  return fs.readFileSync(path.join(dir, 'old.pem'), 'utf8');
}

export function makeCerts(): TestCerts {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'infisical-certs-'));
  try {
    const pem = selfSigned(dir, 'idp', 'idp.example.com');
    const bareBase64 = pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
    openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30', '-subj', '/', '-addext', 'subjectAltName=DNS:idp.example.com', '-keyout', 'nosubject.key', '-out', 'nosubject.pem'], dir);
    const noSubjectPem = fs.readFileSync(path.join(dir, 'nosubject.pem'), 'utf8');
    return { pem, bareBase64, expiredPem: expired(dir), expiredNotAfter: '2020-02-01T00:00:00.000Z', otherPem: selfSigned(dir, 'next', 'idp-next.example.com'), noSubjectPem };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function issueToken(baseUrl: string, orgId: string, expiresInSeconds?: number): Promise<string> {
  const res = await call(baseUrl, 'POST', `/admin/organizations/${orgId}/access-tokens`, {
    headers: adminHeaders,
    ...(expiresInSeconds === undefined ? {} : { body: { expires_in_seconds: expiresInSeconds } }),
  });
  if (res.status !== 201) throw new Error(`issue token: ${res.status} ${JSON.stringify(res.body)}`);
  return (res.body as { access_token: string }).access_token;
}

export const bearer = (token: string, extra: Record<string, string> = {}) => ({ authorization: `Bearer ${token}`, ...extra });

export function configBody(orgId: string, cert: string, extra: Record<string, unknown> = {}) {
  return {
    organizationId: orgId,
    authProvider: 'okta-saml',
    isActive: true,
    entryPoint: 'https://idp.example.com/app/sso/saml',
    issuer: 'http://www.okta.com/exk1example',
    cert,
    ...extra,
  };
}

export const SSO = '/api/v1/sso/config';
