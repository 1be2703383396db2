/**
 * What the deployment console gathers from a region (src/console/deployment.ts), against one region in this
 * process: its failing metadata refreshes, a region that answers but is not ready, and whose view of the
 * shared stream tells each region's backlog.
 */
import { assembleDeployment, gatherDeployment } from '../../src/console/deployment';
import type { Config } from '../../src/config';
import type { RegionStatus } from '../../src/console/schema';
import { listMigrations } from '../../src/db/migrate';
import { ADMIN_TOKEN } from '../support/env';
import { call, createOrg, slashidHeaders } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { startInProcess, type InProcessRegion } from '../support/in-process';

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
  const status = (id: string) => ({ id, url: `http://${id}`, up: true, ready: true, response_ms: 1, problems: [], redis: 'ready', database: 'ok', replication: null, metadata_refresh: null, backlog: null }) as RegionStatus;
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
