import type { Feature } from '../feature';
import { startApiKeyCache } from './api-key-cache';
import { changeRoutes } from './change-routes';
import { organizationOperations } from './operations';
import { organizationAdminRoutes } from './routes';
import { apiKeysTable, organizationsTable } from './store';

export const organizationsFeature: Feature = {
  name: 'organizations',
  tables: [organizationsTable, apiKeysTable],
  routes: ({ db, repl }) => changeRoutes({ db, repl }),
  adminRoutes: ({ db, repl }) => organizationAdminRoutes({ db, repl }),
  operations: organizationOperations,
  // API-key checks are answered from memory while this region's database notifies key changes.
  start: ({ db, config, log }) => startApiKeyCache(db, config.region.databaseUrl, log).stop,
};
