import type { Feature } from '../feature';
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
};
