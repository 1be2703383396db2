/**
 * The deployment console (GET /admin/deployment of a real region) reading a region of the previous release,
 * as during a rolling upgrade. The older region is the one that holds the newer regions' changes (parked
 * schema-ahead), and a version before 2026-12-05 does not send failures.parked_by_reason: its parked events
 * waiting for the upgrade are read from oldest_parked, whose entries carry their reason, so its Refused cell is
 * the yellow of an expected hold, not the red of a fault. The older region is an HTTP server answering what a
 * region of 5f25a7b answered in a drill (test/fixtures/older-peer/replication.json, its own answer as captured).
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { DeploymentStatus } from '../../src/console/schema';
import { startRegion, type RunningRegion } from '../../src/region';
import { createDeployment, type TestDeployment } from '../support/env';
import { adminHeaders, call, eventually } from '../support/harness';

const OLDER = 'asia-japan';
const captured = JSON.parse(fs.readFileSync(path.join(__dirname, '../fixtures/older-peer/replication.json'), 'utf8')) as {
  failures: { parked: number; oldest_parked: { reason: string }[] };
};

let deployment: TestDeployment;
let region: RunningRegion;
let older: http.Server;
let replication: unknown = captured;

beforeAll(async () => {
  deployment = await createDeployment('console-older-peer', ['us-iowa', OLDER]);
  const answers: Record<string, (() => unknown) | undefined> = {
    '/healthz': () => ({ status: 'ok', region: OLDER, pid: 1, redis: 'ready' }),
    '/readyz': () => ({ region: OLDER, ready: true, database: 'ok', missing_migrations: [], redis: { reachable: true, status: 'ready' } }),
    '/admin/replication': () => replication,
    '/admin/metadata-refresh': () => ({ region: OLDER, failing: 0, held: 0, adoption: { departed: [], ready: true, waiting: null, adopters: [] }, credentials: [] }),
  };
  older = http.createServer((req, res) => {
    const answer = answers[req.url ?? ''];
    res.writeHead(answer ? 200 : 404, { 'content-type': 'application/json' }).end(JSON.stringify(answer ? answer() : {}));
  });
  await new Promise<void>((resolve) => older.listen(deployment.configFor(OLDER).region.port, '127.0.0.1', resolve));
  region = await startRegion(deployment.configFor('us-iowa'), { drainTimeoutMs: 5000 });
}, 60_000);
afterAll(async () => {
  await region?.stop();
  await new Promise((resolve) => older?.close(resolve));
  await deployment?.cleanup();
});

async function olderRow() {
  const base = `http://127.0.0.1:${deployment.configFor('us-iowa').region.port}`;
  let row: DeploymentStatus['regions'][number] | undefined;
  // A loaded machine's status answers can outlast the timeout (any of the four, the problem then says "no answer
  // within"); wait for a round that read every answer of the older region.
  await eventually(async () => {
    const res = await call<DeploymentStatus>(base, 'GET', '/admin/deployment', { headers: adminHeaders });
    row = res.body.regions?.find((r) => r.id === OLDER);
    return row?.replication != null && !row.problems.some((p) => p.includes('no answer within'));
  }, 20_000, 500);
  return row;
}

test('a region of the previous release holding changes for its upgrade counts them as held for it, read from oldest_parked', async () => {
  expect(captured.failures).not.toHaveProperty('parked_by_reason');
  expect(captured.failures.parked).toBe(2);
  const row = await olderRow();
  expect(row).toMatchObject({ up: true, ready: true, problems: [] });
  expect(row?.replication).toMatchObject({ failing: 0, parked: 2, parked_for_upgrade: 2 });
});

test('one that parked more than it lists is counted by what it lists: a lower bound, so its cell stays red', async () => {
  const listed = Array.from({ length: 20 }, () => captured.failures.oldest_parked[0]);
  const applyFailed = { ...captured.failures.oldest_parked[0], reason: 'apply-failed' };
  replication = { ...captured, failures: { ...captured.failures, parked: 25, oldest_parked: [applyFailed, ...listed.slice(1)] } };
  const row = await olderRow();
  expect(row?.replication).toMatchObject({ parked: 25, parked_for_upgrade: 19 });
});
