const DURATION =
  /^P(?:(\d+(?:\.\d+)?)Y)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)W)?(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$/;

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
// xs:duration has no fixed length for years and months; cache lifetimes only need an estimate.
const MONTH = 30 * DAY;
const YEAR = 365 * DAY;

/**
 * Milliseconds in an ISO-8601 / xs:duration such as "PT6H", "P1D" or "P0Y0M0DT6H0M0.000S";
 * null when the text is not such a duration (including negative ones, which make no sense as
 * a cache lifetime).
 */
export function cacheDurationMs(iso: string): number | null {
  const text = iso.trim();
  if (text.length > 64) return null;
  const m = DURATION.exec(text);
  if (!m || text === 'P' || text.endsWith('T')) return null;
  const units = [YEAR, MONTH, 7 * DAY, DAY, HOUR, MINUTE, SECOND];
  let total = 0;
  units.forEach((unit, i) => {
    const value = m[i + 1];
    if (value !== undefined) total += Number(value) * unit;
  });
  return Number.isFinite(total) ? Math.round(total) : null;
}
