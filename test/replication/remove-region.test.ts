/**
 * Removing a region for good (docs/operations.md, "Removing a region"): stop it, roll a config without it
 * onto the others, then `npm run members -- remove <region>`. Afterwards no region waits for it or delivers
 * to it: a change it never acked completes, an all_regions write already waiting for it completes with the
 * regions left, the origin's outbox confirms what was held for it, an all_regions write no longer names it, and nothing of it is left in Redis (its inbox, and the records of
 * that inbox's incarnation that would mislead the relay if a region of that name were added again) but the
 * record that it was removed.
 */
import fs from 'node:fs';
import { createRedis } from '../../src/redis';
import { adminHeaders, call, eventually, pendingOnlyIn, runScript, startCluster, type Cluster } from '../support/harness';
import { REDIS_URL } from '../support/env';
import { scrape } from '../observability/support';

const REGIONS = ['us-iowa', 'europe-belgium', 'asia-japan'];
const GONE = 'asia-japan';
let cluster: Cluster;

beforeAll(async () => {
  // The relays trim every second (30 s by default): the trims record the inboxes' incarnations, and the test
  // watches that none recreates the removed region's records.
  cluster = await startCluster('remove-region', REGIONS, { extra: { streamTrimIntervalMs: 1000 } });
}, 120_000);
afterAll(async () => {
  await cluster?.stop();
});

const status = async (url: string) => (await call(url, 'GET', '/admin/replication', { headers: adminHeaders })).body;
const strict = (timeout: string) => ({ ...adminHeaders, 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': timeout });

test('a removed region is neither waited for nor delivered to, and leaves nothing behind in Redis', async () => {
  const us = cluster.url('us-iowa');
  const redis = createRedis(REDIS_URL, 'remove-region-test');
  const prefix = cluster.deployment.file.redisKeyPrefix;
  const leftOf = async () => (await redis.keys(`${prefix}*`)).filter((k) => k.endsWith(`:${GONE}`)).sort();
  try {
    // Every region has seen changes; the relay's trims have recorded the inboxes' incarnations.
    expect((await call(us, 'POST', '/admin/organizations', { body: { name: 'before' }, headers: strict('20') })).status).toBe(201);
    expect(await eventually(async () => (await leftOf()).some((k) => k.includes('changes-born')) && (await leftOf()).some((k) => k.includes('acks-born')), 20_000, 250)).toBe(true);

    // 1. Stop it. A change it never gets is pending there.
    await cluster.proc(GONE).stop(10_000);
    const waited = await call(us, 'POST', '/admin/organizations', { body: { name: 'while it is gone' }, headers: strict('1') });
    expect(waited.status).toBe(408);
    const changeId = waited.headers.get('x-change-id') as string;
    const change = async () => (await call(us, 'GET', `/admin/replication/changes/${changeId}`, { headers: adminHeaders })).body;
    // europe-belgium's ack may come after the 1 s the write waited (pendingOnlyIn).
    expect(await pendingOnlyIn(us, changeId, [GONE])).toBe(true);
    expect((await change()).pending_regions).toEqual([GONE]);

    // 2. Roll a config without it onto the remaining regions.
    const file = cluster.deployment.file;
    fs.writeFileSync(cluster.deployment.configPath, JSON.stringify({ ...file, regions: file.regions.filter((r) => r.id !== GONE) }, null, 2));
    for (const r of REGIONS.filter((x) => x !== GONE)) {
      await cluster.proc(r).stop(10_000);
      cluster.proc(r).start();
      await cluster.proc(r).waitReady(60_000);
    }

    // An all_regions write made now waits for it: the regions still count it (the membership record names it).
    const waiting = async () => (await scrape(us)).value('replication_waiting_requests');
    const held = call(us, 'POST', '/admin/organizations', { body: { name: 'waiting at the removal' }, headers: strict('120'), timeoutMs: 130_000 });
    expect(await eventually(async () => (await waiting()) === 1, 20_000, 100)).toBe(true);

    // 3. Remove it from the membership record.
    const removed = await runScript(cluster, 'members', ['remove', GONE]);
    expect(removed.stderr).toBe('');
    expect(removed.status).toBe(0);
    expect(JSON.parse(removed.stdout)).toEqual({ region: GONE, removed: true, inboxDeleted: true, unreachable: [] });

    // The write under way stops waiting for it: every remaining member holds the change, so it completes
    // (it waited for the region to its 120 s timeout and answered 408 naming it), and its change's status
    // does not list the removed region.
    const heldAnswer = await held;
    expect(heldAnswer.status).toBe(201);
    const heldChange = (await call(us, 'GET', `/admin/replication/changes/${heldAnswer.headers.get('x-change-id')}`, { headers: adminHeaders })).body;
    expect(heldChange).toMatchObject({ state: 'complete', pending_regions: [] });
    expect(Object.keys(heldChange.applied_at).sort()).toEqual(['europe-belgium', 'us-iowa']);

    // No region counts it any longer, and the change it never got is complete.
    for (const r of REGIONS.filter((x) => x !== GONE)) {
      expect(await eventually(async () => !(await status(cluster.url(r))).members.some((m: { region: string }) => m.region === GONE), 10_000, 200)).toBe(true);
    }
    expect(await eventually(async () => (await change()).complete === true, 10_000, 200)).toBe(true);
    // An all_regions write completes with the two regions left.
    const after = await call(us, 'POST', '/admin/organizations', { body: { name: 'after' }, headers: strict('10') });
    expect(after.status).toBe(201);
    const afterChange = (await call(us, 'GET', `/admin/replication/changes/${after.headers.get('x-change-id')}`, { headers: adminHeaders })).body;
    expect(Object.keys(afterChange.applied_at).sort()).toEqual(['europe-belgium', 'us-iowa']);
    // The origin confirms (and so may delete) the outbox rows that waited for the removed region's ack.
    expect(await eventually(async () => (await status(us)).outbox.unconfirmed === 0, 30_000, 500)).toBe(true);
    // Nothing of the removed region is left in Redis, and nothing recreates it (the relays' trims, which
    // write those records, run every second here: several pass).
    expect(await leftOf()).toEqual([]);
    await new Promise((r) => setTimeout(r, 5000));
    expect(await leftOf()).toEqual([]);
    // Except the record that it was removed (its credentials are adopted: test/provider-credentials/adopt.test.ts),
    // with no record of removals known in its name.
    expect(await redis.hget(`${prefix}{repl}:departed`, GONE)).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(await redis.hget(`${prefix}{repl}:departed-known`, GONE)).toBeNull();
    expect(JSON.parse((await redis.hget(`${prefix}{repl}:departed-known`, 'us-iowa')) ?? '[]')).toEqual([GONE]);
  } finally {
    redis.disconnect();
  }
}, 240_000);
