import type { Feature } from '../feature';
import { ssoOperations } from './operations';
import { ssoRoutes } from './routes';
import { settingsTable } from './store';

/** SAML single sign-on: every region is the service provider of every credential; per-credential settings. */
export const ssoFeature: Feature = {
  name: 'saml-sso',
  tables: [settingsTable],
  routes: ({ db, redis, config, repl, log }) => ssoRoutes({ db, redis, config, repl, log }),
  operations: ssoOperations,
};
