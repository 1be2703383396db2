import type { Feature } from '../feature';
import { providerCredentialRoutes } from './routes';
import { credentialsTable } from './store';

export const providerCredentialsFeature: Feature = {
  name: 'slashid-provider-credentials',
  tables: [credentialsTable],
  routes: ({ db, repl }) => providerCredentialRoutes({ db, repl }),
};
