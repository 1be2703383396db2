/**
 * Which IdP signing certificates a credential trusts, and what a fetched document may change.
 *
 * A metadata signature proves only that the holder of the certificate in its KeyInfo produced the document;
 * anyone can sign with a throwaway key. It counts as verified only when that certificate is one of the
 * credential's trusted certificates, pinned when the credential (or its URL) was set:
 *   - supplied by the owner (`idp_trusted_certificates` on create or PATCH): the document fetched then must
 *     be signed by one of them, or list only them as signing certificates;
 *   - otherwise trust on first use: the signer of the first document (if signed) and its signing certificates.
 * A refresh whose signing certificates are all trusted already (the same ones, or some of them dropped at the
 * end of a rotation) is applied. One that brings in another certificate is applied only when it is signed by a
 * trusted certificate (its certificates are then trusted too: the IdP vouched for its rotation); otherwise it is held (`pending`): stored next to the applied document, never used by SSO, shown to the owner
 * and operators, until the owner re-pins (PATCH `idp_trusted_certificates`) or an operator accepts it
 * (POST /admin/metadata-refresh/{credential_id}/accept).
 */
import { AppError } from '../http/errors';
import { isMetadataError, parseCertificate } from '../metadata';
import type { StoredMetadata } from './metadata';

export type TrustSource = 'first_use' | 'caller' | 'signed_refresh' | 'operator';

export interface TrustedCertificate {
  fingerprint_sha256: string;
  subject: string | null;
  not_after: string | null;
  source: TrustSource;
}

export interface HeldMetadata {
  metadata: StoredMetadata;
  held_at: string;
  reason: string;
}

/** The `metadata` column: the applied document (what SSO uses), the trusted certificates, a held document. */
export interface MetadataRecord extends StoredMetadata {
  trusted_certificates?: TrustedCertificate[];
  pending?: HeldMetadata | null;
}

/**
 * The credential's `idp_trust` column: the owner's word on what to trust, written with every create and every
 * PATCH of the URL or the pins, with a new id each time. The metadata row's `trust_id` column names the
 * setting it was made under ('' for none). Rows replicate by last writer wins, each on its own, and a
 * refresh writes only the metadata row, a PATCH of the label only the credential row (with the setting it
 * read). So a refresh in the home region can win over a PATCH of the pins made in another region at the same
 * moment, leaving a metadata row of the older setting; the home region then fetches again under this one's
 * pins. A label PATCH can win over it the other way, leaving the credential row with the older setting and
 * the metadata row with the newer: ids are UUIDv7, which sort by when they were made, and a metadata row made
 * under a setting at least as new as the credential's is the credential's.
 */
export interface TrustSetting {
  id: string;
  /** The URL the owner set the pins for: pins of another URL are not used. */
  url: string;
  /** The owner's certificates, or null: trust on first use. */
  pins: TrustedCertificate[] | null;
}

/** The credential's trust setting, or null (a row of an older version, or an unreadable value). */
export function trustSettingOf(column: unknown): TrustSetting | null {
  const t = column as Partial<TrustSetting> | null | undefined;
  if (!t || typeof t !== 'object' || typeof t.id !== 'string' || typeof t.url !== 'string') return null;
  return { id: t.id, url: t.url, pins: Array.isArray(t.pins) ? t.pins : null };
}

/** The pins a fetch of the credential's current URL is judged by: the owner's, when set for that URL. */
export function pinsFor(credential: { idp_metadata_url: string; idp_trust?: unknown }): TrustedCertificate[] | null {
  const setting = trustSettingOf(credential.idp_trust);
  return setting && setting.url === credential.idp_metadata_url ? setting.pins : null;
}

/** The trust_id a metadata row written now carries: the credential's setting's id, or '' for none. */
export function trustIdFor(credential: { idp_trust?: unknown }): string {
  return trustSettingOf(credential.idp_trust)?.id ?? '';
}

/**
 * Whether a stored metadata row is the credential's: fetched for its URL, and made under its trust setting or
 * a newer one. A row an older version wrote (trust_id null), or a credential without a setting, is judged by
 * the URL alone. (The sweep's SQL says the same: store.ts currentMetadata.)
 */
export function isCurrentMetadata(
  credential: { idp_metadata_url: string; idp_trust?: unknown },
  row: { idp_metadata_url: string; trust_id?: string | null },
): boolean {
  if (row.idp_metadata_url !== credential.idp_metadata_url) return false;
  const setting = trustSettingOf(credential.idp_trust);
  const made = row.trust_id;
  return setting === null || made === null || made === undefined || made >= setting.id;
}

/** isCurrentMetadata of the rows as the Prisma client reads them. */
export function isCurrentModel(credential: { idpMetadataUrl: string; idpTrust: unknown }, row: { idpMetadataUrl: string; trustId: string | null }): boolean {
  return isCurrentMetadata({ idp_metadata_url: credential.idpMetadataUrl, idp_trust: credential.idpTrust }, { idp_metadata_url: row.idpMetadataUrl, trust_id: row.trustId });
}

/** Pinned certificates kept per credential (the newest win when a signed rotation adds more). */
export const MAX_TRUSTED_CERTIFICATES = 10;

/**
 * The document alone, without the trust fields (and the trust id 2d05ef9 kept in the record before it had a
 * column: such a row, until its next refresh, is judged by its URL; see src/db/edited-migrations.ts).
 */
export function documentOf(r: MetadataRecord): StoredMetadata {
  const { trusted_certificates: _t, pending: _p, trust_id: _i, ...doc } = r as MetadataRecord & { trust_id?: unknown };
  return doc;
}

/** Rows written before pinning existed trust what they had applied (first use at upgrade). */
export function trustedOf(r: MetadataRecord): TrustedCertificate[] {
  return r.trusted_certificates ?? pinsOf(r, 'first_use');
}

function pinsOf(m: StoredMetadata, source: TrustSource): TrustedCertificate[] {
  return m.signing_certificates.map((c) => ({ fingerprint_sha256: c.fingerprint_sha256, subject: c.subject, not_after: c.not_after, source }));
}

function merge(a: TrustedCertificate[], b: TrustedCertificate[]): TrustedCertificate[] {
  const out = [...a];
  for (const c of b) if (!out.some((o) => o.fingerprint_sha256 === c.fingerprint_sha256)) out.push(c);
  return out.slice(-MAX_TRUSTED_CERTIFICATES);
}

/** Every signing certificate the document lists is trusted: applying it adds no trust. */
export function listsOnlyTrusted(m: StoredMetadata, trusted: TrustedCertificate[]): boolean {
  return m.signing_certificates.every((c) => trusted.some((t) => t.fingerprint_sha256 === c.fingerprint_sha256));
}

/** Signed, and by a certificate the credential trusts. */
export function signedByTrusted(m: StoredMetadata, trusted: TrustedCertificate[]): boolean {
  return m.signed_by != null && trusted.some((t) => t.fingerprint_sha256 === m.signed_by);
}

/** JSON with sorted keys: a document read back from JSONB has its keys in another order. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).filter((k) => o[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v ?? null);
}

const sameDocument = (a: StoredMetadata, b: StoredMetadata) => {
  const strip = ({ fetched_at: _f, ...rest }: StoredMetadata) => canonical({ signed_by: null, ...rest });
  return strip(a) === strip(b);
};

/**
 * Certificates supplied by the owner (PEM or bare base64 DER), as pins; a bad one is a 400 naming it, and so
 * is one given twice (the same DER, by its SHA-256, however its PEM or base64 is wrapped).
 */
export function callerPins(pems: string[]): TrustedCertificate[] {
  const first = new Map<string, number>();
  return pems.map((pem, i) => {
    let pin: TrustedCertificate;
    try {
      const c = parseCertificate(pem);
      pin = { fingerprint_sha256: c.fingerprintSha256, subject: c.subject, not_after: c.notAfter, source: 'caller' as const };
    } catch (err) {
      // Our own refusal says what is wrong; anything else is not shown (it would be a library's wording).
      const why = isMetadataError(err) ? `: ${err.message}` : '.';
      throw new AppError(400, 'bad_request', `idp_trusted_certificates.${i} is not a readable X.509 certificate${why}`);
    }
    const earlier = first.get(pin.fingerprint_sha256);
    if (earlier !== undefined) {
      throw new AppError(400, 'bad_request', `idp_trusted_certificates.${i} is the same certificate as idp_trusted_certificates.${earlier}; list each certificate once.`);
    }
    first.set(pin.fingerprint_sha256, i);
    return pin;
  });
}

/**
 * The record of a document fetched when the owner sets the credential's URL or pins: trust on first use, or
 * the owner's certificates, which must vouch for the document (sign it, or be all it lists).
 */
export function firstUse(fresh: StoredMetadata, pins: TrustedCertificate[] | null): MetadataRecord {
  if (pins === null) {
    const signer = fresh.signed_by && !fresh.signing_certificates.some((c) => c.fingerprint_sha256 === fresh.signed_by)
      ? [{ fingerprint_sha256: fresh.signed_by, subject: null, not_after: null, source: 'first_use' as const }]
      : [];
    return { ...fresh, trusted_certificates: [...signer, ...pinsOf(fresh, 'first_use')], pending: null };
  }
  if (!signedByTrusted(fresh, pins) && !listsOnlyTrusted(fresh, pins)) {
    throw new AppError(
      400,
      'idp_metadata_untrusted',
      'idp_metadata_url was refused: the metadata is not signed by any of idp_trusted_certificates ' +
        `(${fresh.signed_by ? `it is signed by the certificate with SHA-256 fingerprint ${fresh.signed_by}` : 'it is unsigned'}) ` +
        'and lists signing certificates that are not among them.',
    );
  }
  return { ...fresh, trusted_certificates: pins, pending: null };
}

export type RefreshOutcome = 'unchanged' | 'applied' | 'held';

/** What a refresh makes of the stored record. */
export function decideRefresh(current: MetadataRecord, fresh: StoredMetadata, now = new Date()): { record: MetadataRecord; outcome: RefreshOutcome } {
  const trusted = trustedOf(current);
  const applied = documentOf(current);
  if (listsOnlyTrusted(fresh, trusted) || signedByTrusted(fresh, trusted)) {
    const pins = listsOnlyTrusted(fresh, trusted) ? trusted : merge(trusted, pinsOf(fresh, 'signed_refresh'));
    const record = { ...fresh, trusted_certificates: pins, pending: null };
    const unchanged = sameDocument(applied, fresh) && !current.pending && current.trusted_certificates !== undefined;
    return { record, outcome: unchanged ? 'unchanged' : 'applied' };
  }
  const held = current.pending;
  if (held && sameDocument(held.metadata, fresh)) return { record: current, outcome: 'unchanged' };
  const reason = fresh.signed
    ? `the document lists a signing certificate not trusted for this credential and is signed by a certificate not trusted either (SHA-256 ${fresh.signed_by})`
    : 'the document lists a signing certificate not trusted for this credential and is not signed by a trusted certificate';
  return { record: { ...current, trusted_certificates: trusted, pending: { metadata: fresh, held_at: now.toISOString(), reason } }, outcome: 'held' };
}

/** An operator accepts the held document: it is applied and its signing certificates are trusted. */
export function acceptHeld(current: MetadataRecord): MetadataRecord | null {
  if (!current.pending) return null;
  const fresh = current.pending.metadata;
  return { ...fresh, trusted_certificates: merge(trustedOf(current), pinsOf(fresh, 'operator')), pending: null };
}
