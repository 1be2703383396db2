import { fetchMetadata, type FetchOptions } from './fetch-metadata';
import { excerpt, MetadataError } from './errors';
import type { ParsedMetadata } from './parse-metadata';
import { sharedParsePool } from './parse-pool';
import { allowedSignOnServices } from './sign-on-policy';

export { MetadataError, isMetadataError, type MetadataErrorCode } from './errors';
export { blockedReason, isAllowListed } from './address-policy';
export { fetchMetadata, type FetchOptions, type FetchResult } from './fetch-metadata';
export { LookupsBusyError } from './lookup-gate';
export { parseCertificate, type CertificateInfo } from './x509';
export { ParsePool, sharedParsePool } from './parse-pool';
export { isAllowedSignOnUrl, plainHttpSignOnProblem } from './sign-on-policy';
export { parseIdpMetadata, cacheDurationMs, type ParsedMetadata } from './parse-metadata';
export { pastValidUntil } from './valid-until';

/**
 * Fetches an IdP metadata URL and validates the document. `now` (default: the fetch time) is the
 * clock for certificate and validUntil checks, `skewMs` (default 0) the clock skew allowed on validUntil.
 */
export async function fetchAndParse(
  url: string,
  opts: FetchOptions & { now?: Date; skewMs?: number },
): Promise<{ metadata: ParsedMetadata; fetchedAt: Date; finalUrl: string }> {
  const fetched = await fetchMetadata(url, opts);
  try {
    // Off the event loop: a signed document with a few hundred elements takes xml-crypto hundreds of ms.
    const parsed = await sharedParsePool().parse(fetched.body, opts.now ?? fetched.fetchedAt, opts.skewMs);
    // Users are sent to a sign-on endpoint: plain http only where the metadata itself may be (sign-on-policy.ts).
    const metadata = { ...parsed, ssoServices: allowedSignOnServices(parsed.entityId, parsed.ssoServices, opts.allowedHosts) };
    return { metadata, fetchedAt: fetched.fetchedAt, finalUrl: fetched.finalUrl };
  } catch (err) {
    // The parser does not know where the document came from; the admin needs to.
    if (err instanceof MetadataError) throw new MetadataError(err.code, `${err.message} (fetched from ${fetched.finalUrl})`);
    // Whatever else a hostile document makes the parser throw is still the document's fault: a 400, not a 500.
    throw new MetadataError('not_metadata', `The document could not be processed as SAML metadata (${excerpt(String((err as Error)?.message), 150)}; fetched from ${fetched.finalUrl}).`);
  }
}
