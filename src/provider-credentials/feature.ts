import type { Feature } from '../feature';
import { MetadataRefresher, metadataRefreshAdminRoutes } from './metadata-refresh';
import { providerCredentialOperations } from './operations';
import { registerRefreshMetrics } from './refresh-metrics';
import { providerCredentialRoutes } from './routes';
import { credentialsTable, metadataTable } from './store';

export const providerCredentialsFeature: Feature = {
  name: 'slashid-provider-credentials',
  tables: [credentialsTable, metadataTable],
  routes: ({ db, repl, config }) => providerCredentialRoutes({ db, repl, config }),
  adminRoutes: ({ db, repl }) => metadataRefreshAdminRoutes(db, repl.region, repl),
  metrics: ({ db, repl }, registry) => registerRefreshMetrics(registry, db, repl.region),
  operations: providerCredentialOperations,
  start: (deps) => {
    const refresher = new MetadataRefresher(deps);
    refresher.start();
    return () => refresher.stop();
  },
};
