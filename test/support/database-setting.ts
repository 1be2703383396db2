/**
 * A Postgres setting on a region's database (ALTER DATABASE … SET: every new session of it), in place before
 * the region starts, so that every session of the region has it without a restart of the region. The
 * database is created and migrated first, as the region would do it (the region then finds nothing to
 * migrate), and `prepare` runs on it after.
 */
import { Client } from 'pg';
import { ensureDatabase, migrate } from '../../src/db/migrate';
import type { Cluster } from './harness';
import type { TestDeployment } from './env';

type Setting = 'statement_timeout' | 'lock_timeout';

/** For startCluster's `beforeStart`. */
export function databaseSetting(
  region: string,
  setting: Setting,
  value: string,
  prepare: (admin: Client) => Promise<void> = async () => undefined,
): (deployment: TestDeployment) => Promise<void> {
  return async (deployment) => {
    const dbUrl = deployment.configFor(region).region.databaseUrl;
    await ensureDatabase(dbUrl);
    await migrate(dbUrl);
    const admin = new Client({ connectionString: dbUrl });
    await admin.connect();
    try {
      await admin.query(`ALTER DATABASE "${new URL(dbUrl).pathname.slice(1)}" SET ${setting} = '${value}'`);
      await prepare(admin);
    } finally {
      await admin.end();
    }
  };
}

/** A client of the region's database with the setting off, for the test's own statements. */
export async function clientWithout(cluster: Cluster, region: string, setting: Setting): Promise<Client> {
  const db = new Client({ connectionString: cluster.deployment.configFor(region).region.databaseUrl, options: `-c ${setting}=0` });
  await db.connect();
  return db;
}
