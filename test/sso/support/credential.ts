import { call, createOrg, slashidHeaders } from '../../support/harness';

/**
 * A new organization in the region at `url` and a SAML credential of it for the IdP metadata at
 * `metadataUrl`, taking the email from the `email` attribute; the credential's id.
 */
export async function ssoCredential(url: string, orgName: string, metadataUrl: string): Promise<string> {
  const org = await createOrg(url, orgName);
  const res = await call(url, 'POST', '/organizations/sso/saml/provider-credentials', {
    body: { idp_metadata_url: metadataUrl, email_claims: ['email'] },
    headers: slashidHeaders(org),
  });
  expect(res.status).toBe(201);
  return res.body.result.id as string;
}
