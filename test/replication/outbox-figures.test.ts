/**
 * GET /admin/replication's `outbox.unpublished` and `outbox.unconfirmed` are disjoint: a change is counted in one
 * of them until its origin confirms it (every member acked it), and their sum is what is not yet confirmed.
 * `unconfirmed` alone read 0 right after an all_regions write answered 201 while the change was still to be
 * delivered to a region that registered next (met while writing test/replication/reseed-database-override.test.ts):
 * the origin records its deliveries up to 0.2 s after it made them, so a change every region applied counts as
 * unpublished meanwhile, then as unconfirmed until the relay's next confirm round (every 2 s). Both figures are
 * read from the database at each request, on either port. Here the record is held back (a lock on
 * replication_deliveries) so that the moment lasts; a region that registers during it gets the change through
 * its inbox, as docs/operations.md "Adding a region" says of every change not yet confirmed.
 */
import { Client } from 'pg';
import { RegionProcess } from '../../src/cluster/region-process';
import { dropDatabase } from '../../src/db/migrate';
import { addedRegionProcess, adminHeaders, call, eventually, startCluster, type Cluster } from '../support/harness';
import { freePorts } from '../support/env';

const [ORIGIN, OTHER, ADDED] = ['us-iowa', 'europe-belgium', 'south-brazil'];
let cluster: Cluster;
let operatorUrl = '';
const LATER = 'asia-japan';
const added: RegionProcess[] = [];
const addedDbs: string[] = [];
const clients: Client[] = [];

beforeAll(async () => {
  const [operatorPort] = await freePorts(1);
  operatorUrl = `http://127.0.0.1:${operatorPort}`;
  cluster = await startCluster('outbox-figures', [ORIGIN, OTHER], { regionConfig: { [ORIGIN]: { operatorPort } } });
}, 120_000);
afterAll(async () => {
  for (const c of clients) await c.end().catch(() => undefined);
  await Promise.all([...added.map((p) => p.stop(0)), cluster?.stop(0)]);
  for (const url of addedDbs) await dropDatabase(url).catch(() => undefined);
});

async function connect(url: string): Promise<Client> {
  const c = new Client({ connectionString: url });
  await c.connect();
  clients.push(c);
  return c;
}

/** The origin's outbox figures, as GET /admin/replication answers them at `url`. */
async function outbox(url: string): Promise<{ unpublished: number; unconfirmed: number }> {
  const res = await call(url, 'GET', '/admin/replication', { headers: adminHeaders });
  expect(res.status).toBe(200);
  return { unpublished: res.body.outbox.unpublished, unconfirmed: res.body.outbox.unconfirmed };
}

/** Starts `region` on a config naming it (joining) and waits until the origin counts it among the members. */
async function register(region: string, configName: string): Promise<void> {
  const r = await addedRegionProcess(cluster, region, { configName });
  addedDbs.push(r.databaseUrl);
  added.push(r.process);
  r.process.start();
  await r.process.waitReady(60_000);
  const members = async () => ((await call(cluster.url(ORIGIN), 'GET', '/admin/replication', { headers: adminHeaders })).body.members as { region: string }[]).map((m) => m.region);
  expect(await eventually(async () => (await members()).includes(region), 15_000, 100)).toBe(true);
}

/** Waits until the origin's GET /admin/replication counts no change unpublished or unconfirmed. */
async function settled(): Promise<boolean> {
  return eventually(async () => {
    const o = await outbox(cluster.url(ORIGIN));
    return o.unpublished + o.unconfirmed === 0;
  }, 30_000, 200);
}

test('a change every region applied counts as unpublished until its deliveries are recorded: not yet confirmed is unpublished + unconfirmed, and a region registering meanwhile gets it in its inbox', async () => {
  const originDbUrl = cluster.deployment.file.regions.find((r) => r.id === ORIGIN)?.databaseUrl ?? '';
  const db = await connect(originDbUrl);
  const notConfirmed = async () => (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM replication_outbox WHERE confirmed_at IS NULL')).rows[0]?.n;
  expect(await notConfirmed()).toBe(0);

  // Hold back the origin's record of its deliveries (its INSERT waits for the lock), not the deliveries.
  const locker = await connect(originDbUrl);
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE replication_deliveries IN SHARE MODE');
  const org = await call(cluster.url(ORIGIN), 'POST', '/admin/organizations', { body: { name: 'counted' }, headers: { ...adminHeaders, 'SlashID-Required-Consistency': 'all_regions' } });
  expect(org.status).toBe(201);
  const changeId = org.headers.get('x-change-id') ?? '';
  const change = (await call(cluster.url(ORIGIN), 'GET', `/admin/replication/changes/${changeId}`, { headers: adminHeaders })).body;
  expect({ complete: change.complete, published_at: change.origin?.published_at, confirmed_at: change.origin?.confirmed_at }).toEqual({ complete: true, published_at: null, confirmed_at: null });

  // What the engineer saw: unconfirmed 0. The change is counted, as unpublished; on the operator port too.
  expect(await outbox(cluster.url(ORIGIN))).toEqual({ unpublished: 1, unconfirmed: 0 });
  expect(await outbox(operatorUrl)).toEqual({ unpublished: 1, unconfirmed: 0 });
  expect(await notConfirmed()).toBe(1);

  // A region registers (joining) before the change is confirmed.
  await register(ADDED, 'regions.3.config.json');
  expect(await notConfirmed()).toBe(1);
  await locker.query('COMMIT');

  // Not confirmed when it registered: delivered to it (no re-seed has run), applied there, then confirmed.
  const addedDbClient = await connect(addedDbs[0] ?? '');
  expect(await eventually(async () => (await addedDbClient.query('SELECT 1 FROM organizations WHERE id = $1', [org.body.id])).rowCount === 1, 30_000, 200)).toBe(true);
  const deliveries = await db.query<{ region: string }>('SELECT region FROM replication_deliveries WHERE change_id = $1 ORDER BY region', [changeId]);
  expect(deliveries.rows.map((r) => r.region)).toEqual([OTHER, ADDED].sort());
  // The sum an operator waits on falls to 0 only once the database holds no change unconfirmed.
  expect(await settled()).toBe(true);
  expect(await notConfirmed()).toBe(0);
}, 120_000);

test('a change confirmed before a region registers is not delivered to it (the re-seed brings it): the sum at 0 is the moment to wait for', async () => {
  const originDbUrl = cluster.deployment.file.regions.find((r) => r.id === ORIGIN)?.databaseUrl ?? '';
  const db = await connect(originDbUrl);
  const before = await call(cluster.url(ORIGIN), 'POST', '/admin/organizations', { body: { name: 'confirmed-before' }, headers: { ...adminHeaders, 'SlashID-Required-Consistency': 'all_regions' } });
  expect(before.status).toBe(201);
  expect(await settled()).toBe(true);
  await register(LATER, 'regions.4.config.json');
  // A change made once it is a member waits for it (all_regions), and is confirmed with its ack: the confirm
  // rounds since it registered counted it among the destinations.
  const after = await call(cluster.url(ORIGIN), 'POST', '/admin/organizations', { body: { name: 'made-after' }, headers: { ...adminHeaders, 'SlashID-Required-Consistency': 'all_regions' } });
  expect(after.status).toBe(201);
  expect(await settled()).toBe(true);
  const delivered = async (changeId: string | null) => (await db.query<{ region: string }>('SELECT region FROM replication_deliveries WHERE change_id = $1 ORDER BY region', [changeId])).rows.map((r) => r.region);
  expect(await delivered(after.headers.get('x-change-id'))).toEqual([OTHER, ADDED, LATER].sort());
  expect(await delivered(before.headers.get('x-change-id'))).toEqual([OTHER, ADDED].sort());
  const later = await connect(addedDbs[1] ?? '');
  const has = async (id: unknown) => (await later.query('SELECT 1 FROM organizations WHERE id = $1', [id])).rowCount === 1;
  expect({ before: await has(before.body.id), after: await has(after.body.id) }).toEqual({ before: false, after: true });
}, 120_000);
