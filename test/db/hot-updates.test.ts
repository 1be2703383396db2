/**
 * Updates of replicated rows stay HOT (heap-only tuples): Postgres makes an UPDATE a HOT one only when no
 * column an index names (in its key, an expression or its predicate) changes, and every write of a
 * replicated row changes its version and updated_at (and its origin_region when another region wrote it).
 * A non-HOT update puts the new tuple wherever there is room and adds an entry to every index of the table:
 * with the tombstone indexes keyed by version (2026-12-01 to 2026-12-02), no update of a live row was HOT.
 */
import { Client } from 'pg';
import { FEATURES } from '../../src/features';
import { call, createOrg, eventually, slashidHeaders } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { startInProcess, type InProcessRegion } from '../support/in-process';

/** Columns a write of a replicated row changes whatever it changes otherwise. */
const CHANGED_BY_EVERY_WRITE = ['version', 'updated_at', 'origin_region'];

let r: InProcessRegion;
let idp: IdpServer;
let db: Client;

beforeAll(async () => {
  idp = await startIdpServer();
  r = await startInProcess('hot-updates', ['us-iowa'], { metadataAllowedHosts: [idp.hostPort] });
  db = new Client({ connectionString: r.deployment.file.regions[0]?.databaseUrl });
  await db.connect();
});
afterAll(async () => {
  await db.end();
  await r.stop();
  await idp.close();
});

test('no index of a replicated table names a column every write changes', async () => {
  const tables = FEATURES.flatMap((f) => f.tables.map((t) => t.name));
  expect(tables).toContain('saml_provider_credentials');
  const { rows } = await db.query<{ table: string; def: string }>(
    `SELECT c.relname AS table, pg_get_indexdef(i.indexrelid) AS def
       FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
      WHERE c.relname = ANY($1::text[])`,
    [tables],
  );
  expect(rows.length).toBeGreaterThan(tables.length);
  const offending = rows.filter((row) => CHANGED_BY_EVERY_WRITE.some((col) => new RegExp(`\\b${col}\\b`).test(row.def)));
  expect(offending).toEqual([]);
});

test('PATCHes of a credential are HOT updates in Postgres', async () => {
  const org = await createOrg(r.url, 'hot');
  const path = '/organizations/sso/saml/provider-credentials';
  const created = await call(r.url, 'POST', path, { body: { idp_metadata_url: idp.url('okta.xml'), label: 'v0' }, headers: slashidHeaders(org) });
  expect(created.status).toBe(201);
  const stats = async () =>
    (
      await db.query<{ upd: number; hot: number }>(
        "SELECT n_tup_upd::int AS upd, n_tup_hot_upd::int AS hot FROM pg_stat_user_tables WHERE relname = 'saml_provider_credentials'",
      )
    ).rows[0] ?? { upd: 0, hot: 0 };
  const before = await stats();
  const n = 12;
  for (let i = 1; i <= n; i++) {
    const res = await call(r.url, 'PATCH', `${path}/${created.body.result.id}`, { body: { label: `v${i}` }, headers: slashidHeaders(org) });
    expect(res.status).toBe(204);
  }
  // A backend reports its counts when idle, at most 10 s later (PGSTAT_IDLE_INTERVAL).
  expect(await eventually(async () => (await stats()).upd - before.upd >= n, 25_000, 250)).toBe(true);
  const after = await stats();
  expect(after.upd - before.upd).toBe(n);
  expect(after.hot - before.hot).toBe(n);
}, 60_000);
