/**
 * Rolling upgrades: two schema versions side by side. europe-belgium runs with one more migration than
 * us-iowa (MIGRATIONS_DIR: a copy of prisma/migrations plus a nullable column on
 * saml_provider_credentials). Writes go both ways:
 * - iowa's PATCH (rows without the column) does not erase belgium's value of it;
 * - belgium's events that carry the column are held in iowa (parked 'schema-ahead', not applied
 *   partially); its events for tables iowa has in full apply at once;
 * - once iowa is upgraded (the migration applied, restart) the held events apply, the column is filled in
 *   where iowa's own later write outranked them, and both regions hold identical rows;
 * - a contract migration dropping the column under a running process: its writes reload the column list
 *   and succeed, and the other region's rows that still carry the column apply without it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { migrate, MIGRATIONS_DIR } from '../../src/db/migrate';
import { adminHeaders, call, createOrg, eventually, slashidHeaders, startCluster, type Cluster } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';

const PATH = '/organizations/sso/saml/provider-credentials';
const OLD = 'us-iowa';
const NEW = 'europe-belgium';
const EXPAND = '29991231000000_test_credential_note';
const CONTRACT = '29991231000001_test_drop_credential_note';

let cluster: Cluster;
let idp: IdpServer;
let expandDir: string;
let contractDir: string;
const pg: Record<string, Client> = {};

function migrationsWith(dir: string, extra: Record<string, string>): void {
  fs.cpSync(MIGRATIONS_DIR, dir, { recursive: true });
  for (const [name, sql] of Object.entries(extra)) {
    fs.mkdirSync(path.join(dir, name));
    fs.writeFileSync(path.join(dir, name, 'migration.sql'), sql);
  }
}

beforeAll(async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'schema-versions-'));
  expandDir = path.join(tmp, 'expand');
  contractDir = path.join(tmp, 'contract');
  const add = 'ALTER TABLE "saml_provider_credentials" ADD COLUMN "note" TEXT;\n';
  migrationsWith(expandDir, { [EXPAND]: add });
  migrationsWith(contractDir, { [EXPAND]: add, [CONTRACT]: 'ALTER TABLE "saml_provider_credentials" DROP COLUMN "note";\n' });
  idp = await startIdpServer();
  cluster = await startCluster('schemaver', [OLD, NEW], {
    extra: { metadataAllowedHosts: [idp.hostPort] },
    regionEnv: { [NEW]: { MIGRATIONS_DIR: expandDir } },
  });
  for (const r of [OLD, NEW]) {
    pg[r] = new Client({ connectionString: cluster.deployment.configFor(r).region.databaseUrl });
    await pg[r]?.connect();
  }
}, 120_000);
afterAll(async () => {
  for (const c of Object.values(pg)) await c.end();
  await cluster?.stop();
  await idp?.close();
});

const row = async (region: string, id: string) =>
  (await pg[region]?.query('SELECT * FROM saml_provider_credentials WHERE id = $1', [id]))?.rows[0] as Record<string, unknown> | undefined;
const status = async (region: string) => (await call(cluster.url(region), 'GET', '/admin/replication', { headers: adminHeaders })).body;
const digest = async (region: string) => JSON.stringify((await call(cluster.url(region), 'GET', '/admin/replication/digest', { headers: adminHeaders })).body.tables);

test('two schema versions side by side: nothing erased, newer events held, converged after the upgrade', async () => {
  const all = { 'SlashID-Required-Consistency': 'all_regions' };
  const org = await createOrg(cluster.url(OLD), 'acme', { headers: all });
  const created = await call(cluster.url(OLD), 'POST', PATH, {
    body: { idp_metadata_url: idp.url('okta.xml'), label: 'first' },
    headers: slashidHeaders(org, all),
  });
  expect(created.status).toBe(201);
  const id = created.body.result.id as string;
  expect(await row(NEW, id)).toMatchObject({ label: 'first', note: null });
  expect(await row(OLD, id)).not.toHaveProperty('note');
  // The same data on both schemas has the same digest: a column one region lacks is null in the other's rows.
  expect(await eventually(async () => (await digest(OLD)) === (await digest(NEW)))).toBe(true);

  // The newer region sets its column (nothing in the API knows it yet: a backfill) and then writes the row.
  await pg[NEW]?.query(`UPDATE saml_provider_credentials SET note = 'kept' WHERE id = $1`, [id]);
  const fromNew = await call(cluster.url(NEW), 'PATCH', `${PATH}/${id}`, { body: { label: 'from-belgium' }, headers: slashidHeaders(org) });
  expect(fromNew.status).toBe(204);
  // The older region holds it: parked as schema-ahead, not applied partially.
  // (Belgium's metadata refresh may write the row too: every such event is held alike.)
  expect(await eventually(async () => (await status(OLD)).failures?.parked >= 1, 15_000)).toBe(true);
  expect((await status(OLD)).failures.oldest_parked[0]).toMatchObject({ reason: 'schema-ahead', tables: ['saml_provider_credentials'] });
  expect((await status(OLD)).failures.oldest_parked[0].error).toMatch(/note/);
  expect((await status(OLD)).failures.parked_by_reason).toEqual({ 'schema-ahead': (await status(OLD)).failures.parked });
  expect(await row(OLD, id)).toMatchObject({ label: 'first' });
  // Expected during a rolling upgrade: one warning per origin and table, never an error line on-call is paged for.
  const second = await call(cluster.url(NEW), 'PATCH', `${PATH}/${id}`, { body: { label: 'from-belgium-2' }, headers: slashidHeaders(org) });
  expect(second.status).toBe(204);
  expect(await eventually(async () => (await status(OLD)).failures?.parked >= 2, 15_000)).toBe(true);
  const lines = cluster.logs(OLD).filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: number; msg: string; reason?: string; origin?: string });
  expect(lines.filter((l) => l.level >= 50)).toEqual([]);
  const heldLines = lines.filter((l) => l.msg.startsWith('change events held until this region is upgraded'));
  expect(heldLines).toEqual([expect.objectContaining({ level: 40, reason: 'schema-ahead', origin: NEW, tables: ['saml_provider_credentials'] })]);
  // The console shows them as held for the upgrade (a warning, not a fault): the deployment view counts them.
  const view = await call(cluster.url(OLD), 'GET', '/admin/deployment', { headers: adminHeaders });
  const parked = (await status(OLD)).failures.parked;
  expect(view.body.regions.find((r: { id: string }) => r.id === OLD).replication).toMatchObject({ parked, parked_for_upgrade: parked, failing: 0 });
  // A change to a table both schemas have in full applies at once.
  const other = await createOrg(cluster.url(NEW), 'other', { headers: {} });
  expect(await eventually(async () => (await pg[OLD]?.query('SELECT 1 FROM organizations WHERE id = $1', [other.id]))?.rowCount === 1)).toBe(true);

  // The older region writes the row: its event lacks the column, and the newer region keeps its value.
  const fromOld = await call(cluster.url(OLD), 'PATCH', `${PATH}/${id}`, { body: { label: 'from-iowa' }, headers: slashidHeaders(org) });
  expect(fromOld.status).toBe(204);
  expect(await eventually(async () => (await row(NEW, id))?.label === 'from-iowa')).toBe(true);
  expect(await row(NEW, id)).toMatchObject({ label: 'from-iowa', note: 'kept' });

  // The upgrade: the migration is applied to the older region's database and it restarts.
  const p = cluster.proc(OLD);
  await p.stop();
  expect(await migrate(cluster.deployment.configFor(OLD).region.databaseUrl, expandDir)).toEqual([EXPAND]);
  p.start();
  await p.waitReady(60_000).catch((err: Error) => {
    throw new Error(`${err.message}\n${cluster.logs(OLD).slice(-30).join('\n')}`);
  });
  // The held event applies at start; iowa's later label wins, belgium's column value is filled in.
  expect(await eventually(async () => (await status(OLD)).failures?.parked === 0, 15_000)).toBe(true);
  expect(await row(OLD, id)).toMatchObject({ label: 'from-iowa', note: 'kept' });
  expect(await eventually(async () => (await digest(OLD)) === (await digest(NEW)))).toBe(true);

  // Both directions on one schema now.
  await pg[NEW]?.query(`UPDATE saml_provider_credentials SET note = 'second' WHERE id = $1`, [id]);
  expect((await call(cluster.url(NEW), 'PATCH', `${PATH}/${id}`, { body: { label: 'b2' }, headers: slashidHeaders(org) })).status).toBe(204);
  expect(await eventually(async () => (await row(OLD, id))?.note === 'second')).toBe(true);
  expect((await call(cluster.url(OLD), 'PATCH', `${PATH}/${id}`, { body: { label: 'i2' }, headers: slashidHeaders(org) })).status).toBe(204);
  expect(await eventually(async () => (await row(NEW, id))?.label === 'i2')).toBe(true);
  expect(await row(NEW, id)).toMatchObject({ note: 'second' });
  expect(await eventually(async () => (await digest(OLD)) === (await digest(NEW)))).toBe(true);

  // Contract: the column is dropped under iowa's running process (its column list still names it).
  expect(await migrate(cluster.deployment.configFor(OLD).region.databaseUrl, contractDir)).toEqual([CONTRACT]);
  const afterDrop = await call(cluster.url(OLD), 'PATCH', `${PATH}/${id}`, { body: { label: 'i3' }, headers: slashidHeaders(org) });
  expect(afterDrop.status).toBe(204);
  expect(await eventually(async () => (await row(NEW, id))?.label === 'i3')).toBe(true);
  expect(await row(NEW, id)).toMatchObject({ note: 'second' });
  // Belgium (an older schema now) still sends the column: iowa applies the rest and ignores it.
  expect((await call(cluster.url(NEW), 'PATCH', `${PATH}/${id}`, { body: { label: 'b3' }, headers: slashidHeaders(org) })).status).toBe(204);
  expect(await eventually(async () => (await row(OLD, id))?.label === 'b3')).toBe(true);
  expect((await status(OLD)).failures).toMatchObject({ parked: 0, failing: 0 });
}, 180_000);
