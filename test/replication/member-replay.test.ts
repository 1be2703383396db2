/**
 * `ackSignatures: require` and replayed membership entries (docs/membership-signing.md §2.4, step 4): a process
 * keeps, per member, the newest signed entry it took (by `joined_at`, then `rev`); a genuine older one written
 * back is `replayed` (held, counted, the newer one kept). The legitimate paths that restart or lower a `rev` are
 * taken: a region removed and registered again, an entry written afresh over one that did not verify, a Redis
 * that lost the record, a re-seed's activation. (With region processes: member-require.test.ts.)
 */
import { AckSigning } from '../../src/replication/ack-auth';
import { activateAfterReseed, readMembers, updateMember, writeMember } from '../../src/replication/member-record';
import { signDeparture } from '../../src/replication/removal-auth';
import { REDIS_URL, testEventAuth } from '../support/env';
import { membershipRig } from '../support/membership-rig';

const [A, B, X] = ['us-iowa', 'europe-belgium', 'south-chile'] as const;
const auth = testEventAuth();
const signing = new AckSigning(auth, 'require');
/** A holder of the key writing the record (a relay's mark, a re-seed, the operator). */
const writer = { signing: new AckSigning(auth, 'require') };
const { keys, redis, membership } = membershipRig('member-replay', A, [A, B], signing);

const raw = async (region: string) => (await redis.hget(keys.members, region)) ?? '';
const stored = async (region: string) => (await readMembers(redis, keys, auth)).members.get(region);
/** How this process takes `region` after a read. */
const taken = async (region: string) => (await membership.refresh()).find((m) => m.region === region);
const at = (minutesAgo: number) => new Date(Date.now() - minutesAgo * 60_000).toISOString();

test('a genuine older entry written back is replayed: held as unverified, counted, and the newer one kept', async () => {
  await writeMember(redis, keys, X, { state: 'active', joined_at: at(30), redis_url: REDIS_URL, rev: 4 }, false, writer);
  const old = await raw(X);
  expect(await taken(X)).toMatchObject({ verified: 'signed', state: 'active' });
  await updateMember(redis, keys, X, { state: 'joining' }, writer);
  const newer = await raw(X);
  expect(await taken(X)).toMatchObject({ verified: 'signed', state: 'joining', rev: 5 });
  await redis.hset(keys.members, X, old);
  expect(await taken(X)).toMatchObject({ verified: 'replayed', unverified: true, state: 'joining', rev: 5, raw: newer });
  expect(signing.unverifiedMembers.replayed).toBe(1);
  // Read again: counted once.
  await membership.refresh();
  expect(signing.unverifiedMembers.replayed).toBe(1);
});

test('a region removed and registered again (a later joined_at, rev 1) is taken; its old entry written back is a replay', async () => {
  const old = await raw(X);
  // Removed as `npm run members -- remove` does it: a signed removal record, then the entry deleted.
  await redis.hset(keys.departed, X, signDeparture(auth, X, at(2)));
  await redis.hdel(keys.members, X);
  expect((await taken(X)) ?? null).toBeNull();
  await writeMember(redis, keys, X, { state: 'joining', joined_at: at(1), redis_url: REDIS_URL, rev: 1 }, false, writer);
  expect(await taken(X)).toMatchObject({ verified: 'signed', state: 'joining', rev: 1 });
  await redis.hset(keys.members, X, old);
  expect(await taken(X)).toMatchObject({ verified: 'replayed', rev: 1 });
});

test('an entry written afresh, joining, over one that does not verify is taken, at revision 1 whatever rev the plant said (not carried)', async () => {
  await redis.hset(keys.members, X, JSON.stringify({ state: 'active', joined_at: new Date().toISOString(), rev: 1_000_000 }));
  expect(await taken(X)).toMatchObject({ verified: 'unsigned', unverified: true });
  expect(await updateMember(redis, keys, X, { state: 'joining' }, writer)).toBe(true);
  expect(await taken(X)).toMatchObject({ verified: 'signed', state: 'joining', rev: 1 });
});

test("a re-seed's activation is taken, and the entry it replaced written back is a replay", async () => {
  await updateMember(redis, keys, X, { state: 'joining', reseed: 'token-1' }, writer);
  const marked = await raw(X);
  expect(await taken(X)).toMatchObject({ verified: 'signed', state: 'joining' });
  expect(await activateAfterReseed(redis, keys, X, 'token-1', writer)).toBe(true);
  expect(await taken(X)).toMatchObject({ verified: 'signed', state: 'active' });
  await redis.hset(keys.members, X, marked);
  expect(await taken(X)).toMatchObject({ verified: 'replayed', state: 'active' });
});

test("this region's own entry replayed is written again above the newest it took; after its Redis lost the record it registers again and that is taken", async () => {
  await membership.join();
  expect(await taken(A)).toMatchObject({ verified: 'signed', state: 'active' });
  const active = await raw(A);
  await updateMember(redis, keys, A, { state: 'joining' }, writer);
  const marked = await stored(A);
  expect(await taken(A)).toMatchObject({ verified: 'signed', state: 'joining' });
  await redis.hset(keys.members, A, active);
  expect(await taken(A)).toMatchObject({ verified: 'replayed', state: 'joining' });
  await membership.propagate();
  const repaired = await stored(A);
  expect(repaired).toMatchObject({ verified: 'signed', state: 'joining', joinedAt: marked?.joinedAt });
  expect(repaired?.rev ?? 0).toBeGreaterThan(marked?.rev ?? 0);
  expect(await taken(A)).toMatchObject({ verified: 'signed', state: 'joining' });
  // Its Redis lost the record: registered again, joining, with a later joined_at; taken, not a replay.
  await redis.del(keys.members);
  expect(await taken(A)).toMatchObject({ verified: 'signed', state: 'joining' });
  expect((await stored(A))?.joinedAt ?? '').not.toBe(marked?.joinedAt);
});
