/**
 * IdP metadata refresh figures for /metrics, read from metadata_refresh_state when Prometheus scrapes:
 * what GET /admin/metadata-refresh shows, as numbers an alert can use. Only credentials this region is
 * home to (the ones it refreshes).
 */
import { Gauge, type Registry } from 'prom-client';
import type { Db } from '../db/client';
import { shared } from '../observability/metrics';

interface RefreshFigures {
  due: number;
  failing: number;
  last_success: Date | null;
  oldest_success: Date | null;
}

export function registerRefreshMetrics(registry: Registry, db: Db, region: string): void {
  // The gauges of one scrape share one query.
  const figures = shared(async (): Promise<RefreshFigures | null> => {
    const rows = await db.$queryRawUnsafe<{ due: bigint; failing: bigint; last_success: Date | null; oldest_success: Date | null }[]>(
      // "Due" as the refresher selects it: by schedule, or at once when the stored document is for another URL.
      `SELECT count(*) FILTER (WHERE coalesce(s.next_at, c.updated_at) <= now() OR m.idp_metadata_url IS DISTINCT FROM c.idp_metadata_url) AS due,
              count(*) FILTER (WHERE s.consecutive_failures > 0) AS failing,
              max(s.last_success_at) AS last_success,
              min(s.last_success_at) AS oldest_success
         FROM saml_provider_credentials c
         LEFT JOIN saml_credential_metadata m ON m.credential_id = c.id AND m.deleted_at IS NULL
         LEFT JOIN metadata_refresh_state s ON s.credential_id = c.id
        WHERE c.home_region = $1 AND c.deleted_at IS NULL`,
      region,
    );
    const r = rows[0];
    return r ? { due: Number(r.due), failing: Number(r.failing), last_success: r.last_success, oldest_success: r.oldest_success } : null;
  });
  const gauge = (name: string, help: string, value: (f: RefreshFigures) => number | null) =>
    new Gauge({ name, help, registers: [registry], async collect() {
      this.reset();
      const f = await figures();
      const v = f ? value(f) : null;
      if (v !== null) this.set(v);
    } });
  gauge('metadata_refresh_due', 'Credentials this region is home to whose IdP metadata is due for a refresh now.', (f) => f.due);
  gauge('metadata_refresh_failing', 'Credentials whose last IdP metadata refresh failed (they keep their last good metadata).', (f) => f.failing);
  gauge('metadata_refresh_last_success_timestamp_seconds', 'The latest successful IdP metadata refresh of any credential (Unix time).', (f) => (f.last_success ? f.last_success.getTime() / 1000 : null));
  gauge('metadata_refresh_oldest_success_timestamp_seconds', 'The oldest latest-success among refreshed credentials: the stalest metadata (Unix time).', (f) => (f.oldest_success ? f.oldest_success.getTime() / 1000 : null));
}
