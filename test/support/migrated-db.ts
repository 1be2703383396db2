/**
 * A test deployment's one region database, created and migrated, with a database client on it: for tests
 * of the data layer that need no region process. `close()` disconnects and drops what it made.
 */
import { createDb, poolOf, type Db } from '../../src/db/client';
import { ensureDatabase, migrate } from '../../src/db/migrate';
import { createDeployment, type TestDeployment } from './env';

export interface MigratedDb {
  dep: TestDeployment;
  url: string;
  db: Db;
  close(): Promise<void>;
}

export async function migratedDb(label: string): Promise<MigratedDb> {
  const dep = await createDeployment(label, ['us-iowa']);
  const url = dep.file.regions[0]?.databaseUrl ?? '';
  await ensureDatabase(url);
  await migrate(url);
  const db = createDb(url);
  return {
    dep,
    url,
    db,
    async close() {
      await db.$disconnect();
      // The client leaves its pool open when only the pool was used (poolOf): the database's drop would end
      // its idle connections with an error nobody handles.
      const pool = poolOf(db);
      if (!pool.ended) await pool.end();
      await dep.cleanup();
    },
  };
}
