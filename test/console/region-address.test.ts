/**
 * Where the deployment console reaches a region (regionUrl in src/console/deployment.ts), through GET
 * /admin/deployment of a real region: an IPv6 listen address is written in brackets, a publicUrl's trailing
 * slash does not double the paths' slash, and a peer that refuses the console's token is named with its status.
 */
import { gatherDeployment } from '../../src/console/deployment';
import type { DeploymentStatus } from '../../src/console/schema';
import { startRegion, type RunningRegion } from '../../src/region';
import { ADMIN_TOKEN, createDeployment, type TestDeployment } from '../support/env';
import { adminHeaders, call, eventually } from '../support/harness';

let deployment: TestDeployment;
let region: RunningRegion;
let base: string;
beforeAll(async () => {
  // us-iowa listens on the IPv6 loopback, and its entry in the regions file says so.
  deployment = await createDeployment('console-address', ['us-iowa'], {}, { 'us-iowa': { host: '::1' } });
  const config = deployment.configFor('us-iowa');
  region = await startRegion({ ...config, region: { ...config.region, host: '::1' } }, { drainTimeoutMs: 5000 });
  base = `http://[::1]:${config.region.port}`;
}, 60_000);
afterAll(async () => {
  await region?.stop();
  await deployment?.cleanup();
});

test('a region listening on an IPv6 address is reached there, its address in brackets', async () => {
  const served = async () => {
    const res = await call<DeploymentStatus>(base, 'GET', '/admin/deployment', { headers: adminHeaders });
    expect(res.status).toBe(200);
    return res.body.regions[0];
  };
  // On a loaded machine a region's first status answers (cold queries) can outlast the 1.5 s timeout; the
  // console shows that as a problem and asks again, so wait for a clean round.
  await eventually(async () => (await served())?.problems.length === 0, 20_000, 500);
  expect(await served()).toMatchObject({ id: 'us-iowa', url: base, up: true, ready: true, problems: [] });
});

test("a publicUrl ending in a slash is reached without doubling the paths' slash", async () => {
  const entry = { ...deployment.configFor('us-iowa').region, publicUrl: `${base}/` };
  const d = await gatherDeployment({ region: entry, regions: [entry], adminToken: ADMIN_TOKEN }, 10_000);
  expect(d.regions[0]).toMatchObject({ url: base, up: true, ready: true, problems: [] });
});

test('a region that refuses the console\'s admin token is shown up, each refused status call named with its status', async () => {
  const entry = { ...deployment.configFor('us-iowa').region, publicUrl: base };
  const d = await gatherDeployment({ region: entry, regions: [entry], adminToken: 'not-the-admin-token-0123' }, 10_000);
  expect(d.regions[0]).toMatchObject({ up: true, ready: true, replication: null, metadata_refresh: null });
  expect(d.regions[0]?.problems).toEqual(['/admin/replication answered 401', '/admin/metadata-refresh answered 401']);
});

test('an address that answers a web page rather than a region is shown down, its answer named as not JSON', async () => {
  // Every path under it is the console's page (200, HTML): what a proxy's or a load balancer's page would be.
  const entry = { ...deployment.configFor('us-iowa').region, publicUrl: `${base}/admin/console?to=` };
  const d = await gatherDeployment({ region: entry, regions: [entry], adminToken: ADMIN_TOKEN }, 10_000);
  expect(d.regions[0]).toMatchObject({ up: false, ready: null, problems: ['/healthz: not JSON'] });
});

test('a configured region that does not answer is down in the lag matrix too, not unknown', async () => {
  const us = { ...deployment.configFor('us-iowa').region, publicUrl: base };
  // Nothing listens on port 1.
  const japan = { id: 'asia-japan', port: 1, databaseUrl: us.databaseUrl, host: '127.0.0.1' };
  const d = await gatherDeployment({ region: us, regions: [us, japan], adminToken: ADMIN_TOKEN }, 10_000);
  expect(d.regions.map((r) => [r.id, r.up])).toEqual([['us-iowa', true], ['asia-japan', false]]);
  expect(d.regions[1]?.problems).toEqual(['/healthz: unreachable']);
  expect(d.lag.map((c) => [c.origin, c.region, c.state])).toEqual([['us-iowa', 'asia-japan', 'down'], ['asia-japan', 'us-iowa', 'caught-up']]);
});
