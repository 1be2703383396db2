/**
 * A region whose clock runs ahead of the others' past maxClockSkewMs (its process started with its Date
 * moved 2 minutes on): the others park its changes (`clock-skew`), and the console's lag matrix says they
 * are behind it, not caught up. Before, a cell counted only what regions had applied, so with every one of
 * that origin's changes parked everywhere the matrix read "caught up" across the board (a fault drill).
 */
import path from 'node:path';
import { adminHeaders, call, createOrg, eventually, startCluster, type Cluster } from '../support/harness';

const AHEAD = 'asia-japan';
let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster('lag-parked', ['us-iowa', AHEAD], {
    regionEnv: { [AHEAD]: { NODE_OPTIONS: `--require ${path.join(__dirname, '..', 'support', 'clock-ahead.cjs')}`, CLOCK_AHEAD_MS: '120000' } },
  });
}, 90_000);
afterAll(async () => {
  await cluster?.stop();
});

test('the lag matrix shows a region behind the origin whose changes it parked for clock skew', async () => {
  // us-iowa's changes apply in the region ahead (they are behind its clock, not ahead).
  await createOrg(cluster.url('us-iowa'), 'from us', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });
  const ahead = await createOrg(cluster.url(AHEAD), 'from the region ahead');
  const parked = async () => (await call(cluster.url('us-iowa'), 'GET', '/admin/replication', { headers: adminHeaders })).body.failures;
  expect(await eventually(async () => (await parked()).parked === 1, 15_000, 200)).toBe(true);
  expect((await parked()).parked_by_origin).toEqual({ [AHEAD]: 1 });
  expect((await parked()).oldest_parked).toEqual([expect.objectContaining({ origin_region: AHEAD, reason: 'clock-skew', error: expect.stringMatching(/ms ahead of this region's clock \(maxClockSkewMs 60000\)/) })]);
  expect((await call(cluster.url('us-iowa'), 'GET', `/admin/organizations/${ahead.id}`, { headers: adminHeaders })).status).toBe(404);

  for (const serving of ['us-iowa', AHEAD]) {
    const d = (await call(cluster.url(serving), 'GET', '/admin/deployment', { headers: adminHeaders })).body;
    expect({ serving, cell: d.lag.find((c: { origin: string; region: string }) => c.origin === AHEAD && c.region === 'us-iowa') }).toEqual({
      serving,
      cell: expect.objectContaining({ state: 'behind', behind_ms: null }),
    });
    expect(d.regions.find((r: { id: string }) => r.id === 'us-iowa').replication.parked).toBe(1);
    expect(d.lag.find((c: { origin: string; region: string }) => c.origin === 'us-iowa' && c.region === AHEAD)?.state).toBe('caught-up');
  }
}, 120_000);
