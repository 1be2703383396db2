/**
 * The acks a region owes an origin (parked changes applied on a retry while the origin's Redis did not answer:
 * parked-applied-ack.test.ts) under `ackSignatures: 'require'`: they are dropped once the origin is removed
 * from the deployment, and only then. A removal record planted unsigned, with the origin's entry deleted, drops
 * none (it counts as absent, and the member, taken verified, is not forgotten on it); a signed removal later
 * than the origin's registration drops them. One region in the test process (real HTTP, Postgres and Redis);
 * its origin, not running, has a Redis of its own that the test pauses, and an entry signed as its processes
 * would write it.
 */
import { replicationKeys } from '../../src/redis';
import { AckSigning } from '../../src/replication/ack-auth';
import { writeMember } from '../../src/replication/member-record';
import { signDeparture } from '../../src/replication/removal-auth';
import { testEventAuth } from '../support/env';
import { adminHeaders, call, eventually } from '../support/harness';
import { ORIGIN, REGION, testId, eventFor } from '../support/applier-rig';
import { originRig } from '../support/origin-rig';

const SKEW_MS = 2000;
const auth = testEventAuth();
// The origin's entry, as its processes register it (signed), in this region's Redis.
const o = originRig('removalowedacks', { maxClockSkewMs: SKEW_MS, ackSignatures: 'require' }, async ({ deployment, own, originRedis }) => {
  const joinedAt = new Date(Date.now() - 60_000).toISOString();
  await writeMember(own, replicationKeys(deployment.file.redisKeyPrefix), ORIGIN, { state: 'active', joined_at: joinedAt, redis_url: originRedis.url }, false, { signing: new AckSigning(auth, 'require') });
});

test('an owed ack is kept while the origin\'s entry is deleted with a removal planted unsigned, and dropped on a signed removal after its registration', async () => {
  const keys = replicationKeys(o.deployment.file.redisKeyPrefix);
  const members = async () => (await call(o.region.url, 'GET', '/admin/replication', { headers: adminHeaders })).body.members as { region: string; registered: boolean; verified: boolean | null }[];
  expect(await eventually(async () => (await members()).some((m) => m.region === ORIGIN && m.registered && m.verified === true), 15_000, 100)).toBe(true);

  // A change from the origin, ahead of this region's clock by more than the bound: parked until the clocks agree.
  const id = testId();
  const ahead = Date.now() + SKEW_MS + 3000;
  const event = eventFor('organizations', id, { id, parent_id: null, name: 'owed to a member' }, { wall: ahead });
  await o.own.xadd(keys.inbox(REGION), '*', ...auth.entryFields(event));
  expect(await eventually(async () => ((await o.theirs.hget(keys.ack(event.changeId), REGION)) ?? '').startsWith('parked '), 15_000, 100)).toBe(true);
  const dropped = () => o.lines.filter((l) => l.msg === 'the ack of a retried parked change is dropped: its origin was removed from the deployment' && l.change_id === event.changeId);

  o.originRedis.pause();
  try {
    await new Promise((r) => setTimeout(r, Math.max(0, ahead - SKEW_MS - Date.now()) + 200));
    expect((await call(o.region.url, 'POST', '/admin/replication/parked/retry', { headers: adminHeaders })).status).toBe(200);
    expect(await eventually(async () => o.notSent() > 0, 15_000, 100)).toBe(true);

    // Anything that writes to this Redis: the origin's entry deleted, its removal planted (unsigned).
    await o.own.hset(keys.departed, ORIGIN, new Date().toISOString());
    await o.own.hdel(keys.members, ORIGIN);
    await o.own.publish(keys.membersChannel, '{"members":0}');
    // Resent every 2 s, not dropped, for several rounds; the origin is still a registered member.
    const before = o.notSent();
    expect(await eventually(async () => o.notSent() >= before + 2, 15_000, 100)).toBe(true);
    expect(dropped()).toHaveLength(0);
    expect((await members()).some((m) => m.region === ORIGIN && m.registered)).toBe(true);

    // Removed as `npm run members -- remove` does it under require: a signed record, then the entry deleted.
    await o.own.hset(keys.departed, ORIGIN, signDeparture(auth, ORIGIN, new Date().toISOString()));
    await o.own.hdel(keys.members, ORIGIN);
    await o.own.publish(keys.membersChannel, '{"members":0}');
    expect(await eventually(async () => dropped().length === 1, 15_000, 100)).toBe(true);
  } finally {
    o.originRedis.resume();
  }
}, 90_000);
