/**
 * IdP metadata refresh figures for /metrics, read from metadata_refresh_state when Prometheus scrapes:
 * what GET /admin/metadata-refresh shows, as numbers an alert can use. Only credentials this region
 * refreshes (its home credentials, and those it adopted from a region that left the deployment).
 */
import { Gauge, type Registry } from 'prom-client';
import type { Db } from '../db/client';
import { shared } from '../observability/metrics';
import { NO_DEPARTURES, type DepartureState } from '../replication/departures';
import { REFRESHED_SCHEDULES, refreshScope } from './store';

interface RefreshFigures {
  /** Regions removed from the deployment whose credentials wait for this region to adopt its share (departures.ts). */
  adoptionWaiting: number;
  due: number;
  failing: number;
  last_success: Date | null;
  oldest_success: Date | null;
}

/**
 * `waiting`: the credentials the refresher's sweep found (no schedule, another URL's document) and has yet to
 * refresh; those of them also due by schedule are counted once.
 */
export function registerRefreshMetrics(
  registry: Registry,
  db: Db,
  region: string,
  waiting: () => readonly string[] = () => [],
  /** Whether this region adopts the credentials of regions that left (Replicator.departures). */
  scope: () => Promise<DepartureState> = async () => NO_DEPARTURES,
): void {
  // The gauges of one scrape share one query.
  const figures = shared(async (): Promise<RefreshFigures | null> => {
    // Each figure through an index (next_at, the failing ones, last_success_at), joined to the credentials
    // for their home: a scrape costs the same at a million credentials as at ten (the join of every
    // credential it replaced took 0.45 s of Postgres per scrape at 200,000).
    const departures = await scope();
    const rows = await db.$queryRawUnsafe<{ due: bigint; failing: bigint; last_success: Date | null; oldest_success: Date | null }[]>(
      // "Due": by schedule, plus the credentials the refresher's sweep found that are not (a few ids, at most
      // one sweep page's worth).
      `SELECT (SELECT count(*) FROM ${REFRESHED_SCHEDULES} WHERE s.next_at <= now())
                + (SELECT count(*) FROM unnest($4::uuid[]) f(id)
                    WHERE NOT EXISTS (SELECT 1 FROM metadata_refresh_state s WHERE s.credential_id = f.id AND s.next_at <= now())) AS due,
              (SELECT count(*) FROM ${REFRESHED_SCHEDULES} WHERE s.consecutive_failures > 0) AS failing,
              (SELECT s.last_success_at FROM ${REFRESHED_SCHEDULES} WHERE s.last_success_at IS NOT NULL ORDER BY s.last_success_at DESC LIMIT 1) AS last_success,
              (SELECT s.last_success_at FROM ${REFRESHED_SCHEDULES} WHERE s.last_success_at IS NOT NULL ORDER BY s.last_success_at ASC LIMIT 1) AS oldest_success`,
      ...refreshScope(region, departures),
      waiting(),
    );
    const r = rows[0];
    return r ? { adoptionWaiting: departures.ready ? 0 : departures.departed.length, due: Number(r.due), failing: Number(r.failing), last_success: r.last_success, oldest_success: r.oldest_success } : null;
  });
  const gauge = (name: string, help: string, value: (f: RefreshFigures) => number | null) =>
    new Gauge({ name, help, registers: [registry], async collect() {
      this.reset();
      const f = await figures();
      const v = f ? value(f) : null;
      if (v !== null) this.set(v);
    } });
  gauge('metadata_refresh_due', 'Credentials this region refreshes (its own, and those it adopted) whose IdP metadata is due for a refresh now.', (f) => f.due);
  gauge(
    'metadata_refresh_adoption_waiting',
    'Regions removed from the deployment whose credentials this region does not adopt yet (GET /admin/metadata-refresh: adoption.waiting says why).',
    (f) => f.adoptionWaiting,
  );
  gauge('metadata_refresh_failing', 'Credentials whose last IdP metadata refresh failed (they keep their last good metadata).', (f) => f.failing);
  gauge('metadata_refresh_last_success_timestamp_seconds', 'The latest successful IdP metadata refresh of any credential (Unix time).', (f) => (f.last_success ? f.last_success.getTime() / 1000 : null));
  gauge('metadata_refresh_oldest_success_timestamp_seconds', 'The oldest latest-success among refreshed credentials: the stalest metadata (Unix time).', (f) => (f.oldest_success ? f.oldest_success.getTime() / 1000 : null));
}
