/**
 * Reading a /readyz answer's body (observability/readiness.ts's ReadinessReport) from outside the region: the
 * health check and `npm run cluster`. No imports, so the health check stays a small process.
 */

/** Whether the body says the region is not ready only because it is a joining member (it needs its re-seed). */
export function onlyJoining(r: Record<string, unknown>): boolean {
  const migrated = Array.isArray(r.missing_migrations) && r.missing_migrations.length === 0;
  return r.joining === true && r.database === 'ok' && migrated && !r.draining && !r.stalled && !r.starting;
}
