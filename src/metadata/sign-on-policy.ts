/**
 * Where users' browsers may be sent to sign in: the IdP's SingleSignOnService Location, taken from its
 * metadata. The same rule as for fetching the metadata (address-policy.ts): https, or plain http only at a
 * host:port the operator listed in `metadataAllowedHosts` (an IdP inside their network, a development IdP).
 * An http sign-on page elsewhere would carry the user's sign-in (their password, the SAML request) unencrypted.
 */
import { isAllowListed } from './address-policy';
import { excerpt, MetadataError } from './errors';
import { isHttpUrl } from './parse-metadata';

export function isAllowedSignOnUrl(location: string, allowedHosts: readonly string[]): boolean {
  if (!isHttpUrl(location)) return false;
  const url = new URL(location);
  return url.protocol === 'https:' || isAllowListed(url, allowedHosts);
}

/** Why none of `locations` (http(s) sign-on URLs, none allowed) may be used; says what to change. */
export function plainHttpSignOnProblem(entityId: string, locations: readonly string[]): string {
  const first = excerpt(locations[0] ?? '', 200);
  const host = (() => {
    try {
      const url = new URL(locations[0] ?? '');
      return `${url.hostname}:${url.port || '80'}`;
    } catch {
      return 'its host:port';
    }
  })();
  return (
    `The IdP "${excerpt(entityId, 100)}" offers single sign-on only over plain http (${first}): users' browsers would carry their sign-in unencrypted. ` +
    `Publish an https SingleSignOnService in the IdP's metadata; for an IdP inside your network, an operator can allow plain http by adding "${host}" to metadataAllowedHosts.`
  );
}

/** The parsed sign-on endpoints users may be sent to; none is a refusal (no_sso_service) that says why. */
export function allowedSignOnServices<S extends { location: string }>(entityId: string, services: readonly S[], allowedHosts: readonly string[]): S[] {
  const allowed = services.filter((s) => isAllowedSignOnUrl(s.location, allowedHosts));
  if (allowed.length === 0 && services.length > 0) {
    throw new MetadataError('no_sso_service', plainHttpSignOnProblem(entityId, services.map((s) => s.location)));
  }
  return allowed;
}
