import type { Feature } from '../feature';
import { ssoRoutes } from './routes';

/** SAML single sign-on: every region is the service provider of every credential (no tables of its own). */
export const ssoFeature: Feature = {
  name: 'saml-sso',
  tables: [],
  routes: ({ db, redis, config }) => ssoRoutes({ db, redis, config }),
};
