/**
 * The refusal of a sign-in with IdP metadata past its validUntil (SAML metadata 2.0, 2.2.1 and 4.3: such metadata
 * must not be relied on). The fetch refuses an expired document, and the refresher fetches again well before
 * validUntil; when those refreshes keep failing (or their documents are held), the stored one expires and its
 * certificates and endpoints stop being trusted. The message says when it expired, how its refreshes fare as far
 * as this region knows (the schedule lives in the region that refreshes it), and what to fix.
 */
import type { Config } from '../config';
import type { Db } from '../db/client';
import { expiredAt, skewMsOf, validationTime, type StoredMetadata } from '../provider-credentials/metadata';
import type { MetadataRecord } from '../provider-credentials/trust';
import { CREDENTIALS_PATH } from '../provider-credentials/routes';
import { adopterOf, refreshScheduleHere } from '../provider-credentials/store';
import type { DepartureState } from '../replication/departures';
import type { SignInCredential } from './store';

export type ExpiryConfig = Pick<Config, 'metadataValidationTime' | 'samlClockSkewSeconds'>;
/** The answering region, and the departures that decide whether it refreshes a credential (refreshedHere). */
export interface Here {
  region: string;
  departures(): Promise<DepartureState>;
}

const iso = (d: Date | string) => new Date(d).toISOString();

/** How the refreshes of the expired document fare, as far as this region knows. */
async function refreshesOf(db: Db, here: Here, id: string, credential: SignInCredential, metadata: MetadataRecord): Promise<string> {
  if (metadata.pending) {
    // The refresh works, but what it fetched changes the signing certificates without a trusted signature.
    return (
      `a newer document fetched at ${iso(metadata.pending.held_at)} is held, not applied (it changes the IdP's signing certificates without a trusted signature): ` +
      `re-pin the credential with PATCH ${CREDENTIALS_PATH}/${id} {"idp_trusted_certificates": [...]}, or have an operator accept it (POST /admin/metadata-refresh/${id}/accept)`
    );
  }
  const fix = "fix the credential's idp_metadata_url (PATCH it with the URL where the IdP publishes its current metadata), or have the IdP publish fresh metadata there";
  // Only a schedule this region acts on: one that stopped adopting the credential keeps its row until due
  // (as the credential's /metadata reads it), and its figures are not the credential's refreshes.
  const scope = await here.departures();
  const schedule = await refreshScheduleHere(db, id, here.region, scope);
  if (!schedule) {
    const fetched = `the stored document was fetched at ${iso(metadata.fetched_at)}`;
    const says = `GET ${CREDENTIALS_PATH}/${id}/metadata says how they fail`;
    if (!scope.departed.includes(credential.homeRegion)) return `${fetched}, and its refreshes run in region ${credential.homeRegion}, whose ${says}; ${fix}`;
    // Its home was removed from the deployment: an adopter refreshes it (the home's /metadata answers no more).
    const adopter = await adopterOf(db, id, scope.adopters);
    const where = adopter
      ? `its refreshes run in region ${adopter}, which adopted it from ${credential.homeRegion} (removed from the deployment), and whose ${says}`
      : `its refreshes run in the region that adopts the credentials of ${credential.homeRegion} (removed from the deployment; GET /admin/metadata-refresh there lists it), whose ${says}`;
    return `${fetched}, and ${where}; ${fix}`;
  }
  const since = iso(schedule.last_success_at ?? metadata.fetched_at);
  if (schedule.consecutive_failures > 0 && schedule.last_attempt_at) {
    const n = schedule.consecutive_failures;
    return `its refreshes have failed since ${since} (${n} attempt${n === 1 ? '' : 's'}, the last at ${iso(schedule.last_attempt_at)}; GET ${CREDENTIALS_PATH}/${id}/metadata says why); ${fix}`;
  }
  return `it has not been refreshed since ${since} (the next refresh is due at ${iso(schedule.next_at)}); ${fix}`;
}

/** What is wrong with the credential's metadata now, or null: it has no validUntil, or that has not passed (beyond the skew). */
export async function expiredMetadataProblem(
  db: Db,
  config: ExpiryConfig,
  here: Here,
  id: string,
  credential: SignInCredential,
  metadata: StoredMetadata,
): Promise<string | null> {
  const until = expiredAt(metadata, validationTime(config), skewMsOf(config));
  if (until === null) return null;
  return (
    `the IdP metadata of this credential expired at ${until} (its validUntil), and metadata past its validUntil is not relied on: ` +
    `${await refreshesOf(db, here, id, credential, metadata as MetadataRecord)}. Sign-in works again once a refresh has stored a current document.`
  );
}
