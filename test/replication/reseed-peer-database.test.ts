/**
 * A peer region started with DATABASE_URL over its entry of the regions file runs on that database, while its entry's
 * database (here the deployment's, migrated and empty: a stale database, holding none of the peer's rows) may still
 * exist. `npm run reseed` read the peer's database, and every other origin's, from the file alone: it copied the stale
 * one into the target and marked the target active without the peer's rows, exit 0. It now takes --from-database-url
 * for the peer and `--database-url <region>=<url>` for another origin, whose outbox its caught-up check reads, and
 * refuses a database that is not the one its region's Redis records (a copy made with pg_dump it cannot tell apart).
 */
import { RegionProcess } from '../../src/cluster/region-process';
import { dropDatabase, ensureDatabase, migrate } from '../../src/db/migrate';
import { addedRegionProcess, adminHeaders, call, outboxConfirmed, runScript, startCluster, type Cluster } from '../support/harness';
import { freePorts, PG_BASE, uniqueName } from '../support/env';

const [PEER, OTHER, ADDED] = ['us-iowa', 'europe-belgium', 'south-brazil'];
/** The database the peer runs on (DATABASE_URL), created by its start; its entry names another. */
const PEER_OWN = `${PG_BASE}/${uniqueName('reseed-peer-own')}`;
let cluster: Cluster;
let added: RegionProcess | null = null;
let configPath = '';
let orgId = '';
const databases = [PEER_OWN];

beforeAll(async () => {
  cluster = await startCluster('reseed-peer-db', [PEER, OTHER], { regionEnv: { [PEER]: { DATABASE_URL: PEER_OWN } } });
  // Written on the peer's own database and confirmed by every region before the added one registers: only a copy
  // from that database brings it to the added region.
  const org = await call(cluster.url(PEER), 'POST', '/admin/organizations', { body: { name: 'on-peer-own' }, headers: { ...adminHeaders, 'SlashID-Required-Consistency': 'all_regions' } });
  expect(org.status).toBe(201);
  orgId = String(org.body.id);
  expect(await outboxConfirmed(PEER_OWN)).toBe(true);
  const region = await addedRegionProcess(cluster, ADDED, { configName: 'regions.3.config.json' });
  databases.push(region.databaseUrl);
  configPath = region.configPath;
  added = region.process;
  added.start();
  await added.waitReady(60_000);
}, 120_000);
afterAll(async () => {
  await Promise.all([added?.stop(0), cluster?.stop(0)]);
  for (const url of databases) await dropDatabase(url).catch(() => undefined);
});

const reseed = (extra: string[]) => runScript(cluster, 'reseed', ['--from', PEER, '--to', ADDED, ...extra], { REGIONS_CONFIG: configPath });
const addedHolds = async () => (await call((added as RegionProcess).url, 'GET', `/admin/organizations/${orgId}`, { headers: adminHeaders })).status === 200;

test('without --from-database-url the re-seed refuses the peer\'s entry, whose database is not the one the peer runs on, and copies nothing', async () => {
  // It copied the stale database and marked the target active without the peer's rows, exit 0.
  const run = await reseed([]);
  const entry = new URL(cluster.deployment.file.regions.find((r) => r.id === PEER)?.databaseUrl ?? '');
  expect({ status: run.status, stderr: run.stderr }).toEqual({
    status: 1,
    stderr: `reseed failed: the peer ${PEER}'s database at ${entry.host}${entry.pathname} is not the one ${PEER} runs on (${PEER}'s Redis records another): ${PEER} runs on a DATABASE_URL of its own, say, and this is its entry's. Nothing was copied: give the database ${PEER} runs on with --from-database-url\n`,
  });
  expect(await addedHolds()).toBe(false);
}, 60_000);

test('with --from-database-url the re-seed copies the database the peer runs on', async () => {
  const run = await reseed(['--from-database-url', PEER_OWN]);
  expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 0, stderr: '' });
  expect(await addedHolds()).toBe(true);
}, 60_000);

test('the databases given for the peer and another origin are the ones read: named when they cannot be, refused when they are not the region\'s', async () => {
  const [closed = 0] = await freePorts(1);
  const peer = await reseed(['--from-database-url', `postgresql://postgres@127.0.0.1:${closed}/peer_own`]);
  expect({ status: peer.status, stderr: peer.stderr }).toEqual({
    status: 1,
    stderr: `reseed failed: the peer ${PEER}'s database at 127.0.0.1:${closed}/peer_own cannot be reached or prepared (connection refused: nothing listens at that address and port). Check that Postgres runs there, and the URL given with --from-database-url (over the databaseUrl of ${PEER} in the regions config)\n`,
  });
  // The caught-up check reads the other origin's outbox in the database given for it.
  const origin = await reseed(['--from-database-url', PEER_OWN, '--database-url', `${OTHER}=postgresql://postgres@127.0.0.1:${closed}/other_own`, '--wait', '0']);
  expect(origin.status).toBe(1);
  expect(origin.stderr).toContain(`${OTHER}'s database at 127.0.0.1:${closed}/other_own cannot be read (`);
  expect(origin.stderr).not.toContain('give that one with --database-url');
  // A database that is not the one the origin runs on (another identity than its Redis records) is no sign of what the
  // peer applied: refused as unknown, not read as caught up.
  const stale = `${PG_BASE}/${uniqueName('reseed-other-stale')}`;
  databases.push(stale);
  await ensureDatabase(stale);
  await migrate(stale);
  const notOwn = await reseed(['--from-database-url', PEER_OWN, '--database-url', `${OTHER}=${stale}`, '--wait', '0']);
  expect(notOwn.status).toBe(1);
  expect(notOwn.stderr).toContain(`${OTHER}'s database at ${new URL(stale).host}${new URL(stale).pathname} is not the one ${OTHER} runs on (its Redis records another), so whether ${PEER} has all its changes is unknown. `);
}, 60_000);
