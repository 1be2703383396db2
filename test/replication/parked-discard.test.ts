/**
 * POST /admin/replication/parked/discard: an operator gives up on a parked change that no upgrade will
 * apply. One region in the test process (real HTTP, Postgres and Redis); the events are put on the stream
 * as another region, one version ahead, would.
 */
import { Client } from 'pg';
import { v4 as uuidv4 } from 'uuid';
import { createRedis, replicationKeys, type Redis } from '../../src/redis';
import { startRegion, type RunningRegion } from '../../src/region';
import { REDIS_URL, testEventAuth } from '../support/env';
import { adminChangeStatus, adminHeaders, call, eventually } from '../support/harness';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { eventFor, REGION } from '../support/applier-rig';
import { scrape } from '../observability/support';

let region: InProcessRegion;
let restarted: RunningRegion | null = null;
let redis: Redis;
let pg: Client;

afterAll(async () => {
  await restarted?.stop();
  redis?.disconnect();
  await pg?.end();
  await region?.stop();
});

const url = () => restarted?.url ?? region.url;
const status = async () => (await call(url(), 'GET', '/admin/replication', { headers: adminHeaders })).body;
const discard = (body: unknown, headers: Record<string, string> = adminHeaders) =>
  call(url(), 'POST', '/admin/replication/parked/discard', { headers, ...(body === undefined ? {} : { body }) });
const rowsOf = async (ids: string[]) =>
  (await pg.query('SELECT change_id::text, parked_at IS NOT NULL AS parked FROM replication_failures WHERE change_id = ANY($1::uuid[]) ORDER BY change_id', [ids])).rows;

test('parked events named by an operator are discarded whole; failing ones, other ids and bad requests are not', async () => {
  region = await startInProcess('parkeddiscard', ['us-iowa', REGION], {}, REGION);
  redis = createRedis(REDIS_URL, 'parked-discard-test');
  await new Promise((r) => redis.once('ready', r));
  pg = new Client({ connectionString: region.deployment.configFor(REGION).region.databaseUrl });
  await pg.connect();
  const keys = replicationKeys(region.deployment.file.redisKeyPrefix);
  const gone = eventFor('gadgets', 'g1', { id: 'g1', color: 'red' });
  const kept = eventFor('gadgets', 'g2', { id: 'g2', color: 'green' });
  for (const e of [gone, kept]) await redis.xadd(keys.inbox(REGION), '*', ...testEventAuth().entryFields(e));
  expect(await eventually(async () => (await status()).failures?.parked === 2, 10_000)).toBe(true);
  // Counted by the applier that parked them, in the status beside the refusals and in the metrics.
  expect((await status()).parked_by_applier).toBe(2);
  expect((await scrape(url())).value('replication_applier_parked_total')).toBe(2);
  // The change's status says where it is parked (pending there, for an operator; the origin, not running
  // here, has no ack of its own either).
  // The parked ack goes to the origin's Redis after the change is parked in the database (set-aside.ts park),
  // which the count above reads: waited for.
  const parkedStatus = () => adminChangeStatus(url(), kept.changeId);
  expect(await eventually(async () => (await parkedStatus()).parked_regions?.includes(REGION) === true, 10_000)).toBe(true);
  expect(await parkedStatus()).toMatchObject({ state: 'pending', pending_regions: expect.arrayContaining([REGION]), parked_regions: [REGION] });
  // A change still being retried (failing, not parked) is not the operator's to discard.
  const failing = uuidv4();
  await pg.query(
    `INSERT INTO replication_failures (change_id, origin_region, stream_id, event, failures, reason, last_error)
     VALUES ($1, 'us-iowa', '1-0', $2::jsonb, 1, 'apply-failed', 'boom')`,
    [failing, JSON.stringify({ ...eventFor('gadgets', 'g3', { id: 'g3' }), changeId: failing })],
  );
  const all = [gone.changeId, kept.changeId, failing];
  const before = await rowsOf(all);
  expect(before).toHaveLength(3);

  // Refused, in the SlashID envelope, with nothing deleted.
  const refusals: [unknown, RegExp][] = [
    [undefined, /body/i],
    [{}, /change_ids/],
    [{ change_ids: [] }, /change_ids/],
    [{ change_ids: ['not-a-uuid'] }, /change_ids/],
    [{ change_ids: [gone.changeId], force: true }, /force|additional/i],
    [{ change_ids: [gone.changeId, gone.changeId.toUpperCase()] }, /twice/],
    [{ change_ids: Array.from({ length: 101 }, () => uuidv4()) }, /change_ids/],
  ];
  for (const [body, message] of refusals) {
    const res = await discard(body);
    expect({ body, status: res.status }).toEqual({ body, status: 400 });
    expect(res.body.errors[0]).toMatchObject({ httpcode: 400 });
    expect(res.body.errors[0].message).toMatch(message);
  }
  const { authorization: _, ...noToken } = adminHeaders;
  expect((await discard({ change_ids: [gone.changeId] }, noToken)).status).toBe(401);
  expect(await rowsOf(all)).toEqual(before);

  // The discard: the parked one named goes, with its event; the failing one and an unknown id stay "not parked".
  const unknown = uuidv4();
  const res = await discard({ change_ids: [gone.changeId.toUpperCase(), failing, unknown] });
  expect(res.status).toBe(200);
  expect(res.body).toMatchObject({ region: REGION, not_parked: [failing, unknown] });
  expect(res.body.discarded).toEqual([{
    change_id: gone.changeId, origin_region: 'us-iowa', stream_id: expect.stringMatching(/^\d+-\d+$/), tables: ['gadgets'],
    reason: 'unknown-table', failures: 1, error: expect.any(String), first_failed_at: expect.any(String), parked_at: expect.any(String),
    discarded_at: expect.any(String),
  }]);
  expect(await rowsOf(all)).toEqual([{ change_id: kept.changeId, parked: true }, { change_id: failing, parked: false }].sort((a, b) => a.change_id.localeCompare(b.change_id)));
  const after = (await status()).failures;
  expect(after).toMatchObject({ parked: 1, failing: 1, discarded: 1 });
  expect(after.oldest_parked.map((p: { change_id: string }) => p.change_id)).toEqual([kept.changeId]);
  const metrics = await scrape(url());
  expect(metrics.value('replication_events_discarded', { origin_region: 'us-iowa' })).toBe(1);
  expect(metrics.value('replication_events_parked', { origin_region: 'us-iowa', reason: 'unknown-table' })).toBe(1);
  // The event is kept in the region, whole.
  const read = await call(url(), 'GET', `/admin/replication/parked/discarded/${gone.changeId.toUpperCase()}`, { headers: adminHeaders });
  expect(read.status).toBe(200);
  expect(read.body).toMatchObject({ region: REGION, change_id: gone.changeId, tables: ['gadgets'], event: { changeId: gone.changeId, ops: [expect.objectContaining({ table: 'gadgets', key: 'g1', row: expect.objectContaining({ color: 'red' }) })] } });
  for (const id of [kept.changeId, 'nope']) {
    expect((await call(url(), 'GET', `/admin/replication/parked/discarded/${id}`, { headers: adminHeaders })).status).toBe(404);
  }
  // Its status here no longer reads pending (nor parked) in this region, which recorded the discard; once every
  // other region holds it, it reads discarded: it will not complete (it read pending for as long as it was known).
  const changeStatus = async (id: string) => (await call(url(), 'GET', `/admin/replication/changes/${id}`, { headers: adminHeaders })).body;
  expect(await changeStatus(gone.changeId)).toMatchObject({ state: 'pending', complete: false, pending_regions: ['us-iowa'], parked_regions: [], discarded_regions: [REGION] });
  await redis.hset(keys.ack(gone.changeId), 'us-iowa', `applied@${new Date().toISOString()}`);
  expect(await changeStatus(gone.changeId)).toMatchObject({ state: 'discarded', complete: false, pending_regions: [], parked_regions: [], discarded_regions: [REGION] });
  // The one still parked reads as it did.
  expect(await changeStatus(kept.changeId)).toMatchObject({ state: 'pending', parked_regions: [REGION], discarded_regions: [] });
  // Discarding it again finds nothing parked.
  expect((await discard({ change_ids: [gone.changeId] })).body).toEqual({ region: REGION, discarded: [], not_parked: [gone.changeId] });

  // Delivered again (as when its origin's Redis lost the ack) to a process that did not park it (restarted):
  // acked as parked again, and not kept as parked, nor counted as parked by the applier.
  await region.region.stop();
  restarted = await startRegion(region.deployment.configFor(REGION), { port: 0, drainTimeoutMs: 5000 });
  const applier = restarted.replication.applier;
  const parkedBefore = applier?.parkedEvents;
  await redis.del(keys.ack(gone.changeId));
  await redis.xadd(keys.inbox(REGION), '*', ...testEventAuth().entryFields(gone));
  expect(await eventually(async () => /^parked /.test((await redis.hgetall(keys.ack(gone.changeId)))[REGION] ?? ''), 15_000)).toBe(true);
  expect((await status()).failures).toMatchObject({ parked: 1, failing: 1, discarded: 1 });
  expect(await rowsOf([gone.changeId])).toEqual([]);
  // The ack to the origin follows the count (set-aside.ts park). Before: it counted the change as parked.
  expect(parkedBefore).toEqual(expect.any(Number));
  expect(applier?.parkedEvents).toBe(parkedBefore);
  expect((await status()).parked_by_applier).toBe(parkedBefore);
  expect((await scrape(url())).value('replication_applier_parked_total')).toBe(parkedBefore);

  // A stored event whose ops are not a list (no version writes one; a hand-made row) does not break the reads.
  const odd = uuidv4();
  await pg.query(`INSERT INTO replication_failures (change_id, origin_region, event, failures, reason, last_error, parked_at)
                  VALUES ($1, 'us-iowa', '{"ops": {"table": "x"}}'::jsonb, 1, 'apply-failed', 'odd', now())`, [odd]);
  const listed = await call(url(), 'GET', '/admin/replication', { headers: adminHeaders });
  expect(listed.status).toBe(200);
  expect(listed.body.failures.oldest_parked.find((p: { change_id: string }) => p.change_id === odd)).toMatchObject({ tables: [] });
  expect((await discard({ change_ids: [odd] })).body.discarded).toEqual([expect.objectContaining({ change_id: odd, tables: [] })]);

  // A discarded change this process sees again (its first copy still does not apply: acked as parked, not
  // kept) is not taken for one it parked: a later copy that now applies is applied. Before: acked as parked
  // again for as long as the process ran. Parked by another process (a row as the park writes it) and discarded.
  const heldId = uuidv4();
  const held = eventFor('organizations', heldId, { id: heldId, parent_id: null, name: 'held', nickname: 'newer column' });
  await pg.query(`INSERT INTO replication_failures (change_id, origin_region, stream_id, event, failures, reason, last_error, parked_at)
                  VALUES ($1, 'us-iowa', '1-0', $2::jsonb, 1, 'schema-ahead', 'held', now())`, [held.changeId, JSON.stringify(held)]);
  expect((await discard({ change_ids: [held.changeId] })).body.discarded).toEqual([expect.objectContaining({ change_id: held.changeId })]);
  const ackOf = async () => (await redis.hgetall(keys.ack(held.changeId)))[REGION] ?? '';
  await redis.xadd(keys.inbox(REGION), '*', ...testEventAuth().entryFields(held));
  expect(await eventually(async () => /^parked /.test(await ackOf()), 15_000)).toBe(true);
  expect(applier?.parkedEvents).toBe(parkedBefore);
  // The region's schema gains the column (as a migration would). The applier reloads its columns when an
  // event carries one it lacks, at most every 5 s: a copy read before that is acked as parked again, and its
  // origin sends another (here: the test, as an origin whose Redis lost the ack republishes it).
  await pg.query('ALTER TABLE organizations ADD COLUMN nickname text');
  const deliverUntilApplied = async () => {
    const ack = await ackOf();
    if (/^applied/.test(ack)) return true;
    if (/^parked /.test(ack)) {
      await redis.del(keys.ack(held.changeId));
      await redis.xadd(keys.inbox(REGION), '*', ...testEventAuth().entryFields(held));
    }
    return false;
  };
  expect(await eventually(deliverUntilApplied, 20_000, 500)).toBe(true);
  expect((await pg.query('SELECT nickname FROM organizations WHERE id = $1', [heldId])).rows).toEqual([{ nickname: 'newer column' }]);
}, 60_000);
