/**
 * Every replicated table of the service, in the order the features list them (src/features.ts), for what
 * needs the tables without the features' routes: `npm run reseed` loaded every feature (express, the SAML
 * library, the console) for them, ~0.6 s of CPU per run. test/tables.test.ts keeps the two lists equal.
 */
import { idempotencyKeysTable } from './idempotency/store';
import { samlConfigsTable } from './infisical/store';
import { apiKeysTable, organizationsTable } from './organizations/store';
import { credentialsTable, metadataTable } from './provider-credentials/store';
import type { ReplicatedTable } from './replication/tables';
import { settingsTable } from './sso/store';

export const REPLICATED_TABLES: readonly ReplicatedTable[] = [
  organizationsTable, apiKeysTable, credentialsTable, metadataTable, samlConfigsTable, idempotencyKeysTable, settingsTable,
];
