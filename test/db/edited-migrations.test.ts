/**
 * Upgrading a database that an earlier commit of main migrated with a file since edited (or dropped): the
 * region of this version starts on it, brings it to what the current files make, and serves. It refused to
 * start ("changed after it was applied (checksum mismatch)"), so such a deployment could not be upgraded.
 * The earlier files are in test/fixtures/edited-migrations, as those commits shipped them.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { DROPPED_MIGRATIONS, EDITED_MIGRATIONS } from '../../src/db/edited-migrations';
import { ensureDatabase, listMigrations, migrate, MIGRATIONS_DIR } from '../../src/db/migrate';
import { PROJECT_ROOT } from '../../src/paths';
import { call, createOrg, slashidHeaders, startCluster, type Cluster } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';

const REGION = 'us-iowa';
const EARLIER = path.join(PROJECT_ROOT, 'test', 'fixtures', 'edited-migrations');
/** `<migration name>.<commit>.sql` */
const earlierFiles = fs.readdirSync(EARLIER).map((f) => {
  const [name, commit] = f.split('.');
  const sql = fs.readFileSync(path.join(EARLIER, f), 'utf8');
  return { name: name as string, commit: commit as string, sql, checksum: crypto.createHash('sha256').update(sql).digest('hex') };
});

let cluster: Cluster;
let idp: IdpServer;
let pg: Client;
/** prisma/migrations as the earlier commits had it. */
let dir: string;
/** What the earlier commits' migrations left, read before the region of this version started on it. */
let beforeUpgrade: Record<string, unknown>;

beforeAll(async () => {
  // prisma/migrations as those commits had it: the edited files in their earlier form, the dropped one present.
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edited-migrations-'));
  fs.cpSync(MIGRATIONS_DIR, dir, { recursive: true });
  for (const f of earlierFiles.filter((e) => e.commit !== '8cbb036')) {
    fs.mkdirSync(path.join(dir, f.name), { recursive: true });
    fs.writeFileSync(path.join(dir, f.name, 'migration.sql'), f.sql);
  }
  idp = await startIdpServer();
  // The database as those commits left it, made before the region of this version first starts on it (the
  // upgrade): migrated with their files, and a delivery row whose outbox row the relay of such a version deleted.
  cluster = await startCluster('editedmig', [REGION], {
    extra: { metadataAllowedHosts: [idp.hostPort] },
    // Not a copy of the migrated template: the earlier commits' files migrate it below.
    absentDatabases: true,
    beforeStart: async (deployment) => {
      const url = deployment.configFor(REGION).region.databaseUrl;
      await ensureDatabase(url);
      await migrate(url, dir);
      const earlier = new Client({ connectionString: url });
      await earlier.connect();
      try {
        const q = async (sql: string) => (await earlier.query(sql)).rows[0] as Record<string, unknown> | undefined;
        beforeUpgrade = {
          trustIdColumns: await q(`SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'saml_credential_metadata' AND column_name = 'trust_id'`),
          trustSettingChecksum: await q(`SELECT checksum FROM "_prisma_migrations" WHERE migration_name = '20261203090000_credential_trust_setting'`),
        };
        await earlier.query(`INSERT INTO replication_deliveries (change_id, region, stream_id) VALUES ($1, 'europe-belgium', '1-0')`, [crypto.randomUUID()]);
      } finally {
        await earlier.end();
      }
    },
  });
  pg = new Client({ connectionString: cluster.deployment.configFor(REGION).region.databaseUrl });
  await pg.connect();
}, 120_000);
afterAll(async () => {
  await pg?.end();
  await cluster?.stop();
  await idp?.close();
});

const one = async (sql: string, values: unknown[] = []) => (await pg.query(sql, values)).rows[0] as Record<string, unknown> | undefined;

test('every earlier file listed is one of the fixtures, with its checksum', () => {
  for (const [name, versions] of Object.entries(EDITED_MIGRATIONS)) {
    for (const v of versions) expect(earlierFiles.find((f) => f.name === name && f.commit === v.commit)?.checksum).toBe(v.checksum);
  }
  for (const [name, dropped] of Object.entries(DROPPED_MIGRATIONS)) {
    expect(earlierFiles.filter((f) => f.name === name).map((f) => f.checksum).sort()).toEqual([...dropped.checksums].sort());
  }
});

test('a database migrated with since-edited files is brought up to date at start, and the region serves', async () => {
  // What those commits left: the earlier checksums, no trust_id column, no delivery trigger, no statistics,
  // rows kept inline. The region of this version (this version's files) has started on it: the upgrade.
  expect(beforeUpgrade.trustIdColumns).toEqual({ n: 0 });
  expect(beforeUpgrade.trustSettingChecksum).toEqual({
    checksum: EDITED_MIGRATIONS['20261203090000_credential_trust_setting']?.[0]?.checksum,
  });

  // Each edited migration keeps the checksum of the file that ran (the version that shipped it compares it),
  // and its record says it was brought up to date with the current file.
  const current = listMigrations().map((m) => [m.name, EDITED_MIGRATIONS[m.name]?.[0]?.checksum ?? m.checksum]);
  const recorded = (await pg.query(`SELECT migration_name, checksum, logs FROM "_prisma_migrations" WHERE rolled_back_at IS NULL`)).rows as { migration_name: string; checksum: string; logs: string | null }[];
  expect(Object.fromEntries(recorded.map((r) => [r.migration_name, r.checksum]))).toEqual(Object.fromEntries(current));
  for (const m of listMigrations().filter((m) => EDITED_MIGRATIONS[m.name])) {
    expect(recorded.find((r) => r.migration_name === m.name)?.logs).toBe(`brought up to date with the file of checksum ${m.checksum}`);
  }
  expect(await one(`SELECT rolled_back_at IS NOT NULL AS undone FROM "_prisma_migrations" WHERE migration_name = '20261201150000_rows_inline'`)).toEqual({ undone: true });
  expect(await one(`SELECT count(*)::int AS n FROM pg_trigger WHERE tgname = 'replication_outbox_deleted'`)).toEqual({ n: 1 });
  expect(await one(`SELECT count(*)::int AS n FROM replication_deliveries`)).toEqual({ n: 0 });
  expect(await one(`SELECT count(*)::int AS n FROM pg_statistic_ext WHERE stxname = 'saml_credential_metadata_held_stats'`)).toEqual({ n: 1 });
  const inline = await pg.query(`SELECT relname FROM pg_class WHERE array_to_string(reloptions, ',') LIKE '%toast_tuple_target%'`);
  expect(inline.rows).toEqual([]);

  // A create writes the metadata row with its trust id (it failed without the column).
  const org = await createOrg(cluster.url(REGION));
  const created = await call(cluster.url(REGION), 'POST', '/organizations/sso/saml/provider-credentials', {
    body: { idp_metadata_url: idp.url('okta.xml'), label: 'after the upgrade' },
    headers: slashidHeaders(org),
  });
  expect(created.status).toBe(201);
  const row = await one('SELECT trust_id FROM saml_credential_metadata WHERE credential_id = $1', [created.body.result.id]);
  expect(row?.trust_id).toEqual(expect.any(String));
  expect((await call(cluster.url(REGION), 'GET', `/organizations/sso/saml/provider-credentials/${created.body.result.id}/metadata`, { headers: slashidHeaders(org) })).status).toBe(200);

  // Once is enough: the next start has nothing to do.
  expect(await migrate(cluster.deployment.configFor(REGION).region.databaseUrl)).toEqual([]);
}, 120_000);

test('a metadata row as 2d05ef9 wrote it (its trust id in the document) is shown without that id', async () => {
  const org = await createOrg(cluster.url(REGION), 'legacy row');
  const created = await call(cluster.url(REGION), 'POST', '/organizations/sso/saml/provider-credentials', {
    body: { idp_metadata_url: idp.url('okta.xml'), label: 'legacy' },
    headers: slashidHeaders(org),
  });
  expect(created.status).toBe(201);
  const id = created.body.result.id as string;
  await pg.query(`UPDATE saml_credential_metadata SET metadata = metadata || jsonb_build_object('trust_id', trust_id), trust_id = NULL WHERE credential_id = $1`, [id]);
  const got = await call(cluster.url(REGION), 'GET', `/organizations/sso/saml/provider-credentials/${id}/metadata`, { headers: slashidHeaders(org) });
  expect(got.status).toBe(200);
  expect(got.body.result.metadata.entity_id).toEqual(expect.any(String));
  expect(got.body.result.metadata).not.toHaveProperty('trust_id');
});

test('a region rolled back to the version that migrated it (or a process of it restarted before its upgrade) starts again, and the upgrade is not redone', async () => {
  // That version's migrator compares each applied migration's recorded checksum with its file's and refuses
  // a difference, as this one does for a checksum it does not know: this version run on that version's files
  // stands for it. The catch-up had recorded the current file's checksum, which that version refused.
  const url = cluster.deployment.configFor(REGION).region.databaseUrl;
  const p = cluster.proc(REGION);
  await p.stop();
  p.opts.env.MIGRATIONS_DIR = dir;
  p.start();
  await p.waitReady(60_000).catch((err: Error) => {
    throw new Error(`${err.message}\n${cluster.logs(REGION).slice(-5).join('\n')}`);
  });
  const edited = Object.keys(EDITED_MIGRATIONS);
  const recorded = await pg.query(`SELECT migration_name, checksum FROM "_prisma_migrations" WHERE migration_name = ANY($1) AND rolled_back_at IS NULL ORDER BY 1`, [edited]);
  expect(recorded.rows).toEqual(edited.sort().map((name) => ({ migration_name: name, checksum: EDITED_MIGRATIONS[name]?.[0]?.checksum })));
  // Upgraded again: what the catch-ups made is there, so only the dropped migration that version applied again is undone.
  await p.stop();
  delete p.opts.env.MIGRATIONS_DIR;
  p.start();
  await p.waitReady(60_000);
  expect(await migrate(url)).toEqual([]);
  const logs = await pg.query(`SELECT logs FROM "_prisma_migrations" WHERE migration_name = ANY($1) AND rolled_back_at IS NULL`, [edited]);
  for (const r of logs.rows) expect(String(r.logs).split('\n')).toHaveLength(1);
  expect(await one(`SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'saml_credential_metadata' AND column_name = 'trust_id'`)).toEqual({ n: 1 });
}, 180_000);

test('a migration file this version does not know stops the region with one line saying what to do', async () => {
  const p = cluster.proc(REGION);
  await p.stop();
  const name = '20261203210000_replication_discarded';
  await pg.query(`UPDATE "_prisma_migrations" SET checksum = $1 WHERE migration_name = $2`, ['0'.repeat(64), name]);
  const from = cluster.logs(REGION).length;
  p.start();
  await expect(p.waitReady(60_000)).rejects.toThrow(/exited before it was ready/);
  const lines = cluster.logs(REGION).slice(from);
  expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^fatal: cannot prepare the region's database at .*: migration ${name} was changed after it was applied \\(checksum mismatch\\): .*start the version that migrated it`)));
  // One line: no stack trace of ours.
  expect(lines.filter((l) => /^\s+at /.test(l))).toEqual([]);
}, 120_000);
