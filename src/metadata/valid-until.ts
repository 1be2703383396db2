/**
 * The one rule for a metadata document's validUntil: it has passed once it is at or before `now` less the clock
 * skew allowed on the IdP's times (samlClockSkewSeconds). The fetch refuses a document past it (parse-metadata.ts),
 * and a stored one past it signs no one in (provider-credentials/metadata.ts, expiredAt): judged apart, a document
 * a sign-in still took (a few seconds past, within the skew) was refused when fetched again.
 */
export function pastValidUntil(untilMs: number, now: Date, skewMs: number): boolean {
  return untilMs <= now.getTime() - skewMs;
}
