/**
 * Every process of a region runs the metadata refresher over the same schedule (metadata-refresh.ts). A
 * credential is refreshed by one of them at a time: each claims it in the region's Redis first
 * (refresh-claims.ts). Before, two processes fetched every due credential twice, and a failed refresh was
 * counted twice (its back-off grew twice as fast). Here two refreshers share the region's database and
 * Redis, as two processes of the region do; the first one's fetch is held by the IdP while the second runs.
 */
import { createLogger } from '../../src/logger';
import { MetadataRefresher } from '../../src/provider-credentials/metadata-refresh';
import { call, eventually, slashidHeaders } from '../support/harness';
import { fixture } from '../support/idp-server';
import { useRefreshRig } from '../support/refresh-rig';

const PATH = '/organizations/sso/saml/provider-credentials';
const rig = useRefreshRig('refresh-claims');

/** The second process of the region: its own refresher and configuration object (so its own fetch slots). */
function secondProcess(): MetadataRefresher {
  const { r } = rig;
  const config = { ...r.deployment.configFor('us-iowa') };
  return new MetadataRefresher({ db: r.region.db, repl: r.region.replication.repl, redis: r.region.replication.redis, config, log: createLogger({ level: 'silent' }) });
}

async function createCredential(name: string): Promise<string> {
  const { r, idp, org } = rig;
  idp.set(name, fixture('okta.xml'));
  const res = await call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url(name), label: name }, headers: slashidHeaders(org) });
  expect(res.status).toBe(201);
  return res.body.result.id as string;
}

const sql = (text: string, ...values: unknown[]) => rig.r.region.db.$executeRawUnsafe(text, ...values);
const makeDue = (id: string) => sql("UPDATE metadata_refresh_state SET next_at = now() - interval '1 minute' WHERE credential_id = $1::uuid", id);
async function failures(id: string): Promise<number | undefined> {
  const rows = await rig.r.region.db.$queryRawUnsafe<{ n: number }[]>('SELECT consecutive_failures AS n FROM metadata_refresh_state WHERE credential_id = $1::uuid', id);
  return rows[0]?.n;
}

/**
 * The first refresher's runOnce with its fetch of `name` held by the IdP, and the second's runOnce meanwhile;
 * returns once the second is done or has its own fetch held (what the code before claims did), then lets the
 * IdP answer both.
 */
async function bothProcesses(name: string, second: MetadataRefresher): Promise<void> {
  const { idp, refresher } = rig;
  const release = idp.hold(name);
  try {
    const first = refresher.runOnce(5);
    expect(await eventually(async () => idp.held() === 1, 15_000, 20)).toBe(true);
    let secondDone = false;
    const other = second.runOnce(5).finally(() => (secondDone = true));
    expect(await eventually(async () => secondDone || idp.held() === 2, 15_000, 20)).toBe(true);
    release();
    await Promise.all([first, other]);
  } finally {
    release();
  }
}

test('a credential due by schedule is fetched by one process of the region, and a failure counted once', async () => {
  const { idp } = rig;
  const second = secondProcess();
  const id = await createCredential('claimed-due.xml');
  idp.remove('claimed-due.xml'); // its refresh fails (404), as an IdP down for maintenance makes it
  await makeDue(id);
  const before = idp.hits('claimed-due.xml');

  await bothProcesses('claimed-due.xml', second);
  expect(idp.hits('claimed-due.xml') - before).toBe(1);
  expect(await failures(id)).toBe(1);

  // The claim ends with the refresh: due again, the other process takes it at once (not after the lease).
  await makeDue(id);
  expect(await second.runOnce(5)).toBe(1);
  expect(idp.hits('claimed-due.xml') - before).toBe(2);
  expect(await failures(id)).toBe(2);
});

test('a credential the sweep finds without a schedule is fetched by one process of the region', async () => {
  const { idp } = rig;
  const second = secondProcess();
  const id = await createCredential('claimed-found.xml');
  // As a re-seed leaves it: no schedule, so both processes' sweeps find it.
  await sql('DELETE FROM metadata_refresh_state WHERE credential_id = $1::uuid', id);
  const before = idp.hits('claimed-found.xml');

  await bothProcesses('claimed-found.xml', second);
  expect(idp.hits('claimed-found.xml') - before).toBe(1);
  expect(await failures(id)).toBe(0);
});

test('a claim is given back when the check made under it fails, so the credential is refreshed at once after', async () => {
  const { r, idp } = rig;
  const id = await createCredential('claim-check-fails.xml');
  await makeDue(id);
  const before = idp.hits('claim-check-fails.xml');
  // A process whose database fails the one statement run under the claim (attemptedSince's read), as a
  // connection lost at that moment does; every other statement goes to the region's database.
  const db = r.region.db;
  let failed = 0;
  const failing = new Proxy(db, {
    get(target, prop) {
      if (prop === '$queryRawUnsafe') {
        return (query: string, ...values: unknown[]) => {
          if (query.startsWith('SELECT last_attempt_at FROM metadata_refresh_state')) {
            failed += 1;
            return Promise.reject(new Error('Connection terminated unexpectedly'));
          }
          return target.$queryRawUnsafe(query, ...values);
        };
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  const config = { ...r.deployment.configFor('us-iowa') };
  const first = new MetadataRefresher({ db: failing, repl: r.region.replication.repl, redis: r.region.replication.redis, config, log: createLogger({ level: 'silent' }) });
  await first.runOnce(5);
  expect(failed).toBe(1);
  expect(idp.hits('claim-check-fails.xml')).toBe(before);

  // The other process takes it now, not after the claim's 2-minute lease.
  expect(await secondProcess().runOnce(5)).toBe(1);
  expect(idp.hits('claim-check-fails.xml')).toBe(before + 1);
});
