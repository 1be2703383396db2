/**
 * What the deployment console gathers from a region (src/console/deployment.ts), against one region in this
 * process: its failing metadata refreshes, a region that answers but is not ready, whose view of the
 * shared stream tells each region's backlog, and a region whose Redis hangs.
 */
import { assembleDeployment, gatherDeployment } from '../../src/console/deployment';
import type { Config } from '../../src/config';
import type { RegionStatus } from '../../src/console/schema';
import { listMigrations } from '../../src/db/migrate';
import { ADMIN_TOKEN } from '../support/env';
import { call, createOrg, eventually, slashidHeaders } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { ownRedis } from '../support/redis-server';

let idp: IdpServer;
let r: InProcessRegion;
beforeAll(async () => {
  idp = await startIdpServer();
  r = await startInProcess('console-gather', ['us-iowa'], { metadataAllowedHosts: [idp.hostPort] });
}, 60_000);
afterAll(async () => {
  await r?.stop();
  await idp?.close();
});

/** The console's view of the one region, reached at the address it listens on. */
async function gathered(): Promise<RegionStatus> {
  const config: Config = r.deployment.configFor('us-iowa');
  const region = { ...config.region, publicUrl: r.url };
  const d = await gatherDeployment({ region, regions: [region], adminToken: ADMIN_TOKEN }, 10_000);
  return d.regions[0] as RegionStatus;
}

test('lists only credentials whose metadata refresh fails, and at most five of them', async () => {
  const org = await createOrg(r.url, 'refreshing');
  const ids: string[] = [];
  for (let i = 0; i < 7; i++) {
    const res = await call(r.url, 'POST', '/organizations/sso/saml/provider-credentials', {
      body: { idp_metadata_url: idp.url('keycloak.xml'), label: `c${i}` },
      headers: slashidHeaders(org),
    });
    expect(res.status).toBe(201);
    ids.push(res.body.result.id as string);
  }
  const fail = (which: string[]) =>
    r.region.db.$executeRawUnsafe(
      "UPDATE metadata_refresh_state SET consecutive_failures = 3, last_error = 'unreachable' WHERE credential_id = ANY($1::uuid[])",
      which,
    );
  // One fails: only it is listed, not the six that refresh fine.
  await fail(ids.slice(0, 1));
  const one = (await gathered()).metadata_refresh;
  expect(one?.failing).toBe(1);
  expect(one?.failures.map((f) => f.credential_id)).toEqual([ids[0]]);
  // Six fail: all are counted, five are listed.
  await fail(ids.slice(0, 6));
  const six = (await gathered()).metadata_refresh;
  expect(six?.failing).toBe(6);
  expect(six?.failures).toHaveLength(5);
  for (const f of six?.failures ?? []) expect(f).toMatchObject({ consecutive_failures: 3, last_error: 'unreachable' });
});

test('a region whose /readyz answers 503 is shown up and not ready, with its database, rather than as unreadable', async () => {
  const last = listMigrations().at(-1)?.name ?? '';
  const { db } = r.region;
  await db.$executeRawUnsafe('UPDATE "_prisma_migrations" SET rolled_back_at = now() WHERE migration_name = $1', last);
  try {
    const status = await gathered();
    expect(status).toMatchObject({ up: true, ready: false, database: 'ok' });
    expect(status.problems.filter((p) => p.startsWith('/readyz'))).toEqual([]);
  } finally {
    await db.$executeRawUnsafe('UPDATE "_prisma_migrations" SET rolled_back_at = NULL WHERE migration_name = $1', last);
  }
});

test("each region's backlog is read from a region that could read the shared stream, not one cut off from it", () => {
  const status = (id: string) => ({ id, url: `http://${id}`, up: true, ready: true, response_ms: 1, problems: [], redis: 'ready', redis_down: null, database: 'ok', replication: null, metadata_refresh: null, backlog: null }) as RegionStatus;
  const replication = (id: string, connected: boolean, pending: object[]) =>
    ({ region: id, applied: [], pending, stream: { connected, dead_letters: connected ? 0 : null, error: connected ? null : 'cut off' }, outbox: { unpublished: 0, unconfirmed: 0, oldest_unpublished_at: null }, failures: { failing: 0, parked: 0 }, waiting_requests: 0 }) as never;
  // a cannot read the stream (it reports nothing pending); b can, and sees a three entries behind.
  const d = assembleDeployment('b', [
    { status: status('a'), replication: replication('a', false, []) },
    { status: status('b'), replication: replication('b', true, [{ region: 'a', undelivered: 3, pending_acks: 0 }, { region: 'b', undelivered: 0, pending_acks: 0 }]) },
  ], 1500);
  expect(d.regions.map((x) => [x.id, x.backlog])).toEqual([
    ['a', { undelivered: 3, pending_acks: 0 }],
    ['b', { undelivered: 0, pending_acks: 0 }],
  ]);
});

test("a backlog Redis could not count is shown as the bound it is (the inbox's length), not as a count", () => {
  const status = (id: string) => ({ id, url: `http://${id}`, up: true, ready: true, response_ms: 1, problems: [], redis: 'ready', redis_down: null, database: 'ok', replication: null, metadata_refresh: null, backlog: null }) as RegionStatus;
  const replication = (id: string, pending: object[]) =>
    ({ region: id, applied: [], pending, stream: { connected: true, dead_letters: 0, error: null }, outbox: { unpublished: 0, unconfirmed: 0, oldest_unpublished_at: null }, failures: { failing: 0, parked: 0 }, waiting_requests: 0 }) as never;
  const d = assembleDeployment('b', [
    { status: status('a'), replication: null },
    { status: status('b'), replication: replication('b', [{ region: 'a', undelivered: 7, undelivered_is_bound: true, pending_acks: 0 }, { region: 'b', undelivered: 0, undelivered_is_bound: false, pending_acks: 0 }]) },
  ], 1500);
  expect(d.regions.map((x) => [x.id, x.backlog])).toEqual([
    ['a', { undelivered: 7, pending_acks: 0, undelivered_is_bound: true }],
    ['b', { undelivered: 0, pending_acks: 0 }],
  ]);
});

test("a region whose Redis hangs is shown with that problem, not as a region whose replication status does not answer", async () => {
  const own = await ownRedis();
  await own.start();
  const hung = await startInProcess('console-hung', ['us-iowa'], { redisUrl: own.url });
  try {
    const config: Config = hung.deployment.configFor('us-iowa');
    const region = { ...config.region, publicUrl: hung.url };
    own.pause();
    // Its /healthz says so once a ping has gone unanswered past its bound.
    expect(await eventually(async () => (await call(hung.url, 'GET', '/healthz')).body.redis === 'not answering', 15_000, 200)).toBe(true);
    // With the console's own timeouts: its status reads wait for the Redis's bound, and get the time for it.
    const d = await gatherDeployment({ region, regions: [region], adminToken: ADMIN_TOKEN });
    const problems = d.regions[0]?.problems ?? [];
    expect(problems.some((p) => p.startsWith('its Redis does not answer'))).toBe(true);
    expect(problems.filter((p) => p.includes('no answer within'))).toEqual([]);
    // Its replication status not read at all (the console's token refused there): its /healthz tells.
    const refused = await gatherDeployment({ region, regions: [region], adminToken: 'not-the-admin-token-0123' });
    expect(refused.regions[0]?.problems).toContain(
      'its Redis does not answer (/healthz: not answering): no change reaches this region or leaves it until it does; the lag figures cannot show that',
    );
  } finally {
    own.resume();
    await hung.stop();
    await own.kill();
  }
}, 60_000);
