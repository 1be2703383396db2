/**
 * The refresher claims a credential in the region's Redis before refreshing it (refresh-claims.ts). A Redis
 * that hangs (stopped, its connection open: nothing errors, nothing answers) must not stop the refresh: the
 * claim is given up on within a bound and the refresh goes ahead unclaimed, as docs/operations.md says. Before,
 * the claim's SET waited for as long as Redis hung: no credential of the process was refreshed, and the
 * region's shutdown, which waits for the refresher's tick, waited too.
 */
import { FEATURES } from '../../src/features';
import type { Feature } from '../../src/feature';
import { createLogger } from '../../src/logger';
import { providerCredentialsFeature } from '../../src/provider-credentials/feature';
import { MetadataRefresher } from '../../src/provider-credentials/metadata-refresh';
import { call, createOrg, eventually, slashidHeaders } from '../support/harness';
import { fixture, startIdpServer, type IdpServer } from '../support/idp-server';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { ownRedis, type OwnRedis } from '../support/redis-server';

const PATH = '/organizations/sso/saml/provider-credentials';

let redis: OwnRedis;
let idp: IdpServer;
let r: InProcessRegion;
let org: { id: string; api_key: string };

/** The feature without its own refresher (it ticks every 30 s): the test ticks one by hand. */
function withoutStart(f: Feature): Feature {
  const copy = { ...f };
  delete copy.start;
  return copy;
}

beforeAll(async () => {
  redis = await ownRedis();
  await redis.start();
  idp = await startIdpServer();
  const features = FEATURES.map((f) => (f === providerCredentialsFeature ? withoutStart(f) : f));
  r = await startInProcess('refreshhung', ['us-iowa'], { metadataAllowedHosts: [idp.hostPort], redisUrl: redis.url }, 'us-iowa', { features });
  org = await createOrg(r.url, 'refreshhung');
}, 60_000);
afterAll(async () => {
  redis?.resume();
  await r?.stop();
  await idp?.close();
  await redis?.kill();
});

async function lastAttempt(id: string): Promise<Date | null> {
  const rows = await r.region.db.$queryRawUnsafe<{ at: Date | null }[]>('SELECT last_attempt_at AS at FROM metadata_refresh_state WHERE credential_id = $1::uuid', id);
  return rows[0]?.at ?? null;
}

test('a due credential is refreshed while the Redis its claim goes to hangs, and the tick ends', async () => {
  idp.set('hung.xml', fixture('okta.xml'));
  const created = await call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url('hung.xml'), label: 'hung' }, headers: slashidHeaders(org) });
  expect(created.status).toBe(201);
  const id = created.body.result.id as string;
  await r.region.db.$executeRawUnsafe("UPDATE metadata_refresh_state SET next_at = now() - interval '1 minute' WHERE credential_id = $1::uuid", id);
  const before = { hits: idp.hits('hung.xml'), attempt: await lastAttempt(id) };
  const refresher = new MetadataRefresher({
    db: r.region.db,
    repl: r.region.replication.repl,
    redis: r.region.replication.redis,
    config: r.deployment.configFor('us-iowa'),
    log: createLogger({ level: 'silent' }),
  });

  redis.pause();
  let ended = false;
  let tick: Promise<number> | undefined;
  try {
    tick = refresher.runOnce(5).finally(() => (ended = true));
    // Waited for, not timed: the refresh happens (the IdP is asked, the attempt recorded) and the tick ends.
    expect(await eventually(async () => ended, 30_000, 100)).toBe(true);
    expect(idp.hits('hung.xml')).toBe(before.hits + 1);
    const after = await lastAttempt(id);
    expect(after !== null && (before.attempt === null || after.getTime() > before.attempt.getTime())).toBe(true);
  } finally {
    redis.resume();
    await tick;
  }
}, 60_000);
