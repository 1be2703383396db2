-- The refresh figures for /metrics read the failing credentials and the oldest and newest successes
-- through these instead of joining every credential on each scrape (src/provider-credentials/refresh-metrics.ts).
CREATE INDEX "metadata_refresh_state_failing_idx" ON "metadata_refresh_state"("credential_id") WHERE "consecutive_failures" > 0;
CREATE INDEX "metadata_refresh_state_last_success_at_idx" ON "metadata_refresh_state"("last_success_at");
