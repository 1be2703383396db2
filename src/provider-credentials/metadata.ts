/**
 * The IdP metadata of a credential: fetched (safely) by the region that takes the write, stored in the
 * replicated row, shown to the org, and re-fetched on a schedule by the credential's home region.
 */
import type { Config } from '../config';
import { AppError } from '../http/errors';
import { cacheDurationMs, fetchAndParse, isMetadataError, LookupsBusyError, pastValidUntil, type ParsedMetadata } from '../metadata';
import { documentOf, trustedOf, type MetadataRecord } from './trust';

export interface StoredCertificate {
  subject: string;
  issuer: string;
  not_before: string;
  not_after: string;
  fingerprint_sha256: string;
  pem: string;
}

/** The `metadata` column: what the credential's IdP said when it was last fetched. */
export interface StoredMetadata {
  entity_id: string;
  sso_services: { binding: string; location: string }[];
  signing_certificates: StoredCertificate[];
  valid_until: string | null;
  cache_duration: string | null;
  signed: boolean;
  /** SHA-256 fingerprint of the certificate the signature verified with; trusted or not, see trust.ts. */
  signed_by?: string | null;
  fetched_at: string;
  fetched_from: string;
}

export function toStoredMetadata(m: ParsedMetadata, fetchedAt: Date, finalUrl: string): StoredMetadata {
  return {
    entity_id: m.entityId,
    sso_services: m.ssoServices,
    signing_certificates: m.signingCertificates.map((c) => ({
      subject: c.subject,
      issuer: c.issuer,
      not_before: c.notBefore,
      not_after: c.notAfter,
      fingerprint_sha256: c.fingerprintSha256,
      pem: c.pem,
    })),
    valid_until: m.validUntil,
    cache_duration: m.cacheDuration,
    signed: m.signed,
    signed_by: m.signedBy,
    fetched_at: fetchedAt.toISOString(),
    fetched_from: finalUrl,
  };
}

export type MetadataConfig = Pick<
  Config,
  'metadataAllowedHosts' | 'metadataValidationTime' | 'metadataRefreshIntervalSeconds' | 'metadataFetchConcurrency' | 'maxCredentialsPerOrg' | 'samlClockSkewSeconds'
>;

export function validationTime(config: Pick<Config, 'metadataValidationTime'>): Date {
  return config.metadataValidationTime ? new Date(config.metadataValidationTime) : new Date();
}

/** The clock skew allowed on the IdP's times (samlClockSkewSeconds): a response's, and its metadata's validUntil. */
export const DEFAULT_SKEW_SECONDS = 60;
export const skewMsOf = (config: Pick<Config, 'samlClockSkewSeconds'>): number => (config.samlClockSkewSeconds ?? DEFAULT_SKEW_SECONDS) * 1000;

/**
 * The document's validUntil once it has passed, beyond the skew, as of `now`; null while it has not, or when the
 * document has none. Metadata past its validUntil must not be relied on (SAML metadata 2.0, 2.2.1 and 4.3): the
 * fetch refuses such a document (by this rule, pastValidUntil, with the same clock and skew), and SSO refuses to sign in with a stored one whose refreshes did not replace
 * it in time (sso/service.ts); the /metadata resource and GET /admin/metadata-refresh say so.
 */
export function expiredAt(m: Pick<StoredMetadata, 'valid_until'>, now: Date, skewMs: number): string | null {
  if (!m.valid_until) return null;
  const until = Date.parse(m.valid_until);
  return pastValidUntil(until, now, skewMs) ? new Date(until).toISOString() : null;
}

/**
 * metadata_lookups_busy for one organization alone: its own share of the host-name lookup lanes is held by its
 * lookups that are not answering (lookup-gate.ts), while other organizations' fetches still get lanes. The same
 * answer to the client; the refresher goes on with the other organizations' credentials.
 */
export class OrganizationLookupsBusy extends AppError {}

/**
 * Fetches and validates the metadata for organization `orgId` (whose share of the host-name lookup lanes its
 * lookups take); a refusal is a 400 that says what was wrong. No host-name lookup free (others' lookups not
 * answering hold them, or the organization's own hold its share: lookup-gate.ts) is not the URL's fault: a 503
 * `metadata_lookups_busy` with Retry-After, which the refresher takes as busy (as `metadata_fetches_busy`).
 * `signal`: ends the fetch early (see FetchOptions).
 */
export async function loadIdpMetadata(config: MetadataConfig, orgId: string, url: string, signal?: AbortSignal): Promise<StoredMetadata> {
  try {
    const r = await fetchAndParse(url, { allowedHosts: config.metadataAllowedHosts ?? [], now: validationTime(config), skewMs: skewMsOf(config), signal, organization: orgId });
    return toStoredMetadata(r.metadata, r.fetchedAt, r.finalUrl);
  } catch (err) {
    if (isMetadataError(err)) throw new AppError(400, `idp_metadata_${err.code}`, `idp_metadata_url was refused: ${err.message}`);
    if (err instanceof LookupsBusyError) {
      const Busy = err.scope === 'organization' ? OrganizationLookupsBusy : AppError;
      throw new Busy(503, 'metadata_lookups_busy', `The IdP metadata was not fetched: ${err.message}`, { retryAfterSeconds: err.retryAfterSeconds });
    }
    throw err;
  }
}

export const DEFAULT_REFRESH_SECONDS = 24 * 3600;
const MIN_REFRESH_MS = 1000;

/**
 * When to fetch again: the configured period, sooner if the document's cacheDuration or validUntil ask. `now`: the
 * real clock, which the schedule runs on. The time left until validUntil is measured at the clock its expiry is
 * judged at (validationTime: METADATA_VALIDATION_TIME when set, as the fetch and sign-in judge it); measured at
 * the real clock, a region whose validation time is in the past scheduled every document as if already expired
 * (a period later), and one whose validation time is ahead as if it had longer left than it has.
 */
export function nextRefreshAt(m: StoredMetadata | null, config: MetadataConfig, now = new Date()): Date {
  let wait = (config.metadataRefreshIntervalSeconds ?? DEFAULT_REFRESH_SECONDS) * 1000;
  const cache = m?.cache_duration ? cacheDurationMs(m.cache_duration) : null;
  if (cache !== null && cache > 0) wait = Math.min(wait, cache);
  if (m?.valid_until) {
    // Refresh well before the document goes stale: half of the time left until its validUntil. One fetched
    // after its validUntil, within the skew (taken, as a sign-in takes it: expiredAt), has none left: half of
    // the time until the skew runs out, else it waited the whole period and expired meanwhile.
    const judged = (config.metadataValidationTime ? validationTime(config) : now).getTime();
    const until = Date.parse(m.valid_until);
    const left = until > judged ? until - judged : until + skewMsOf(config) - judged;
    if (left > 0) wait = Math.min(wait, left / 2);
  }
  return new Date(now.getTime() + Math.max(MIN_REFRESH_MS, wait));
}

/**
 * What the org sees of a credential's metadata (the seed's `result` shape stays as it is). `expired`: its
 * validUntil passed beyond the skew (expiredAt), so SSO refuses sign-ins with it.
 */
export function metadataView(m: StoredMetadata | null, now: Date, skewMs: number) {
  if (!m) return null;
  const doc = documentOf(m as MetadataRecord);
  return {
    ...doc,
    expired: expiredAt(doc, now, skewMs) !== null,
    signed_by: doc.signed_by ?? null,
    signing_certificates: doc.signing_certificates.map((c) => ({ ...c, expired: Date.parse(c.not_after) <= now.getTime() })),
  };
}

/** The trust half of the record: pinned certificates and a held document (trust.ts). */
export function trustView(m: StoredMetadata | null, now: Date, skewMs: number) {
  if (!m) return { trusted_certificates: [], held_metadata: null };
  const r = m as MetadataRecord;
  return {
    trusted_certificates: trustedOf(r),
    held_metadata: r.pending ? { held_at: r.pending.held_at, reason: r.pending.reason, metadata: metadataView(r.pending.metadata, now, skewMs) } : null,
  };
}

