/**
 * Config `ackSignatures: require` through real region processes: every reader of the acks in an origin's
 * Redis counts only values (and `~org`, and announcements) whose signature holds. A Redis writer without the
 * key plants acks here as an attacker would (unsigned, under a bad tag, announced unsigned or badly signed):
 * no all_regions write completes on them, the relay confirms no delivery, the change's status does not read
 * applied, a planted `~org` lets no organization read the change, and the re-seed's check does not take
 * them. Genuine (signed) acks complete everything as before; the tombstone watermark reports are signed too. In `sign` mode unsigned ones still count, and
 * GET /admin/replication and /metrics count them: the figure that says when `require` is safe.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Client } from 'pg';
import { createRedis, replicationKeys, type Redis } from '../../src/redis';
import { checkReport, signAck, signAnnouncement } from '../../src/replication/ack-auth';
import { adminHeaders, call, createOrg, eventually, runScript, slashidHeaders, startCluster, type Cluster } from '../support/harness';
import { REDIS_URL, TEST_REPLICATION_KEYS, testEventAuth, forgerOf } from '../support/env';
import { scrape } from '../observability/support';

const [A, B, C] = ['us-iowa', 'europe-belgium', 'asia-japan'];
/** An all_regions write that must time out (a region paused): 2 s keeps those cases short. */
const ALL = { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '2' };
/**
 * An all_regions write that must complete: the first write of a cluster just started took over 2 s on a loaded
 * CI host (408 in a clean-clone run), which says nothing of the acks' signatures.
 */
const ALL_DONE = { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '30' };
const LOCAL = { 'SlashID-Required-Consistency': 'local_region' };
/** The regions' key, as the test's attacker does not have it; and the same key id under another secret. */
const auth = testEventAuth();
const forger = forgerOf(auth);
const appliedNow = () => `applied@${new Date().toISOString()}`;

/** What a test shares of its cluster: it, a connection to the (one) Redis, its keys, a database client per region. */
function rig(label: string, regions: string[], mode: 'sign' | 'require') {
  const r = {} as { cluster: Cluster; redis: Redis; keys: ReturnType<typeof replicationKeys>; db: Client };
  beforeAll(async () => {
    r.cluster = await startCluster(label, regions, { extra: { ackSignatures: mode } });
    r.keys = replicationKeys(r.cluster.deployment.file.redisKeyPrefix);
    r.redis = createRedis(REDIS_URL, 'test:attacker', { queueWhileOffline: true });
    r.db = new Client({ connectionString: r.cluster.deployment.configFor(A).region.databaseUrl });
    await r.db.connect();
  }, 120_000);
  afterAll(async () => {
    r.redis?.disconnect();
    await r.db?.end();
    await r.cluster?.stop(0);
  });
  return r;
}

/** Runs `fn` with `region` paused (SIGSTOP), resuming it whatever happens. */
async function whilePaused<T>(cluster: Cluster, region: string, fn: () => Promise<T>): Promise<T> {
  cluster.proc(region).pause();
  try {
    return await fn();
  } finally {
    cluster.proc(region).resume();
  }
}

/** When A's delivery of `changeId` to `region` was confirmed (null: not yet), or undefined when it has none yet. */
async function confirmedAt(db: Client, changeId: string, region: string): Promise<Date | null | undefined> {
  const { rows } = await db.query<{ confirmed_at: Date | null }>('SELECT confirmed_at FROM replication_deliveries WHERE change_id = $1 AND region = $2', [changeId, region]);
  return rows[0]?.confirmed_at;
}

/** A change made in A (an organization created there, local_region) while `region` is paused, once A's relay delivered it. */
async function delivered(r: ReturnType<typeof rig>, name: string): Promise<string> {
  const res = await call(r.cluster.url(A), 'POST', '/admin/organizations', { body: { name }, headers: { ...adminHeaders, ...LOCAL } });
  expect(res.status).toBe(201);
  const changeId = res.headers.get('x-change-id') ?? '';
  expect(await eventually(async () => (await confirmedAt(r.db, changeId, B)) !== undefined)).toBe(true);
  return changeId;
}

const statusOf = async (r: ReturnType<typeof rig>, changeId: string) =>
  (await call(r.cluster.url(A), 'GET', `/admin/replication/changes/${changeId}`, { headers: adminHeaders })).body as { complete: boolean; applied_at: Record<string, string | null> };

describe('ackSignatures: require', () => {
  const r = rig('ackrequire', [A, B, C], 'require');

  test('with genuine (signed) acks an all_regions write answers 201 and its change reads complete, as without signatures', async () => {
    const res = await call(r.cluster.url(A), 'POST', '/admin/organizations', { body: { name: 'signed' }, headers: { ...adminHeaders, ...ALL_DONE } });
    expect(res.status).toBe(201);
    expect((await statusOf(r, res.headers.get('x-change-id') ?? '')).complete).toBe(true);
  });

  test('every region writes its tombstone watermark report signed, bound to its region (report-signatures.test.ts: what a planted one does)', async () => {
    const signed = async () => {
      const stored = await r.redis.hgetall(r.keys.watermarks);
      return [A, B, C].every((region) => checkReport(auth, region, stored[region] ?? '').verdict === 'signed');
    };
    expect(await eventually(signed)).toBe(true);
  });

  /**
   * An all_regions write in A while B is paused, with B's `applied` ack planted (`value`) into every ack record
   * of A's Redis lacking B's, and announced on A's channel unsigned and under a bad signature, until it answers.
   */
  async function writeWithForgedAcks(name: string, value: (changeId: string) => string) {
    return whilePaused(r.cluster, B, async () => {
      let answered = false;
      const writing = call(r.cluster.url(A), 'POST', '/admin/organizations', { body: { name }, headers: { ...adminHeaders, ...ALL } }).finally(() => (answered = true));
      while (!answered) {
        for (const key of await r.redis.keys(r.keys.ack('*'))) {
          const id = key.slice(r.keys.ack('').length);
          if ((await r.redis.hsetnx(key, B, value(id))) === 0) continue;
          const body = JSON.stringify({ region: B, ids: [id] });
          await r.redis.publish(r.keys.ackChannel(A), body);
          await r.redis.publish(r.keys.ackChannel(A), signAnnouncement(forger, body));
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return writing;
    });
  }

  test('an all_regions write answers 408 while a region is paused, though its applied ack is planted unsigned and announced', async () => {
    const res = await writeWithForgedAcks('planted unsigned', () => appliedNow());
    expect(res.status).toBe(408);
    // Once B resumes, its genuine ack replaces the planted one: the change reads complete.
    const changeId = res.headers.get('x-change-id') ?? '';
    expect(await eventually(async () => (await statusOf(r, changeId)).complete)).toBe(true);
  });

  test('an all_regions write answers 408 while a region is paused, though its applied ack is planted under a bad tag', async () => {
    const res = await writeWithForgedAcks('planted bad tag', (id) => signAck(forger, id, B, appliedNow()));
    expect(res.status).toBe(408);
  });

  test('the relay confirms a delivery on a signed ack only, and the change status reads applied on it only', async () => {
    const [planted, signed] = await whilePaused(r.cluster, B, async () => {
      const ids = [await delivered(r, 'unsigned ack'), await delivered(r, 'signed ack')] as const;
      await r.redis.hset(r.keys.ack(ids[0]), B, appliedNow());
      await r.redis.hset(r.keys.ack(ids[1]), B, signAck(auth, ids[1], B, appliedNow()));
      // Both judged in the same confirm round (one page): once the signed one is confirmed, the planted one was passed over.
      expect(await eventually(async () => (await confirmedAt(r.db, ids[1], B)) instanceof Date)).toBe(true);
      expect(await confirmedAt(r.db, ids[0], B)).toBeNull();
      expect((await statusOf(r, ids[0])).applied_at[B]).toBeNull();
      expect((await statusOf(r, ids[1])).applied_at[B]).toEqual(expect.any(String));
      return ids;
    });
    // B applies it (delivered all along): its genuine ack confirms it.
    expect(await eventually(async () => (await confirmedAt(r.db, planted, B)) instanceof Date)).toBe(true);
    expect((await statusOf(r, signed)).complete).toBe(true);
  });

  test('a planted ~org lets no organization read a change on its status route; a signed one does', async () => {
    const owner = await createOrg(r.cluster.url(A), 'owner of the change', { headers: ALL_DONE });
    const changeId = crypto.randomUUID();
    const route = `/organizations/replication/changes/${changeId}`;
    await r.redis.hset(r.keys.ack(changeId), '~org', owner.id, A, signAck(auth, changeId, A, appliedNow()));
    expect((await call(r.cluster.url(A), 'GET', route, { headers: slashidHeaders(owner) })).status).toBe(404);
    await r.redis.hset(r.keys.ack(changeId), '~org', signAck(auth, changeId, '~org', owner.id));
    const shown = await call(r.cluster.url(A), 'GET', route, { headers: slashidHeaders(owner) });
    expect(shown.status).toBe(200);
    expect(shown.body.result.applied_at[A]).toEqual(expect.any(String));
  });

  test('the re-seed does not take a planted ack for the peer\'s (it needs REPLICATION_KEYS to check them); a signed one it takes', async () => {
    const reseed = (keys: string) => runScript(r.cluster, 'reseed', ['--from', B, '--to', C, '--wait', '1'], { REPLICATION_KEYS: keys });
    await whilePaused(r.cluster, B, async () => {
      const changeId = await delivered(r, 'the peer lacks this');
      // A's process down, its database and Redis up: only the peer's ack in A's Redis can tell (as in reseed-caught-up).
      await whilePaused(r.cluster, A, async () => {
        await r.redis.hset(r.keys.ack(changeId), B, appliedNow());
        const noKeys = await reseed('');
        expect({ status: noKeys.status, stderr: noKeys.stderr }).toEqual({ status: 2, stderr: expect.stringContaining('REPLICATION_KEYS must be set') });
        const refused = await reseed(TEST_REPLICATION_KEYS);
        expect(refused.status).toBe(1);
        expect(refused.stderr).toContain(`${A} has 1 change(s) ${B} has not applied yet`);
        // Not exported: the keys `npm run cluster` keeps in its secrets file next to the config are taken.
        const secrets = path.join(path.dirname(r.cluster.deployment.configPath), '.cluster', `${path.basename(r.cluster.deployment.configPath, '.json')}.env`);
        fs.mkdirSync(path.dirname(secrets), { recursive: true });
        fs.writeFileSync(secrets, `ADMIN_TOKEN=unused\nexport REPLICATION_KEYS='${TEST_REPLICATION_KEYS}'\n`);
        try {
          expect(await reseed('')).toMatchObject({ status: 1, stderr: expect.stringContaining(`${A} has 1 change(s) ${B} has not applied yet`) });
        } finally {
          fs.rmSync(secrets);
        }
        await r.redis.hset(r.keys.ack(changeId), B, signAck(auth, changeId, B, appliedNow()));
        const copied = await reseed(TEST_REPLICATION_KEYS);
        expect({ status: copied.status, stderr: copied.stderr }).toEqual({ status: 0, stderr: '' });
      });
    });
  }, 120_000);
});

describe('ackSignatures: sign (a rolling upgrade)', () => {
  const r = rig('acksign', [A, B], 'sign');

  type Figures = { mode: string; unverified: Record<string, number>; confirmed_on_unverified: number; member_entries: { unverified: Record<string, number> }; removal_records: { unverified: Record<string, number> } };
  const figures = async () => (await call(r.cluster.url(A), 'GET', '/admin/replication', { headers: adminHeaders })).body.ack_signatures as Figures;

  test('genuine acks and membership entries are all signed: nothing counted unverified', async () => {
    const res = await call(r.cluster.url(A), 'POST', '/admin/organizations', { body: { name: 'signed' }, headers: { ...adminHeaders, ...ALL_DONE } });
    expect(res.status).toBe(201);
    expect(await eventually(async () => (await confirmedAt(r.db, res.headers.get('x-change-id') ?? '', B)) instanceof Date)).toBe(true);
    const none = { unsigned: 0, 'bad-signature': 0, 'unknown-key': 0 };
    expect(await figures()).toEqual({ mode: 'sign', unverified: none, confirmed_on_unverified: 0, member_entries: { unverified: { ...none, replayed: 0 } }, removal_records: { unverified: none } });
  });

  test('an unsigned ack still counts (confirms the delivery, reads applied) and is counted, in GET /admin/replication and /metrics', async () => {
    await whilePaused(r.cluster, B, async () => {
      const changeId = await delivered(r, 'unsigned, from a region not signing yet');
      await r.redis.hset(r.keys.ack(changeId), B, appliedNow());
      expect(await eventually(async () => (await confirmedAt(r.db, changeId, B)) instanceof Date)).toBe(true);
      expect((await statusOf(r, changeId)).applied_at[B]).toEqual(expect.any(String));
    });
    const f = await figures();
    expect(f.unverified.unsigned).toBeGreaterThan(0);
    expect(f.confirmed_on_unverified).toBeGreaterThan(0);
    const m = await scrape(r.cluster.url(A));
    expect(m.value('replication_acks_unverified_total', { region: A, reason: 'unsigned' })).toBeGreaterThan(0);
    expect(m.value('replication_deliveries_confirmed_unverified_total', { region: A })).toBeGreaterThan(0);
  });
});
