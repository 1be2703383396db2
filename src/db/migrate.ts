/**
 * Applies prisma/migrations/<name>/migration.sql in name order and records each in _prisma_migrations
 * exactly as `prisma migrate deploy` would, so a connected machine's Prisma CLI sees them as applied.
 * We need our own migrator because the Prisma schema engine cannot be downloaded on the build machines.
 * It also creates the region's database when it does not exist yet.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Client } from 'pg';
import { PROJECT_ROOT } from '../paths';
import { DROPPED_MIGRATIONS, EDITED_MIGRATIONS } from './edited-migrations';

/** prisma/migrations, or the directory MIGRATIONS_DIR names (tests run two schema versions side by side with it). */
export const MIGRATIONS_DIR = process.env.MIGRATIONS_DIR || path.join(PROJECT_ROOT, 'prisma', 'migrations');

const CREATE_MIGRATIONS_TABLE = `
CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
  "id" VARCHAR(36) PRIMARY KEY NOT NULL,
  "checksum" VARCHAR(64) NOT NULL,
  "finished_at" TIMESTAMPTZ,
  "migration_name" VARCHAR(255) NOT NULL,
  "logs" TEXT,
  "rolled_back_at" TIMESTAMPTZ,
  "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
  "applied_steps_count" INTEGER NOT NULL DEFAULT 0
)`;

// Any constant works; it only has to be the same for every process that migrates the same database.
const MIGRATION_LOCK_KEY = 72_707_369;

export function listMigrations(dir = MIGRATIONS_DIR): { name: string; sql: string; checksum: string }[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort()
    .map((name) => {
      const sql = fs.readFileSync(path.join(dir, name, 'migration.sql'), 'utf8');
      return { name, sql, checksum: crypto.createHash('sha256').update(sql).digest('hex') };
    });
}

/** Creates the database named in the URL if it does not exist (connecting to the `postgres` database to create it). */
export async function ensureDatabase(databaseUrl: string): Promise<boolean> {
  const url = new URL(databaseUrl);
  const dbName = decodeURIComponent(url.pathname.slice(1));
  if (!/^[A-Za-z0-9_-]{1,63}$/.test(dbName)) throw new Error(`unsupported database name '${dbName}'`);
  // The database itself first: a deployment's role may be allowed into its own database only (pg_hba, a
  // pooler that lists it alone, a managed server), and then the maintenance database below refuses it.
  if (await databaseAnswers(databaseUrl)) return false;
  url.pathname = '/postgres';
  const admin = new Client({ connectionString: url.toString() });
  await admin.connect();
  try {
    const found = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [dbName]);
    if (found.rowCount) return false;
    try {
      await admin.query(`CREATE DATABASE "${dbName}"`);
    } catch (err) {
      // Another process of the same region created it first.
      if ((err as { code?: string }).code !== '42P04' && (err as { code?: string }).code !== '23505') throw err;
      return false;
    }
    return true;
  } finally {
    await admin.end();
  }
}

/** Whether the database exists and lets this role in; false only when the server says it does not exist. */
async function databaseAnswers(databaseUrl: string): Promise<boolean> {
  const client = new Client({ connectionString: databaseUrl });
  try {
    await client.connect();
    return true;
  } catch (err) {
    if ((err as { code?: string }).code === '3D000') return false;
    throw err;
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function dropDatabase(databaseUrl: string): Promise<void> {
  const url = new URL(databaseUrl);
  const dbName = decodeURIComponent(url.pathname.slice(1));
  url.pathname = '/postgres';
  const admin = new Client({ connectionString: url.toString() });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}

/**
 * Applies pending migrations; returns the names applied (and, named so, those brought up to date from an
 * earlier file or undone: see edited-migrations.ts). Safe to run from several processes at once.
 */
export async function migrate(databaseUrl: string, dir = MIGRATIONS_DIR): Promise<string[]> {
  const client = new Client({ connectionString: databaseUrl });
  await client.connect();
  const applied: string[] = [];
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    await client.query(CREATE_MIGRATIONS_TABLE);
    const done = await client.query<{ migration_name: string; checksum: string; logs: string | null }>(
      'SELECT migration_name, checksum, logs FROM "_prisma_migrations" WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL',
    );
    const doneByName = new Map(done.rows.map((r) => [r.migration_name, r.checksum]));
    const logsByName = new Map(done.rows.map((r) => [r.migration_name, r.logs ?? '']));
    const listed = listMigrations(dir);
    for (const m of listed) {
      const seen = doneByName.get(m.name);
      if (seen === m.checksum) continue;
      if (seen !== undefined) {
        const caughtUp = await catchUp(client, m, seen, logsByName.get(m.name) ?? '');
        if (caughtUp) applied.push(caughtUp);
        continue;
      }
      const id = crypto.randomUUID();
      await inTransaction(client, m.name, async () => {
        await client.query(
          'INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, applied_steps_count) VALUES ($1, $2, $3, now(), 0)',
          [id, m.checksum, m.name],
        );
        await client.query(m.sql);
        await client.query('UPDATE "_prisma_migrations" SET finished_at = now(), applied_steps_count = 1 WHERE id = $1', [id]);
      });
      applied.push(m.name);
    }
    for (const [name, dropped] of Object.entries(DROPPED_MIGRATIONS)) {
      const seen = doneByName.get(name);
      if (seen === undefined || !dropped.checksums.includes(seen) || listed.some((m) => m.name === name)) continue;
      await inTransaction(client, name, async () => {
        await client.query(dropped.undo);
        await client.query('UPDATE "_prisma_migrations" SET rolled_back_at = now() WHERE migration_name = $1 AND rolled_back_at IS NULL', [name]);
      });
      applied.push(`${name} (undone: no longer in prisma/migrations)`);
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => undefined);
    await client.end();
  }
  return applied;
}

/** The database's record of a migration this version cannot stand by: the region must not start on it. */
export class MigrationRefused extends Error {}

/** What the record of a migration applied from an earlier file says once it was brought up to date (its logs). */
const caughtUpMark = (checksum: string) => `brought up to date with the file of checksum ${checksum}`;

/**
 * A migration applied from another file than this version's: one an earlier commit of main shipped is brought
 * up to date (edited-migrations.ts), once (the record's logs say so), or null when it was already; any other
 * is refused. The record keeps the earlier file's checksum: the version that shipped that file compares it
 * and refuses a database whose record differs, so a process of that version (a region rolled back, or one
 * of its processes restarted before its upgrade) could not start on the database again.
 */
async function catchUp(client: Client, m: { name: string; checksum: string }, seen: string, logs: string): Promise<string | null> {
  const earlier = EDITED_MIGRATIONS[m.name]?.find((e) => e.checksum === seen);
  if (!earlier) {
    throw new MigrationRefused(
      `migration ${m.name} was changed after it was applied (checksum mismatch): this database ran a file of that name that this version does not know; ` +
        'start the version that migrated it, or put that file back in prisma/migrations',
    );
  }
  if (logs.includes(caughtUpMark(m.checksum))) return null;
  await inTransaction(client, m.name, async () => {
    await client.query(earlier.catchUp);
    await client.query(
      `UPDATE "_prisma_migrations" SET logs = concat_ws(E'\n', logs, $1::text)
        WHERE migration_name = $2 AND checksum = $3 AND finished_at IS NOT NULL AND rolled_back_at IS NULL`,
      [caughtUpMark(m.checksum), m.name, seen],
    );
  });
  return `${m.name} (brought up to date from the file of ${earlier.commit})`;
}

/** A migration's SQL that the database refused: rolled back, and the region must not start. */
export class MigrationFailed extends Error {}

async function inTransaction(client: Client, name: string, work: () => Promise<void>): Promise<void> {
  await client.query('BEGIN');
  try {
    await work();
    await client.query('COMMIT');
  } catch (err) {
    // A connection lost in the middle has nothing to roll back: the server already did.
    await client.query('ROLLBACK').catch(() => undefined);
    const e = err as Error & { code?: unknown };
    throw new MigrationFailed(
      `migration ${name} failed and was rolled back: ${e.message}${typeof e.code === 'string' ? ` (${e.code})` : ''}. ` +
        'The database is as it was before it; fix what the database names (an object or row in the way, a missing permission) and start again, ' +
        'or start the previous version',
      { cause: err },
    );
  }
}
