/**
 * A `pg` client on each region database of a test deployment, for tests that read or plant rows under the
 * regions: `db(region)` while they run, `end()` in afterAll.
 */
import { Client } from 'pg';
import type { TestDeployment } from './env';

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
