import type { Feature } from '../feature';
import { organizationAdminRoutes } from './routes';
import { apiKeysTable, organizationsTable } from './store';

export const organizationsFeature: Feature = {
  name: 'organizations',
  tables: [organizationsTable, apiKeysTable],
  adminRoutes: ({ db, repl }) => organizationAdminRoutes({ db, repl }),
};
