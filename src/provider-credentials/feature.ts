import type { Feature } from '../feature';
import { MetadataRefresher } from './metadata-refresh';
import { metadataRefreshAdminRoutes } from './metadata-refresh-admin';
import { providerCredentialOperations } from './operations';
import { registerRefreshMetrics } from './refresh-metrics';
import { providerCredentialRoutes } from './routes';
import { credentialsTable, metadataTable } from './store';

/** Each region's refresher, for its figures in /metrics (the feature's metrics and start get the same deps). */
const refreshers = new WeakMap<object, MetadataRefresher>();

export const providerCredentialsFeature: Feature = {
  name: 'slashid-provider-credentials',
  tables: [credentialsTable, metadataTable],
  routes: ({ db, repl, config }) => providerCredentialRoutes({ db, repl, config }),
  adminRoutes: ({ db, repl, config }) => metadataRefreshAdminRoutes(db, repl.region, repl, config),
  metrics: ({ db, repl }, registry) => registerRefreshMetrics(registry, db, repl.region, () => refreshers.get(repl)?.foundWaiting ?? [], () => repl.departures()),
  operations: providerCredentialOperations,
  start: (deps) => {
    const refresher = new MetadataRefresher(deps);
    refreshers.set(deps.repl, refresher);
    refresher.start();
    return () => refresher.stop();
  },
};
