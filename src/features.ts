import { consoleFeature } from './console/feature';
import type { Feature } from './feature';
import { idempotencyFeature } from './idempotency/feature';
import { infisicalFeature } from './infisical/feature';
import { openApiFeature } from './openapi/feature';
import { organizationsFeature } from './organizations/feature';
import { providerCredentialsFeature } from './provider-credentials/feature';
import { ssoFeature } from './sso/feature';

/** Every capability of the service; each wires itself in its own feature.ts. */
const CAPABILITIES: readonly Feature[] = [organizationsFeature, providerCredentialsFeature, infisicalFeature, idempotencyFeature, consoleFeature, ssoFeature];

/** The capabilities, and GET /openapi.json describing them. */
export const FEATURES: readonly Feature[] = [...CAPABILITIES, openApiFeature(CAPABILITIES)];
