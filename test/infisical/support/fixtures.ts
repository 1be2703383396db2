/**
 * The run's certificates (test/support/test-certs.ts), access tokens, and a valid config body.
 */
import { adminHeaders, call } from '../../support/harness';
import { datedCert, runCerts, type TestCerts } from '../../support/test-certs';

export type { TestCerts };

/** The run's certificates, made once per run by jest's global setup: no openssl here, nor between requests. */
export function makeCerts(): TestCerts {
  return runCerts().certs;
}

/** A self-signed certificate valid from 2020-01-01 until `notAfter` (whole seconds), PEM. */
export function certValidUntil(notAfter: Date): string {
  // YYYYMMDDHHMMSSZ, as `openssl ca -enddate` takes it.
  return datedCert('soon-expired-idp', '20200101000000Z', notAfter.toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, 'Z')).cert;
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
