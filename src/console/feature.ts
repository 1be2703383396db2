import type { Feature } from '../feature';
import { consoleOperations } from './operations';
import { consolePages, deploymentAdminRoutes } from './routes';

/** The deployment console: a page every region serves, and the admin route that gathers every region's status. */
export const consoleFeature: Feature = {
  name: 'deployment-console',
  tables: [],
  pages: () => consolePages(),
  adminRoutes: ({ config }) => deploymentAdminRoutes(config),
  operations: consoleOperations,
};
