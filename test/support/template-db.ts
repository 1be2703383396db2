/**
 * One migrated database per jest run, that test deployments copy their region databases from
 * (CREATE DATABASE … TEMPLATE): a copy costs Postgres about a third of CREATE DATABASE plus every migration,
 * and the region's own start then finds its database there with nothing to migrate. The suite creates a few
 * hundred databases on 2-core hosts where Postgres's CPU counts.
 *
 * The template is the run's own (its name carries this host, the jest process's pid and a random part), so
 * two runs on one Postgres never share or drop each other's: CREATE DATABASE … TEMPLATE fails while anyone is
 * connected to the template, so nobody may connect to it once it is migrated (ALLOW_CONNECTIONS false). The
 * global teardown drops it; one a killed run left behind is dropped by the next run's setup on the same host
 * (its jest process gone). Set TEST_DATABASE_TEMPLATE=off to have every region create and migrate its own
 * database, as the service does.
 */
import crypto from 'node:crypto';
import os from 'node:os';
import { Client } from 'pg';
import { listMigrations, migrate } from '../../src/db/migrate';
import { alive } from './process-alive';

/** The run's template database's name, for the test files (set by the global setup). */
export const TEMPLATE_ENV = 'TEST_TEMPLATE_DATABASE';
/** The digest of the migrations the template holds: a process that would apply others does not copy it. */
export const TEMPLATE_MIGRATIONS_ENV = 'TEST_TEMPLATE_MIGRATIONS';
/** `off`: no template; each region creates and migrates its database at its start. */
export const TEMPLATE_SWITCH_ENV = 'TEST_DATABASE_TEMPLATE';

const PREFIX = 't_template_';
const hostTag = () => crypto.createHash('sha256').update(os.hostname()).digest('hex').slice(0, 8);

/** What `dir`'s migrations are, as one digest (names and checksums, in order). */
export function migrationsDigest(dir?: string): string {
  const h = crypto.createHash('sha256');
  for (const m of listMigrations(dir)) h.update(`${m.name}\0${m.checksum}\n`);
  return h.digest('hex').slice(0, 16);
}

const adminUrl = (pgBase: string) => `${pgBase}/postgres`;

async function withAdmin<T>(pgBase: string, work: (admin: Client) => Promise<T>): Promise<T> {
  const admin = new Client({ connectionString: adminUrl(pgBase) });
  await admin.connect();
  try {
    return await work(admin);
  } finally {
    await admin.end();
  }
}

/** Drops the templates of this host's runs whose jest process is gone (killed before its teardown). */
async function dropStale(admin: Client): Promise<void> {
  const mine = `${PREFIX}${hostTag()}_`;
  const { rows } = await admin.query<{ datname: string }>('SELECT datname FROM pg_database WHERE starts_with(datname, $1)', [mine]);
  for (const { datname } of rows) {
    const pid = Number(datname.slice(mine.length).split('_')[0]);
    if (!Number.isInteger(pid) || pid <= 0 || alive(pid)) continue;
    await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`).catch(() => undefined);
  }
}

/**
 * Creates and migrates the run's template on the Postgres of `pgBase`, sets the environment the test files
 * read (TEMPLATE_ENV, TEMPLATE_MIGRATIONS_ENV), and returns its name; null (and nothing set) when switched off
 * or when the template cannot be made (then each region makes its own database, as without it).
 */
export async function createTemplate(pgBase: string): Promise<string | null> {
  delete process.env[TEMPLATE_ENV];
  delete process.env[TEMPLATE_MIGRATIONS_ENV];
  if (process.env[TEMPLATE_SWITCH_ENV] === 'off') return null;
  const name = `${PREFIX}${hostTag()}_${process.pid}_${crypto.randomBytes(3).toString('hex')}`;
  try {
    await withAdmin(pgBase, async (admin) => {
      await dropStale(admin);
      await admin.query(`CREATE DATABASE "${name}"`);
    });
    const digest = migrationsDigest();
    await migrate(`${pgBase}/${name}`);
    // From now on a connection to it would make every copy fail ("source database … is being accessed").
    await withAdmin(pgBase, (admin) => admin.query(`ALTER DATABASE "${name}" WITH ALLOW_CONNECTIONS false`));
    process.env[TEMPLATE_ENV] = name;
    process.env[TEMPLATE_MIGRATIONS_ENV] = digest;
    return name;
  } catch (err) {
    console.warn(`test database template not made (each region creates and migrates its own database): ${(err as Error).message}`);
    await dropTemplate(pgBase, name).catch(() => undefined);
    return null;
  }
}

/** Drops the run's template (global teardown). */
export async function dropTemplate(pgBase: string, name = process.env[TEMPLATE_ENV]): Promise<void> {
  if (!name?.startsWith(PREFIX)) return;
  await withAdmin(pgBase, (admin) => admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
}

let digestHere: string | undefined;

/** The run's template, when this process's migrations are the ones it holds; null otherwise. */
export function usableTemplate(): string | null {
  const name = process.env[TEMPLATE_ENV];
  const digest = process.env[TEMPLATE_MIGRATIONS_ENV];
  if (!name || !digest) return null;
  digestHere ??= migrationsDigest();
  return digestHere === digest ? name : null;
}

/**
 * Creates each of `databaseUrls` (absent: fresh names) as a copy of `template`, as the region's start would
 * create and migrate it. Each copy gets ids of its own for its migrations' records: the first one's id is
 * the database's identity (src/replication/restore-check.ts), which a migration run per database makes random.
 */
export async function copyTemplate(pgBase: string, template: string, databaseUrls: readonly string[]): Promise<void> {
  if (databaseUrls.length === 0) return;
  const names = databaseUrls.map((u) => decodeURIComponent(new URL(u).pathname.slice(1)));
  await withAdmin(pgBase, async (admin) => {
    for (const n of names) await admin.query(`CREATE DATABASE "${n}" TEMPLATE "${template}"`);
  });
  await Promise.all(
    databaseUrls.map(async (url) => {
      const c = new Client({ connectionString: url });
      await c.connect();
      try {
        await c.query('UPDATE "_prisma_migrations" SET id = gen_random_uuid()::text');
      } finally {
        await c.end();
      }
    }),
  );
}
