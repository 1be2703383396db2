/**
 * Sets a Postgres setting on a region's database (ALTER DATABASE … SET: every new session of it, so the region's
 * once it is restarted), after `prepare` ran on that database, and restarts the region to take it. Returns a
 * client of that database with the setting off, for the test's own statements.
 */
import { Client } from 'pg';
import type { Cluster } from './harness';

export async function restartWithDatabaseSetting(
  cluster: Cluster,
  region: string,
  setting: 'statement_timeout' | 'lock_timeout',
  value: string,
  prepare: (admin: Client) => Promise<void> = async () => undefined,
): Promise<Client> {
  const dbUrl = new URL(cluster.deployment.configFor(region).region.databaseUrl);
  const admin = new Client({ connectionString: dbUrl.toString() });
  await admin.connect();
  try {
    await admin.query(`ALTER DATABASE "${dbUrl.pathname.slice(1)}" SET ${setting} = '${value}'`);
    await prepare(admin);
  } finally {
    await admin.end();
  }
  await cluster.proc(region).restart();
  await cluster.proc(region).waitReady(60_000);
  const db = new Client({ connectionString: dbUrl.toString(), options: `-c ${setting}=0` });
  await db.connect();
  return db;
}
