/**
 * The cluster's secrets file: `.cluster/<config name>.env` next to the regions config, where `npm run cluster`
 * keeps the secrets it made up (scripts/cluster.ts), and where `npm run reseed` and `npm run members` find
 * REPLICATION_KEYS.
 */
import fs from 'node:fs';
import path from 'node:path';
import { OTHER_CONFIG_SECRETS, readSecrets, secretsPath } from '../src/cluster/secrets-file';
import { ConfigError, replicationKeysOf } from '../src/config';
import type { AckSignatures } from '../src/config-schema';
import { AckSigning } from '../src/replication/ack-auth';
import { EventAuth } from '../src/replication/event-auth';

export { readSecrets, secretsPath };

/**
 * REPLICATION_KEYS from the environment, else from the cluster's secrets file (what `npm run cluster` started the
 * regions with). When neither has them, the ConfigError says where it looked and that they must be the regions'
 * keys: the region's own message suggests making one up (`openssl rand`), which for a script acting on a running
 * deployment would only sign entries the regions refuse.
 */
export function replicationKeys(configPath: string) {
  const file = secretsPath(configPath);
  const fromFile = process.env.REPLICATION_KEYS ? undefined : readSecrets(file, ['REPLICATION_KEYS']).get('REPLICATION_KEYS');
  if (!process.env.REPLICATION_KEYS && fromFile === undefined) {
    const there = fs.existsSync(file) ? `${file} has no REPLICATION_KEYS line` : `there is no ${file}`;
    throw new ConfigError(
      `REPLICATION_KEYS must be set to the keys the regions run with: it is not in the environment, and ${there} ` +
        `(where npm run cluster keeps the secrets of ${path.basename(configPath)}). Export the keys the regions run with ` +
        `(${OTHER_CONFIG_SECRETS}); ` +
        'a key made up here would not be theirs',
    );
  }
  return replicationKeysOf(fromFile === undefined ? process.env : { ...process.env, REPLICATION_KEYS: fromFile });
}

/**
 * How an operator script signs the membership entries it writes, and judges the acks it reads, as the regions
 * of config `ackSignatures` do: null when `off`; otherwise with the regions' keys (replicationKeys), which it
 * then needs (a ConfigError without them: exit 2, before anything is done).
 */
export function scriptSigning(file: { ackSignatures?: AckSignatures }, configPath: string): AckSigning | null {
  const mode = file.ackSignatures ?? 'off';
  return mode === 'off' ? null : new AckSigning(new EventAuth(replicationKeys(configPath)), mode);
}
