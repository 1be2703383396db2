/**
 * The bus is authenticated (docs/security.md): whoever can write to Redis cannot change a region's data or
 * clock. Forged entries (a real event altered, one without a signature, one signed with a key the regions
 * do not hold, one with the right key id and a wrong secret) are refused by every region, counted, shown
 * in /admin/replication and dead-lettered; rows and clocks stay as they were. Keys rotate without downtime.
 */
import Redis from 'ioredis';
import { Client } from 'pg';
import { EventAuth, parseReplicationKeys, type SignedEvent } from '../../src/replication/event-auth';
import { REDIS_URL, TEST_REPLICATION_KEYS } from '../support/env';
import { adminHeaders, call, createOrg, eventually, startCluster, type Cluster } from '../support/harness';

const REGIONS = ['us-iowa', 'europe-belgium', 'asia-japan'];
const ALL = { 'SlashID-Required-Consistency': 'all_regions' };
const status = async (c: Cluster, r: string) => (await call(c.url(r), 'GET', '/admin/replication', { headers: adminHeaders })).body;

async function query<T>(c: Cluster, region: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const pg = new Client({ connectionString: c.deployment.configFor(region).region.databaseUrl });
  await pg.connect();
  try {
    return (await pg.query(sql, params)).rows as T[];
  } finally {
    await pg.end();
  }
}

describe('forged change events', () => {
  let cluster: Cluster;
  let redis: Redis;
  beforeAll(async () => {
    cluster = await startCluster('busauth', REGIONS);
    redis = new Redis(REDIS_URL);
  }, 90_000);
  afterAll(async () => {
    redis?.disconnect();
    await cluster?.stop();
  });

  test('are refused in every region: no row changes, no clock moves, counted, shown, dead-lettered', async () => {
    const org = await createOrg(cluster.url('us-iowa'), 'acme', { headers: ALL });
    const [stored] = await query<{ event: SignedEvent }>(cluster, 'us-iowa', `SELECT event FROM replication_outbox WHERE org_id = $1::uuid ORDER BY id LIMIT 1`, [org.id]);
    const real = stored?.event as SignedEvent;
    expect(real.sig?.kid).toBe('test-k1');
    const op = real.ops.find((o) => o.table === 'organizations');
    expect(op).toBeDefined();
    // The forgery: the real event with its label changed and a version 30 s ahead (within the clock's
    // allowed skew, so only the signature stands between it and every region's rows and clocks).
    const ahead = `${String(Date.now() + 30_000).padStart(15, '0')}${op!.version.slice(15)}`;
    const forged: SignedEvent = {
      ...real,
      ops: real.ops.map((o) => (o === op ? { ...o, version: ahead, row: { ...o.row, name: 'pwned', version: ahead } } : o)),
    };
    // Into every region's inbox (each region reads only its own).
    const inbox = (r: string) => `${cluster.deployment.file.redisKeyPrefix}{repl}:changes:${r}`;
    const good = new EventAuth(parseReplicationKeys(TEST_REPLICATION_KEYS));
    const rogue = new EventAuth(parseReplicationKeys(`rogue:${'x'.repeat(40)}`));
    const wrongSecret = new EventAuth(parseReplicationKeys(`test-k1:${'y'.repeat(40)}`));
    const altered = good.entryFields(forged); // keeps the real event's signature over other bytes
    expect(altered.slice(2)).toEqual(['k', 'test-k1', 's', real.sig!.mac]);
    const { sig: _s, ...unsigned } = forged;
    const entries = [
      altered,
      ['e', JSON.stringify(unsigned)],
      rogue.entryFields(rogue.sign(unsigned)),
      wrongSecret.entryFields(wrongSecret.sign(unsigned)),
    ];
    const ids = new Map<string, string[]>(REGIONS.map((r) => [r, []]));
    for (const f of entries) for (const r of REGIONS) ids.get(r)?.push(String(await redis.xadd(inbox(r), '*', ...f)));

    for (const r of REGIONS) {
      expect(await eventually(async () => (await status(cluster, r)).refused?.total === 4, 20_000)).toBe(true);
      const s = await status(cluster, r);
      expect(s.refused.by_reason).toEqual({ 'bad-signature': 2, unsigned: 1, 'unknown-key': 1 });
      expect(s.refused.recent.map((x: { stream_id: string }) => x.stream_id).sort()).toEqual([...(ids.get(r) ?? [])].sort());
      expect(s.refused.recent.find((x: { reason: string }) => x.reason === 'unknown-key')).toMatchObject({ claimed_origin: 'us-iowa', kid: 'rogue' });
      // Acked (dead-lettered), so they pin nothing.
      expect(await eventually(async () => (await status(cluster, r)).pending.every((g: { pending_acks: number }) => g.pending_acks === 0))).toBe(true);
    }
    expect(await redis.xlen(cluster.deployment.file.redisKeyPrefix + '{repl}:dead-letter')).toBe(4 * REGIONS.length);
    const dead = (await redis.xrange(cluster.deployment.file.redisKeyPrefix + '{repl}:dead-letter', '-', '+')) as [string, string[]][];
    expect(new Set(dead.map(([, f]) => f[f.indexOf('refused') + 1]))).toEqual(new Set(['bad-signature', 'unsigned', 'unknown-key']));

    // The rows are as written; no clock moved: a new write in each region gets a version below the forgery's.
    for (const r of REGIONS) {
      const [row] = await query<{ name: string; version: string }>(cluster, r, 'SELECT name, version FROM organizations WHERE id = $1::uuid', [org.id]);
      expect(row).toEqual({ name: 'acme', version: op!.version });
      const other = await createOrg(cluster.url(r), `after-${r}`);
      const [mine] = await query<{ version: string }>(cluster, r, 'SELECT version FROM organizations WHERE id = $1::uuid', [other.id]);
      expect(mine!.version < ahead).toBe(true);
    }
    // Counted in the metrics, under the claimed origin (a known region) and the reason.
    const metrics = String((await call(cluster.url('asia-japan'), 'GET', '/metrics', { headers: adminHeaders })).body).split('\n');
    const refusedMetric = (reason: string) =>
      metrics.find((l) => l.startsWith('replication_events_refused_total{') && l.includes('origin_region="us-iowa"') && l.includes(`reason="${reason}"`))?.split(' ').pop();
    expect(refusedMetric('bad-signature')).toBe('2');
    expect(refusedMetric('unsigned')).toBe('1');
    expect(refusedMetric('unknown-key')).toBe('1');
    // Replication goes on: a real write reaches every region.
    await createOrg(cluster.url('europe-belgium'), 'later', { headers: ALL });
  }, 90_000);
});

describe('key rotation', () => {
  const K1 = `k1:${'1'.repeat(40)}`;
  const K2 = `k2:${'2'.repeat(40)}`;
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster('busrotate', ['us-iowa', 'europe-belgium'], {
      regionEnv: { 'us-iowa': { REPLICATION_KEYS: `${K2},${K1}` }, 'europe-belgium': { REPLICATION_KEYS: `${K1},${K2}` } },
    });
  }, 90_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  const kidOf = async (region: string, orgId: string) =>
    (await query<{ kid: string }>(cluster, region, `SELECT event->'sig'->>'kid' AS kid FROM replication_outbox WHERE org_id = $1::uuid`, [orgId]))[0]?.kid;

  test('regions signing with k2 and with k1 interoperate; then k1 is dropped everywhere', async () => {
    const a = await createOrg(cluster.url('us-iowa'), 'from-iowa', { headers: ALL });
    const b = await createOrg(cluster.url('europe-belgium'), 'from-belgium', { headers: ALL });
    expect(await kidOf('us-iowa', a.id)).toBe('k2');
    expect(await kidOf('europe-belgium', b.id)).toBe('k1');
    for (const r of cluster.regions) expect((await status(cluster, r)).refused.total).toBe(0);

    // Every region signs with k2 now: k1 leaves the key sets.
    for (const r of cluster.regions) {
      cluster.proc(r).opts.env.REPLICATION_KEYS = K2;
      await cluster.proc(r).restart();
    }
    await Promise.all(cluster.regions.map((r) => cluster.proc(r).waitReady(60_000)));
    const c = await createOrg(cluster.url('europe-belgium'), 'after-rotation', { headers: ALL });
    expect(await kidOf('europe-belgium', c.id)).toBe('k2');
    const got = await call(cluster.url('us-iowa'), 'GET', `/admin/organizations/${c.id}`, { headers: adminHeaders });
    expect(got.status).toBe(200);

    // An event signed with the dropped key is refused now.
    const redis = new Redis(REDIS_URL);
    try {
      const old = new EventAuth(parseReplicationKeys(K1));
      const [stored] = await query<{ event: SignedEvent }>(cluster, 'europe-belgium', 'SELECT event FROM replication_outbox WHERE org_id = $1::uuid', [c.id]);
      await redis.xadd(`${cluster.deployment.file.redisKeyPrefix}{repl}:changes:us-iowa`, '*', ...old.entryFields(old.sign(stored!.event)));
      expect(await eventually(async () => (await status(cluster, 'us-iowa')).refused.by_reason['unknown-key'] === 1)).toBe(true);
    } finally {
      redis.disconnect();
    }
  }, 120_000);
});
