/**
 * A `pg` client on each region database of a test deployment, for tests that read or plant rows under the
 * regions: `db(region)` while they run, `end()` in afterAll. And whether a database exists at all, for tests
 * of what a start or a script creates.
 */
import { Client } from 'pg';
import { PG_BASE, type TestDeployment } from './env';

export interface RegionDatabases {
  db(region: string): Client;
  end(): Promise<void>;
}

export async function regionDatabases(deployment: Pick<TestDeployment, 'file'>): Promise<RegionDatabases> {
  const clients = new Map<string, Client>();
  for (const r of deployment.file.regions) {
    const c = new Client({ connectionString: r.databaseUrl });
    await c.connect();
    clients.set(r.id, c);
  }
  return {
    db(region) {
      const c = clients.get(region);
      if (!c) throw new Error(`no database client for region ${region}`);
      return c;
    },
    async end() {
      for (const c of clients.values()) await c.end();
    },
  };
}

/** Whether the test Postgres has a database of this name (asked on the maintenance database). */
export async function databaseExists(name: string): Promise<boolean> {
  const client = new Client({ connectionString: `${PG_BASE}/postgres` });
  await client.connect();
  try {
    return (await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1;
  } finally {
    await client.end();
  }
}
