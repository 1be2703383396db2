/**
 * Signed removal records (removal-auth.ts) against a real Redis: a signed `departed` or `departed-known` value
 * verifies only in its own field, under its own kind and key; `off` writes the bytes every version before
 * signing writes; a reader of that version still reads what `sign` writes (the departed field's presence, and
 * the regions a departed-known list names). Region processes: removal-signing.test.ts.
 */
import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import { replicationKeys } from '../../src/redis';
import { AckSigning, MEMBER_ENTRY_MAC_CONTEXT } from '../../src/replication/ack-auth';
import {
  checkDeparture, checkKnown, DEPARTURE_MAC_CONTEXT, DEPARTURES_KNOWN_MAC_CONTEXT, departureTime, judgeDeparture, parseKnown, readKnown, signDeparture, signKnown, supersedes, writtenDeparture, writtenKnown,
} from '../../src/replication/removal-auth';
import { copyRemovals, removeMember, writeMember } from '../../src/replication/member-record';
import { deleteKeys, REDIS_URL, testEventAuth, forgerOf, strangerAuth } from '../support/env';
import { membershipRig } from '../support/membership-rig';
import { ownRedis, type OwnRedis } from '../support/redis-server';
import { RedisLinks } from '../../src/replication/links';
import { Membership } from '../../src/replication/membership';
import pino from 'pino';

const [A, B, C] = ['us-iowa', 'europe-belgium', 'asia-japan'];
const prefix = `test-removalsig-${randomUUID().slice(0, 8)}:`;
const keys = replicationKeys(prefix);
const auth = testEventAuth();
const forger = forgerOf(auth);
const stranger = strangerAuth();
const AT = '2026-12-06T03:00:00.000Z';
const LATER = '2026-12-06T04:00:00.000Z';
const mac = (context: string, body: string) => auth.macOf(context, body)?.subarray(0, 16).toString('base64url') ?? '';

/** A frozen copy of the version before signing's reader of a departed-known list (member-record.ts parseKnown). */
function parseKnownBeforeSigning(raw: string): string[] {
  try {
    const v: unknown = JSON.parse(raw);
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
}

let redis: Redis;
beforeAll(() => {
  redis = new Redis(REDIS_URL);
});
afterAll(async () => {
  await deleteKeys(prefix);
  redis.disconnect();
});
afterEach(() => redis.del(keys.departed, keys.departedKnown, keys.members));

describe('departed', () => {
  test('a signed value is the time, then its tag: the MAC over the departure context, the key id, the field and the time', () => {
    const signed = signDeparture(auth, C, AT);
    expect(signed).toBe(`${AT}#${auth.signingKid}:${mac(DEPARTURE_MAC_CONTEXT, `${C}\n${AT}`)}`);
    expect(checkDeparture(auth, C, signed)).toEqual({ value: AT, verdict: 'signed' });
    expect(departureTime(signed)).toBe(AT);
  });

  test.each([
    ['copied into another region\'s field', 'bad-signature', () => checkDeparture(auth, B, signDeparture(auth, C, AT))],
    ['signed under the forger\'s key (same key id)', 'bad-signature', () => checkDeparture(auth, C, signDeparture(forger, C, AT))],
    ['signed under a key id not known here', 'unknown-key', () => checkDeparture(auth, C, signDeparture(stranger, C, AT))],
    ['its time changed after signing', 'bad-signature', () => checkDeparture(auth, C, signDeparture(auth, C, AT).replace(AT, LATER))],
    ['tagged with a member entry MAC of the same bytes', 'bad-signature', () => checkDeparture(auth, C, `${AT}#${auth.signingKid}:${mac(MEMBER_ENTRY_MAC_CONTEXT, `${C}\n${AT}`)}`)],
    ['tagged with a departed-known MAC of the same bytes', 'bad-signature', () => checkDeparture(auth, C, `${AT}#${auth.signingKid}:${mac(DEPARTURES_KNOWN_MAC_CONTEXT, `${C}\n${AT}`)}`)],
    ['a malformed tag', 'bad-signature', () => checkDeparture(auth, C, `${AT}#no tag`)],
    ['unsigned (as every version before signing writes it)', 'unsigned', () => checkDeparture(auth, C, AT)],
  ])('%s: %s', (_name, verdict, check) => {
    expect(check().verdict).toBe(verdict);
  });

  test('off writes the time as before; sign and require write it signed', () => {
    expect(writtenDeparture(null, C, AT)).toBe(AT);
    expect(writtenDeparture(new AckSigning(auth, 'off'), C, AT)).toBe(AT);
    expect(writtenDeparture(new AckSigning(auth, 'sign'), C, AT)).toBe(signDeparture(auth, C, AT));
    expect(writtenDeparture(new AckSigning(auth, 'require'), C, AT)).toBe(signDeparture(auth, C, AT));
  });

  test('a value that does not verify counts in sign (counted once per stored value), not in require; off checks nothing', async () => {
    await redis.hset(keys.departed, C, AT, B, signDeparture(forger, B, AT), A, signDeparture(auth, A, AT));
    const stored = await redis.hgetall(keys.departed);
    const sign = new AckSigning(auth, 'sign');
    const require = new AckSigning(auth, 'require');
    for (let i = 0; i < 3; i++) {
      for (const [r, v] of Object.entries(stored)) {
        expect(judgeDeparture(sign, r, v, true).counts).toBe(true);
        expect(judgeDeparture(require, r, v, true).counts).toBe(r === A);
      }
    }
    expect(sign.unverifiedRemovals).toEqual({ unsigned: 1, 'bad-signature': 1, 'unknown-key': 0 });
    expect(require.unverifiedRemovals).toEqual({ unsigned: 1, 'bad-signature': 1, 'unknown-key': 0 });
    expect(judgeDeparture(new AckSigning(auth, 'off'), C, AT, true)).toEqual({ verdict: null, counts: true });
  });

  test('the later removal supersedes an earlier one, never the reverse; under require one that does not verify counts as none', () => {
    const require = new AckSigning(auth, 'require');
    const sign = new AckSigning(auth, 'sign');
    const [early, late] = [signDeparture(auth, C, AT), signDeparture(auth, C, LATER)];
    for (const s of [null, sign, require]) {
      expect(supersedes(s, C, late, early)).toBe(true);
      expect(supersedes(s, C, early, late)).toBe(false);
      expect(supersedes(s, C, early, null)).toBe(true);
      expect(supersedes(s, C, early, early)).toBe(false);
    }
    // A planted removal far in the future: kept by sign (it counts there), written over by require.
    const planted = '2999-01-01T00:00:00.000Z';
    expect(supersedes(sign, C, late, planted)).toBe(false);
    expect(supersedes(require, C, late, planted)).toBe(true);
    // At the same time, the signed value wins over the unsigned one (sign turns the records signed).
    expect(supersedes(sign, C, early, AT)).toBe(true);
    expect(supersedes(sign, C, AT, early)).toBe(false);
  });
});

describe('departed-known', () => {
  test('a signed list ends with its tag element, verifies in its own field, and reads as the regions it lists', () => {
    const signed = signKnown(auth, A, [B, C]);
    expect(signed).toBe(`["${B}","${C}","#${auth.signingKid}:${mac(DEPARTURES_KNOWN_MAC_CONTEXT, `${A}\n["${B}","${C}"]`)}"]`);
    expect(checkKnown(auth, A, signed)).toEqual({ value: JSON.stringify([B, C]), verdict: 'signed' });
    expect(parseKnown(signed)).toEqual([B, C]);
    const empty = signKnown(auth, A, []);
    expect(empty).toMatch(/^\["#test-k1:[A-Za-z0-9_-]{22}"\]$/);
    expect(checkKnown(auth, A, empty)).toEqual({ value: '[]', verdict: 'signed' });
    expect(parseKnown(empty)).toEqual([]);
  });

  test.each([
    ['copied into another region\'s field', 'bad-signature', () => checkKnown(auth, B, signKnown(auth, A, [C]))],
    ['signed under the forger\'s key (same key id)', 'bad-signature', () => checkKnown(auth, A, signKnown(forger, A, [C]))],
    ['signed under a key id not known here', 'unknown-key', () => checkKnown(auth, A, signKnown(stranger, A, [C]))],
    ['a region added after signing', 'bad-signature', () => checkKnown(auth, A, signKnown(auth, A, [C]).replace('[', `["${B}",`))],
    ['a region taken out after signing', 'bad-signature', () => checkKnown(auth, A, signKnown(auth, A, [B, C]).replace(`"${B}",`, ''))],
    ['tagged with a departure MAC of the same bytes', 'bad-signature', () => checkKnown(auth, A, `["${C}","#${auth.signingKid}:${mac(DEPARTURE_MAC_CONTEXT, `${A}\n["${C}"]`)}"]`)],
    ['a malformed tag', 'bad-signature', () => checkKnown(auth, A, `["${C}","#no tag"]`)],
    ['unsigned (as every version before signing writes it)', 'unsigned', () => checkKnown(auth, A, JSON.stringify([C]))],
  ])('%s: %s', (_name, verdict, check) => {
    expect(check().verdict).toBe(verdict);
  });

  test('off writes the JSON list as before; under require one that does not verify reads as absent, under sign as listed', async () => {
    expect(writtenKnown(null, A, [C])).toBe('["asia-japan"]');
    expect(writtenKnown(new AckSigning(auth, 'off'), A, [])).toBe('[]');
    expect(writtenKnown(new AckSigning(auth, 'sign'), A, [C])).toBe(signKnown(auth, A, [C]));
    await redis.hset(keys.departedKnown, A, JSON.stringify([C]), B, signKnown(auth, B, [C]));
    const stored = await redis.hgetall(keys.departedKnown);
    const require = new AckSigning(auth, 'require');
    expect(readKnown(require, A, stored[A] as string, true)).toBeNull();
    expect(readKnown(require, B, stored[B] as string, true)).toEqual([C]);
    expect(readKnown(new AckSigning(auth, 'sign'), A, stored[A] as string, true)).toEqual([C]);
    expect(require.unverifiedRemovals.unsigned).toBe(1);
  });
});

describe('the version before signing, reading what sign writes', () => {
  test('it reads a signed departed-known list as the regions it names (one element more, that names no region)', async () => {
    await redis.hset(keys.departedKnown, A, signKnown(auth, A, [B, C]));
    const read = parseKnownBeforeSigning((await redis.hget(keys.departedKnown, A)) ?? '');
    expect(read.slice(0, 2)).toEqual([B, C]);
    expect(read).toHaveLength(3);
    expect([B, C].every((r) => read.includes(r))).toBe(true);
  });

  test('a signed departed value still starts with its time (its readers use the field\'s presence, its list prints the value)', async () => {
    await redis.hset(keys.departed, C, signDeparture(auth, C, AT));
    const stored = await redis.hgetall(keys.departed);
    expect(Object.keys(stored)).toEqual([C]);
    expect(stored[C]?.startsWith(AT)).toBe(true);
  });
});

describe('writers', () => {
  const sign = new AckSigning(auth, 'sign');
  const require = new AckSigning(auth, 'require');

  test('removeMember writes the removal signed where entries are signed, and the time alone under off', async () => {
    for (const [w, check] of [
      [{ signing: sign }, (v: string) => expect(checkDeparture(auth, C, v)).toEqual({ value: expect.stringMatching(/^\d{4}-/), verdict: 'signed' })],
      [{ signing: require }, (v: string) => expect(checkDeparture(auth, C, v).verdict).toBe('signed')],
      [{}, (v: string) => expect(v).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)],
    ] as const) {
      await redis.del(keys.departed);
      await writeMember(redis, keys, C, { state: 'active' });
      expect((await removeMember(redis, keys, C, false, w)).removed).toBe(true);
      check((await redis.hget(keys.departed, C)) ?? '');
    }
  }, 30_000);

  test('a region removed, added again and removed again is recorded as removed at the later time', async () => {
    const w = { signing: require };
    await writeMember(redis, keys, C, { state: 'active' });
    await removeMember(redis, keys, C, false, w);
    const first = (await redis.hget(keys.departed, C)) ?? '';
    await writeMember(redis, keys, C, { state: 'joining' }, true, w);
    await removeMember(redis, keys, C, false, w);
    const second = (await redis.hget(keys.departed, C)) ?? '';
    expect(departureTime(second) > departureTime(first)).toBe(true);
    expect(checkDeparture(auth, C, second).verdict).toBe('signed');
  }, 30_000);

  test('a removal is recorded after the registration of the entry it removes (a remover\'s clock behind the region\'s), only by an entry that verifies', async () => {
    const ahead = new Date(Date.now() + 3_600_000);
    for (const [w, planted, expected] of [
      [{ signing: require }, false, new Date(ahead.getTime() + 1).toISOString()],
      [{ signing: require }, true, null],
      [{}, false, new Date(ahead.getTime() + 1).toISOString()],
    ] as const) {
      await redis.del(keys.departed);
      await writeMember(redis, keys, C, { state: 'active', joined_at: ahead.toISOString() }, false, planted ? {} : w);
      const before = Date.now();
      await removeMember(redis, keys, C, false, w);
      const at = departureTime((await redis.hget(keys.departed, C)) ?? '');
      // A planted entry (it does not verify) does not move the removal: the remover's own time.
      if (expected === null) expect(Date.parse(at)).toBeLessThan(before + 60_000);
      else expect(at).toBe(expected);
    }
  }, 30_000);

  test('copyRemovals writes a later removal over an earlier one and never the reverse, copies values as stored, and under require writes over one that does not verify', async () => {
    const [early, late] = [signDeparture(auth, C, AT), signDeparture(auth, C, LATER)];
    await copyRemovals(redis, keys, { [C]: early }, sign);
    expect(await redis.hget(keys.departed, C)).toBe(early);
    await copyRemovals(redis, keys, { [C]: late }, sign);
    expect(await redis.hget(keys.departed, C)).toBe(late);
    await copyRemovals(redis, keys, { [C]: early }, sign);
    expect(await redis.hget(keys.departed, C)).toBe(late);
    // Planted in the future, unsigned: sign keeps it (it counts there), require writes the signed one over it.
    await redis.hset(keys.departed, C, '2999-01-01T00:00:00.000Z', B, 'garbage');
    await copyRemovals(redis, keys, { [C]: late, [B]: signDeparture(auth, B, AT) }, sign);
    expect(await redis.hmget(keys.departed, C, B)).toEqual(['2999-01-01T00:00:00.000Z', signDeparture(auth, B, AT)]);
    await copyRemovals(redis, keys, { [C]: late }, require);
    expect(await redis.hget(keys.departed, C)).toBe(late);
    // Off (a process that does not sign) copies the later time too.
    await copyRemovals(redis, keys, { [A]: AT }, null);
    await copyRemovals(redis, keys, { [A]: LATER }, null);
    await copyRemovals(redis, keys, { [A]: AT }, null);
    expect(await redis.hget(keys.departed, A)).toBe(LATER);
  });
});

describe('a region\'s processes (Membership)', () => {
  const signing = new AckSigning(auth, 'sign');
  const rig = membershipRig('removalsig-membership', A, [A, B], signing);

  test('write the removals they know signed, keep the later of two removals of a region, and write that one back over the earlier', async () => {
    await rig.membership.join();
    await rig.redis.hset(rig.keys.departed, C, signDeparture(auth, C, AT));
    await rig.membership.refresh();
    const own = (await rig.redis.hget(rig.keys.departedKnown, A)) ?? '';
    expect(checkKnown(auth, A, own)).toEqual({ value: JSON.stringify([C]), verdict: 'signed' });
    // Removed again later (added again meanwhile): the later removal is the one kept, in memory too.
    await rig.redis.hset(rig.keys.departed, C, signDeparture(auth, C, LATER));
    await rig.membership.refresh();
    await rig.redis.hset(rig.keys.departed, C, signDeparture(auth, C, AT));
    await rig.membership.refresh();
    // Its Redis lost the record: the process puts back what it knew, the later removal over the earlier one.
    await rig.redis.del(rig.keys.members);
    await rig.membership.refresh();
    expect(await rig.redis.hget(rig.keys.departed, C)).toBe(signDeparture(auth, C, LATER));
  }, 30_000);

  test('in sign, write a removal recorded unsigned (before signing) again, signed, with its time: require then still takes it', async () => {
    if (!rig.membership.hasJoined) await rig.membership.join();
    await rig.redis.hset(rig.keys.departed, 'sa-east', AT, 'sa-west', 'not a time');
    await rig.membership.refresh();
    expect(await rig.redis.hmget(rig.keys.departed, 'sa-east', 'sa-west')).toEqual([signDeparture(auth, 'sa-east', AT), 'not a time']);
    expect(rig.membership.departed).toEqual(expect.arrayContaining(['sa-east', 'sa-west']));
  });
  test('in sign, leave unsigned a removal later than the registration of a member it reads, or dated ahead of its clock: signed, it would count under require', async () => {
    if (!rig.membership.hasJoined) await rig.membership.join();
    const now = new Date().toISOString();
    const ahead = new Date(Date.now() + 3_600_000).toISOString();
    await writeMember(rig.redis, rig.keys, B, { state: 'active', joined_at: AT, redis_url: REDIS_URL }, false, { signing });
    await rig.redis.hset(rig.keys.departed, B, now, 'sa-north', ahead);
    await rig.membership.refresh();
    // Planted (B is registered, before the time it names; nobody took sa-north's entry, but its time is ahead): left as they are.
    expect(await rig.redis.hmget(rig.keys.departed, B, 'sa-north')).toEqual([now, ahead]);
    // B's entry deleted on the next read: the process took B signed, and still does not sign the removal.
    await rig.redis.hdel(rig.keys.members, B);
    await rig.membership.refresh();
    expect(await rig.redis.hget(rig.keys.departed, B)).toBe(now);
  });
});

describe('a region\'s processes under require', () => {
  const signing = new AckSigning(auth, 'require');
  const rig = membershipRig('removalsig-require', A, [A, B], signing);

  test('take a removal record that does not verify as absent, and count it once; a signed one counts', async () => {
    await rig.membership.join();
    await rig.redis.hset(rig.keys.departed, C, AT, 'sa-east', signDeparture(forger, 'sa-east', AT));
    await rig.redis.hset(rig.keys.departedKnown, B, JSON.stringify([C]));
    for (let i = 0; i < 3; i++) await rig.membership.refresh();
    expect(rig.membership.departed).toEqual([]);
    expect(rig.membership.departedKnown.has(B)).toBe(false);
    expect(signing.unverifiedRemovals).toEqual({ unsigned: 2, 'bad-signature': 1, 'unknown-key': 0 });
    // Its own list says it knows of none, signed.
    expect(checkKnown(auth, A, (await rig.redis.hget(rig.keys.departedKnown, A)) ?? '')).toEqual({ value: '[]', verdict: 'signed' });
    await rig.redis.hset(rig.keys.departed, C, signDeparture(auth, C, AT));
    await rig.redis.hset(rig.keys.departedKnown, B, signKnown(auth, B, [C]));
    await rig.membership.refresh();
    expect(rig.membership.departed).toEqual([C]);
    expect(rig.membership.departedKnown.get(B)).toEqual([C]);
  });
});

describe('a region\'s processes under require, over a Redis that refuses writes (out of memory)', () => {
  const signing = new AckSigning(auth, 'require');
  let server: OwnRedis;
  let redis: Redis;
  let subscriber: Redis;
  let links: RedisLinks;
  let membership: Membership;
  const k = replicationKeys(`test-removalsig-oom-${randomUUID().slice(0, 8)}:`);
  beforeAll(async () => {
    server = await ownRedis();
    await server.start();
    [redis, subscriber] = [new Redis(server.url), new Redis(server.url)];
    links = new RedisLinks({ region: A, own: redis, name: 'removalsig-oom-test', defaultUrl: server.url, configured: new Map([A, B].map((r) => [r, server.url])) });
    membership = new Membership({ links, subscriber, keys: k, region: A, configured: [A, B], ownRedisUrl: server.url, log: pino({ level: 'silent' }), signing });
  });
  afterAll(async () => {
    membership?.stop();
    links?.disconnect();
    redis?.disconnect();
    subscriber?.disconnect();
    await server?.kill();
  });

  test('a write that fails does not keep the read from taking effect: a member kept and a new one taken on the same read', async () => {
    await membership.join();
    await writeMember(redis, k, C, { state: 'active', joined_at: AT, redis_url: server.url }, false, { signing });
    await membership.refresh();
    expect(membership.regions()).toContain(C);
    // Writes refused from now on; reads answered.
    await redis.config('SET', 'maxmemory-policy', 'noeviction');
    await redis.config('SET', 'maxmemory', '1');
    await expect(redis.hset(k.members, 'probe', '1')).rejects.toThrow(/OOM/);
    // C's entry deleted (it cannot be written back) and a new member's entry present: the read still takes effect.
    await redis.config('SET', 'maxmemory', '0');
    await redis.hdel(k.members, C);
    await writeMember(redis, k, 'sa-east', { state: 'joining', joined_at: LATER, redis_url: server.url }, false, { signing });
    await redis.config('SET', 'maxmemory', '1');
    await membership.refresh();
    expect(membership.regions()).toEqual(expect.arrayContaining([C, 'sa-east']));
    await redis.config('SET', 'maxmemory', '0');
  }, 30_000);
});
