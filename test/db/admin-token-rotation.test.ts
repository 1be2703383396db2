/**
 * Rotating the admin token without a moment when one is refused: a region accepts ADMIN_TOKEN and every
 * token of ADMIN_TOKEN_ACCEPTED, on the region port (/admin/*, /metrics) and the operator port alike, and
 * nothing else.
 */
import { startRegion, type RunningRegion } from '../../src/region';
import { adminHeaders, call } from '../support/harness';
import { createDeployment, type TestDeployment } from '../support/env';

const OLD = 'the-old-admin-token-being-rotated-out';
let deployment: TestDeployment;
let region: RunningRegion;

beforeAll(async () => {
  deployment = await createDeployment('admintoken', ['us-iowa']);
  region = await startRegion({ ...deployment.configFor('us-iowa'), adminAcceptedTokens: [OLD] }, { port: 0, operatorPort: 0, drainTimeoutMs: 5000 });
});
afterAll(async () => {
  await region?.stop();
  await deployment?.cleanup();
});

test('ADMIN_TOKEN and the accepted tokens open the admin routes on both ports; any other token is 401', async () => {
  const bearer = (t: string) => ({ Authorization: `Bearer ${t}` });
  const statuses = async (headers: Record<string, string>) => [
    (await call(region.url, 'GET', '/admin/replication', { headers })).status,
    (await call(region.url, 'GET', '/metrics', { headers })).status,
    (await call(region.operator?.url as string, 'GET', '/admin/replication', { headers })).status,
  ];
  expect(await statuses(adminHeaders)).toEqual([200, 200, 200]);
  expect(await statuses(bearer(OLD))).toEqual([200, 200, 200]);
  expect(await statuses(bearer(`${OLD}-not`))).toEqual([401, 401, 401]);
  expect(await statuses({})).toEqual([401, 401, 401]);
});
