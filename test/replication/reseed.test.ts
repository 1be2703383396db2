/**
 * Bounded Redis (issue G, item 7): the change stream is capped; a region that is down while more changes
 * than the cap are written falls behind it, is reported as needing a re-seed, and `npm run reseed` (here
 * its compiled script) brings it back from a peer: identical databases, and replication goes on.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/paths';
import { adminHeaders, call, createOrg, eventually, slashidHeaders, startCluster, type Cluster } from '../support/harness';

const REGIONS = ['us-iowa', 'asia-japan'];
const CAP = 100;
let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster('reseed', REGIONS, { extra: { streamMaxLength: CAP } });
}, 90_000);
afterAll(async () => {
  await cluster?.stop();
});

const status = async (region: string) => (await call(cluster.url(region), 'GET', '/admin/replication', { headers: adminHeaders })).body;
const digest = async (region: string) => JSON.stringify((await call(cluster.url(region), 'GET', '/admin/replication/digest', { headers: adminHeaders })).body.tables);

test('a region that falls behind the stream cap is marked as needing a re-seed and is re-seeded from a peer with one command', async () => {
  const us = cluster.url('us-iowa');
  await createOrg(us, 'before', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });
  await cluster.proc('asia-japan').stop();
  const orgs = [];
  for (let i = 0; i < 4 * CAP; i++) orgs.push(await createOrg(us, `while away ${i}`));

  const s = await status('us-iowa');
  expect(s.stream.length).toBeLessThan(4 * CAP);
  expect(s.needs_reseed).toEqual(['asia-japan']);
  expect(s.pending.find((g: { region: string }) => g.region === 'asia-japan').needs_reseed).toBe(true);

  cluster.proc('asia-japan').start();
  await cluster.proc('asia-japan').waitReady(60_000);
  // What the stream still holds arrives; what the cap trimmed does not.
  await new Promise((r) => setTimeout(r, 2000));
  expect(await digest('asia-japan')).not.toBe(await digest('us-iowa'));

  const run = spawnSync(process.execPath, [path.join(PROJECT_ROOT, 'dist', 'scripts', 'reseed.js'), '--from', 'us-iowa', '--to', 'asia-japan'], {
    env: { ...process.env, REGIONS_CONFIG: cluster.deployment.configPath },
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  const result = JSON.parse(run.stdout);
  expect(result.tables.organizations.rows).toBeGreaterThanOrEqual(4 * CAP + 1);

  expect(await eventually(async () => (await digest('asia-japan')) === (await digest('us-iowa')), 20_000, 200)).toBe(true);
  expect((await status('us-iowa')).needs_reseed).toEqual([]);
  // Replication goes on: a later write reaches the re-seeded region, and an early key works there.
  const after = await createOrg(us, 'after', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });
  for (const o of [after, orgs[0]]) {
    if (!o) continue;
    expect((await call(cluster.url('asia-japan'), 'GET', '/organizations/sso/saml/provider-credentials', { headers: slashidHeaders(o) })).status).toBe(200);
  }
}, 240_000);
