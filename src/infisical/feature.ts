import { tokenSecrets } from '../config';
import type { Feature } from '../feature';
import { infisicalAdminRoutes, infisicalRoutes } from './routes';
import { infisicalOperations } from './operations';
import { samlConfigsTable } from './store';

/** Infisical-compatible SAML SSO config API (/api/v1/sso/config) and its access-token admin call. */
export const infisicalFeature: Feature = {
  name: 'infisical-saml-config',
  tables: [samlConfigsTable],
  routes: ({ db, repl, config, log }) => infisicalRoutes({ db, repl, tokenSecrets: tokenSecrets(config), log }),
  adminRoutes: ({ db, config }) => infisicalAdminRoutes({ db, tokenSigningSecret: config.tokenSigningSecret }),
  operations: infisicalOperations,
};
