/**
 * Signed membership entries (ack-auth.ts signMember/checkMember; member-record.ts) against a real Redis: a
 * signed entry verifies only in its own field, under its own context and key; the reader of the version
 * before signing (test/support/member-record-before-signing.ts, a frozen copy) reads a signed entry's
 * fields as written and rewrites it correctly (docs/membership-signing.md §2.3: no read-first release is
 * needed); `sign` writers sign what they write with `rev` one above the entry they rewrite, and copy entries
 * as stored; `off` writes the bytes that version writes. Region processes: member-signing.test.ts.
 */
import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import { replicationKeys } from '../../src/redis';
import { ACK_MAC_CONTEXT, AckSigning, checkMember, MEMBER_ENTRY_MAC_CONTEXT, signMember, WATERMARK_REPORT_MAC_CONTEXT } from '../../src/replication/ack-auth';
import * as current from '../../src/replication/member-record';
import * as before from '../support/member-record-before-signing';
import { deleteKeys, REDIS_URL, testEventAuth, forgerOf, strangerAuth } from '../support/env';

const [A, B] = ['us-iowa', 'europe-belgium'];
const prefix = `test-membersig-${randomUUID().slice(0, 8)}:`;
const keys = replicationKeys(prefix);
/** The regions' key; the attacker's guess (the same key id under another secret); a key id nobody has. */
const auth = testEventAuth();
const forger = forgerOf(auth);
const stranger = strangerAuth();
const JOINED = '2026-12-06T03:00:00.000Z';
const TOKEN = 'reseed-7f3a';
/** B's entry as a signing writer builds it: joining, marked by a re-seed, at revision 3. */
const json = JSON.stringify({ state: 'joining', joined_at: JOINED, redis_url: 'redis://b.example:6380/', reseed: TOKEN, rev: 3 });

let redis: Redis;
beforeAll(() => {
  redis = new Redis(REDIS_URL);
});
afterAll(async () => {
  await deleteKeys(prefix);
  redis.disconnect();
});
afterEach(() => redis.del(keys.members));

/** The tag `signMember` would write, but with a MAC over `context` and `body` (another record's MAC). */
const tagged = (context: string, body: string) => `${json.slice(0, -1)},"sig":"${auth.signingKid}:${auth.macOf(context, body)?.subarray(0, 16).toString('base64url') ?? ''}"}`;

describe('the codec', () => {
  test('a signed entry ends with its sig member and verifies in its own field: the JSON without sig is what was signed', () => {
    const signed = signMember(auth, B, json);
    expect(signed).toMatch(/,"sig":"test-k1:[A-Za-z0-9_-]{22}"}$/);
    expect(JSON.parse(signed)).toMatchObject(JSON.parse(json) as object);
    expect(checkMember(auth, B, signed)).toEqual({ value: json, verdict: 'signed' });
  });

  test.each([
    ['copied into another region\'s field', 'bad-signature', () => checkMember(auth, A, signMember(auth, B, json))],
    ['signed under the forger\'s key (same key id)', 'bad-signature', () => checkMember(auth, B, signMember(forger, B, json))],
    ['signed under a key id not known here', 'unknown-key', () => checkMember(auth, B, signMember(stranger, B, json))],
    ['a field changed after signing', 'bad-signature', () => checkMember(auth, B, signMember(auth, B, json).replace('"joining"', '"active"'))],
    ['tagged with the watermark report MAC of the same bytes', 'bad-signature', () => checkMember(auth, B, tagged(WATERMARK_REPORT_MAC_CONTEXT, `${B}\n${json}`))],
    ['tagged with an ack MAC', 'bad-signature', () => checkMember(auth, B, tagged(ACK_MAC_CONTEXT, `${B}\n${json}`))],
    ['a malformed tag', 'bad-signature', () => checkMember(auth, B, `${json.slice(0, -1)},"sig":"no tag here"}`)],
    ['a sig member that is not the last', 'bad-signature', () => checkMember(auth, B, `{"state":"active","sig":"${auth.signingKid}:AAAA","redis_url":"redis://x/"}`)],
    ['unsigned (as every version before signing writes it)', 'unsigned', () => checkMember(auth, B, json)],
  ])('%s: %s', (_name, verdict, check) => {
    expect(check().verdict).toBe(verdict);
  });

  test('the MAC is over the member-entry context, the key id, the field and the bytes', () => {
    const mac = auth.macOf(MEMBER_ENTRY_MAC_CONTEXT, `${B}\n${json}`)?.subarray(0, 16).toString('base64url');
    expect(signMember(auth, B, json)).toBe(`${json.slice(0, -1)},"sig":"${auth.signingKid}:${mac}"}`);
  });

  test('what is not an unsigned entry is not signed', () => {
    expect(() => signMember(auth, B, signMember(auth, B, json))).toThrow(/not an unsigned member entry/);
    expect(() => signMember(auth, B, 'active')).toThrow(/not an unsigned member entry/);
    expect(() => signMember(auth, B, '{}')).toThrow(/not an unsigned member entry/);
  });
});

describe('readMembers', () => {
  test('returns each entry as stored, its revision, and its verdict when given the key (none without it)', async () => {
    const signed = signMember(auth, B, json);
    await redis.hset(keys.members, B, signed, A, '{"state":"active","joined_at":"2026-12-01T00:00:00.000Z"}', '~generation', '4');
    const { members } = await current.readMembers(redis, keys, auth);
    expect(members.get(B)).toEqual({
      region: B, state: 'joining', joinedAt: JOINED, redisUrl: 'redis://b.example:6380/', registered: true, reseed: TOKEN, rev: 3, raw: signed, verified: 'signed',
    });
    expect(members.get(A)).toMatchObject({ state: 'active', rev: null, verified: 'unsigned' });
    const unchecked = await current.readMembers(redis, keys);
    expect([...unchecked.members.values()].map((m) => m.verified)).toEqual([null, null]);
  });
});

describe('the version before signing, reading a signed entry', () => {
  test('its readMembers reads every field as written', async () => {
    await redis.hset(keys.members, B, signMember(auth, B, json));
    const { members } = await before.readMembers(redis, keys);
    expect(members.get(B)).toEqual({ region: B, state: 'joining', joinedAt: JOINED, redisUrl: 'redis://b.example:6380/', registered: true, reseed: TOKEN });
  });

  test('its updateMember rewrites it correctly, unsigned (sign mode counts it; its own region signs it again)', async () => {
    await redis.hset(keys.members, B, signMember(auth, B, json));
    expect(await before.updateMember(redis, keys, B, { state: 'active' })).toBe(true);
    const { members } = await current.readMembers(redis, keys, auth);
    expect(members.get(B)).toMatchObject({ state: 'active', joinedAt: JOINED, redisUrl: 'redis://b.example:6380/', reseed: null, rev: null, verified: 'unsigned' });
  });

  test('its activateAfterReseed ends the re-seed that marked it', async () => {
    await redis.hset(keys.members, B, signMember(auth, B, json));
    expect(await before.activateAfterReseed(redis, keys, B, 'another-token')).toBe(false);
    expect(await before.activateAfterReseed(redis, keys, B, TOKEN)).toBe(true);
    const { members } = await current.readMembers(redis, keys, auth);
    expect(members.get(B)).toMatchObject({ state: 'active', joinedAt: JOINED, redisUrl: 'redis://b.example:6380/', reseed: null, verified: 'unsigned' });
  });
});

describe('sign', () => {
  const w = { signing: new AckSigning(auth, 'sign') };
  const stored = async () => (await current.readMembers(redis, keys, auth)).members.get(B);

  test('a new entry is signed, at revision 1 unless the writer knows a higher one', async () => {
    await current.writeMember(redis, keys, B, { state: 'active', joined_at: JOINED, redis_url: 'redis://b.example:6380/' }, true, w);
    expect(await stored()).toMatchObject({ state: 'active', rev: 1, verified: 'signed' });
    await redis.del(keys.members);
    await current.writeMember(redis, keys, B, { state: 'joining', rev: 8 }, true, w);
    expect(await stored()).toMatchObject({ state: 'joining', rev: 8, verified: 'signed' });
  });

  test('updateMember and activateAfterReseed sign the entry they rewrite, one revision above it, keeping its fields', async () => {
    await redis.hset(keys.members, B, signMember(auth, B, json));
    expect(await current.activateAfterReseed(redis, keys, B, TOKEN, w)).toBe(true);
    expect(await stored()).toMatchObject({ state: 'active', joinedAt: JOINED, redisUrl: 'redis://b.example:6380/', reseed: null, rev: 4, verified: 'signed' });
    expect(await current.updateMember(redis, keys, B, { state: 'joining', reseed: 'r2' }, w)).toBe(true);
    expect(await stored()).toMatchObject({ state: 'joining', joinedAt: JOINED, redisUrl: 'redis://b.example:6380/', reseed: 'r2', rev: 5, verified: 'signed' });
  });

  test('an unsigned entry (written before signing) is rewritten signed at revision 1', async () => {
    await redis.hset(keys.members, B, JSON.stringify({ state: 'active', joined_at: JOINED }));
    await current.updateMember(redis, keys, B, { state: 'joining' }, w);
    expect(await stored()).toMatchObject({ state: 'joining', joinedAt: JOINED, rev: 1, verified: 'signed' });
  });

  test("an unsigned entry's rev is not built on (anyone who writes to a Redis can plant one): updateMember and activateAfterReseed go to revision 1, its other fields taken as before", async () => {
    await redis.hset(keys.members, B, JSON.stringify({ state: 'active', joined_at: JOINED, redis_url: 'redis://b.example:6380/', rev: 2 ** 53 - 1 }));
    expect(await current.updateMember(redis, keys, B, { state: 'joining', reseed: TOKEN }, w)).toBe(true);
    expect(await stored()).toMatchObject({ state: 'joining', joinedAt: JOINED, redisUrl: 'redis://b.example:6380/', rev: 1, verified: 'signed' });
    await redis.hset(keys.members, B, JSON.stringify({ state: 'joining', joined_at: JOINED, reseed: TOKEN, rev: 2 ** 40 }));
    expect(await current.activateAfterReseed(redis, keys, B, TOKEN, w)).toBe(true);
    expect(await stored()).toMatchObject({ state: 'active', joinedAt: JOINED, rev: 1, verified: 'signed' });
  });

  test('a copy is written as stored, signature and revision (an unsigned one stays unsigned); off writes it again as before', async () => {
    const signed = signMember(auth, B, json);
    await redis.hset(keys.members, B, signed, A, '{"state":"active","joined_at":"2026-12-01T00:00:00.000Z","reseed":"x"}');
    const { members } = await current.readMembers(redis, keys, auth);
    await redis.del(keys.members);
    for (const m of members.values()) await current.copyMember(redis, keys, m, w);
    expect(await redis.hmget(keys.members, B, A)).toEqual([signed, members.get(A)?.raw]);
    await redis.del(keys.members);
    for (const m of members.values()) await current.copyMember(redis, keys, m, { signing: new AckSigning(auth, 'off') });
    expect(await redis.hmget(keys.members, B, A)).toEqual([
      JSON.stringify({ state: 'joining', joined_at: JOINED, redis_url: 'redis://b.example:6380/' }),
      '{"state":"active","joined_at":"2026-12-01T00:00:00.000Z"}',
    ]);
  });

  test('an entry that does not verify is counted once per stored value, not once per read', () => {
    const signing = new AckSigning(auth, 'sign');
    const unsigned = JSON.stringify({ state: 'active', joined_at: JOINED });
    for (let i = 0; i < 3; i++) signing.member(B, unsigned, 'unsigned');
    signing.member(A, signMember(auth, A, unsigned), 'signed');
    signing.member(B, `${unsigned} `, 'unsigned');
    signing.member(B, unsigned, 'unsigned');
    expect(signing.unverifiedMembers).toEqual({ unsigned: 3, 'bad-signature': 0, 'unknown-key': 0, replayed: 0 });
    const off = new AckSigning(auth, 'off');
    off.member(B, unsigned, 'unsigned');
    expect(off.unverifiedMembers.unsigned).toBe(0);
  });
});

describe('off', () => {
  /** What `write` leaves in the field `B` after writing it from `start`. */
  async function bytesAfter(start: string | null, write: (m: typeof current | typeof before) => Promise<unknown>, m: typeof current | typeof before): Promise<string | null> {
    await redis.del(keys.members);
    if (start !== null) await redis.hset(keys.members, B, start);
    await write(m);
    return redis.hget(keys.members, B);
  }
  const unsigned = JSON.stringify({ state: 'joining', joined_at: JOINED, redis_url: 'redis://b.example:6380/', reseed: TOKEN });

  test.each([
    ['writeMember', null, (m: typeof current | typeof before) => m.writeMember(redis, keys, B, { state: 'active', joined_at: JOINED, redis_url: 'redis://b.example:6380/' })],
    ['updateMember', unsigned, (m: typeof current | typeof before) => m.updateMember(redis, keys, B, { state: 'joining', reseed: 'r2' })],
    ['activateAfterReseed', unsigned, (m: typeof current | typeof before) => m.activateAfterReseed(redis, keys, B, TOKEN)],
  ])('%s writes the bytes the version before signing writes', async (_name, start, write) => {
    const then = await bytesAfter(start, write, before);
    expect(then).not.toBeNull();
    expect(await bytesAfter(start, write, current)).toBe(then);
  });

  test.each([
    ['writeMember', (w: current.MemberWriter) => current.writeMember(redis, keys, B, { state: 'active', joined_at: JOINED, redis_url: 'redis://b.example:6380/', rev: 4 }, false, w)],
    ['updateMember', (w: current.MemberWriter) => current.updateMember(redis, keys, B, { state: 'joining', reseed: 'r2' }, w)],
    ['activateAfterReseed', (w: current.MemberWriter) => current.activateAfterReseed(redis, keys, B, TOKEN, w)],
  ])('%s under ackSignatures off writes what it writes without signing: no rev, no sig', async (_name, write) => {
    const plain = await bytesAfter(unsigned, () => write({}), current);
    expect(await bytesAfter(unsigned, () => write({ signing: new AckSigning(auth, 'off') }), current)).toBe(plain);
    expect(plain).not.toMatch(/"rev"|"sig"/);
  });
});

describe('require: writers never build on an entry that does not verify', () => {
  const w = { signing: new AckSigning(auth, 'require') };
  /** B's entry planted: the re-seed's token, a foreign Redis, active or joining as given. */
  const planted = (state: string, sign = (s: string) => s) => sign(JSON.stringify({ state, joined_at: JOINED, redis_url: 'redis://attacker.example:6379/', reseed: TOKEN, rev: 9 }));

  test.each([
    ['unsigned', planted('active')],
    ['signed under the forger\'s key', planted('active', (s) => signMember(forger, B, s))],
  ])('updateMember marking an entry %s joining writes a fresh signed entry: no redis_url or joined_at from it', async (_name, raw) => {
    await redis.hset(keys.members, B, raw);
    expect(await current.updateMember(redis, keys, B, { state: 'joining', reseed: 'r2' }, w)).toBe(true);
    const m = (await current.readMembers(redis, keys, auth)).members.get(B);
    // Nor its rev (9): a fresh entry, at revision 1.
    expect(m).toMatchObject({ verified: 'signed', state: 'joining', redisUrl: null, reseed: 'r2', rev: 1 });
    expect(m?.joinedAt).not.toBe(JOINED);
  });

  test("a writer with no reason to think the region genuine (the relay marking a planted name behind) leaves an unverified entry as it is: not signed into the record as joining", async () => {
    await redis.hset(keys.members, B, planted('active'));
    const links = { to: () => redis };
    await current.markJoining(redis, links as never, keys, B, [A, B], { ...w, renewUnverified: false });
    expect(await redis.hget(keys.members, B)).toBe(planted('active'));
    expect((await current.readMembers(redis, keys, auth)).members.get(B)?.verified).toBe('unsigned');
    // The same mark by a writer that knows it (configured, or read signed before) writes the fresh joining entry.
    await current.markJoining(redis, links as never, keys, B, [A, B], w);
    expect((await current.readMembers(redis, keys, auth)).members.get(B)).toMatchObject({ verified: 'signed', state: 'joining', redisUrl: null });
  });

  test('updateMember refuses to mark an unverified entry active (nothing written); activateAfterReseed answers false on one', async () => {
    await redis.hset(keys.members, B, planted('active'));
    await expect(current.updateMember(redis, keys, B, { state: 'active' }, w)).rejects.toBeInstanceOf(current.UnverifiedMemberError);
    expect(await redis.hget(keys.members, B)).toBe(planted('active'));
    await redis.hset(keys.members, B, planted('joining'));
    expect(await current.activateAfterReseed(redis, keys, B, TOKEN, w)).toBe(false);
    expect(await redis.hget(keys.members, B)).toBe(planted('joining'));
    // The same entry signed with the regions' key is built on.
    await redis.hset(keys.members, B, planted('joining', (s) => signMember(auth, B, s)));
    expect(await current.activateAfterReseed(redis, keys, B, TOKEN, w)).toBe(true);
    expect((await current.readMembers(redis, keys, auth)).members.get(B)).toMatchObject({ verified: 'signed', state: 'active', redisUrl: 'redis://attacker.example:6379/', rev: 10 });
  });
});

describe('rev', () => {
  test.each(['off', 'sign', 'require'] as const)('in %s a writer refuses a rev that is not a safe non-negative integer (nothing written); readers take such a rev as none', async (mode) => {
    const w = { signing: new AckSigning(auth, mode) };
    for (const rev of [2 ** 53, -1, 1.5, Number.NaN]) {
      await expect(current.writeMember(redis, keys, B, { state: 'active', rev }, false, w)).rejects.toBeInstanceOf(RangeError);
    }
    expect(await redis.hexists(keys.members, B)).toBe(0);
    for (const rev of [2 ** 53, -1, 1.5, '7', '1e400']) {
      await redis.hset(keys.members, B, `{"state":"active","rev":${rev === '7' ? '"7"' : String(rev)}}`);
      expect((await current.readMembers(redis, keys, auth)).members.get(B)?.rev).toBeNull();
    }
  });

  test('a signed entry at the last safe rev is not rewritten above it: updateMember throws, the entry stays', async () => {
    const top = signMember(auth, B, JSON.stringify({ state: 'active', joined_at: JOINED, rev: Number.MAX_SAFE_INTEGER }));
    await redis.hset(keys.members, B, top);
    await expect(current.updateMember(redis, keys, B, { state: 'joining' }, { signing: new AckSigning(auth, 'sign') })).rejects.toBeInstanceOf(RangeError);
    expect(await redis.hget(keys.members, B)).toBe(top);
  });
});
