/**
 * Signed ack values and announcements (src/replication/ack-auth.ts), and the readers of this version that
 * must take a signed value as its unsigned one (parseAck, acksOf, orgOf): a region of the version before
 * signing reads them so during a rolling upgrade; and AckSigning's reads (what `require` counts).
 */
import { createHmac } from 'node:crypto';
import {
  ACK_ANNOUNCEMENT_MAC_CONTEXT, ACK_MAC_CONTEXT, AckSigning, checkAck, checkAnnouncement, readAnnouncement, signAck, signAnnouncement, untaggedAck,
} from '../../src/replication/ack-auth';
import { EventAuth, parseReplicationKeys } from '../../src/replication/event-auth';
import { acksOf, formatAck, ORG_FIELD, orgOf, PARKED_PREFIX, parseAck } from '../../src/replication/ack-records';

const auth = new EventAuth(parseReplicationKeys(`k1:${'a'.repeat(32)},k2:${'b'.repeat(32)}`));
/** Signs with k2 first; verifies with k2 only. */
const onlyK2 = new EventAuth(parseReplicationKeys(`k2:${'b'.repeat(32)}`));
const ID = '01a2a000-0000-7000-8000-0000000000d1';
const OTHER_ID = '01a2a000-0000-7000-8000-0000000000d2';
const AT = '2026-12-05T22:43:30.935Z';
const winner = { table: 'organizations', key: 'k#1', version: '000000000002000.000000.asia-japan', originRegion: 'asia-japan' };
/** Every value a region or an origin writes today, and the bare time of older versions. */
const VALUES = [
  formatAck({ outcome: 'applied' }, AT),
  formatAck({ outcome: 'superseded', winner }, AT),
  `${PARKED_PREFIX}${AT}`,
  AT,
  '01a20904-0000-7000-8000-00000000000f',
];

test('the tag is #kid:mac, mac the first 128 bits (base64url) of HMAC-SHA256 over the context, key id, change id, region and value', () => {
  const value = `applied@${AT}`;
  const mac = createHmac('sha256', 'a'.repeat(32)).update(`${ACK_MAC_CONTEXT}k1\n${ID}\nus-iowa\n${value}`).digest().subarray(0, 16).toString('base64url');
  expect(signAck(auth, ID, 'us-iowa', value)).toBe(`${value}#k1:${mac}`);
  expect(mac).toHaveLength(22);
});

test.each(VALUES)('%s: signed, it checks as signed and gives back the value', (value) => {
  const tagged = signAck(auth, ID, 'b', value);
  expect(checkAck(auth, ID, 'b', tagged)).toEqual({ value, verdict: 'signed' });
  expect(untaggedAck(tagged)).toBe(value);
});

test('a signed value does not hold for another change, region, value or key; a cut tag does not hold', () => {
  const value = `applied@${AT}`;
  const tagged = signAck(auth, ID, 'b', value);
  const tag = tagged.slice(value.length);
  expect(checkAck(auth, OTHER_ID, 'b', tagged).verdict).toBe('bad-signature');
  expect(checkAck(auth, ID, 'c', tagged).verdict).toBe('bad-signature');
  expect(checkAck(auth, ID, ORG_FIELD, tagged).verdict).toBe('bad-signature');
  // Another value under the same tag: another time, another outcome.
  expect(checkAck(auth, ID, 'b', `applied@2026-12-05T22:43:30.936Z${tag}`)).toEqual({ value: 'applied@2026-12-05T22:43:30.936Z', verdict: 'bad-signature' });
  expect(checkAck(auth, ID, 'b', `${formatAck({ outcome: 'superseded', winner }, AT)}${tag}`).verdict).toBe('bad-signature');
  // The MAC under another known key id, and a key not held here.
  expect(checkAck(auth, ID, 'b', tagged.replace('#k1:', '#k2:')).verdict).toBe('bad-signature');
  expect(checkAck(onlyK2, ID, 'b', tagged)).toEqual({ value, verdict: 'unknown-key' });
  // Cut anywhere: a shorter MAC, none, no key id.
  expect(checkAck(auth, ID, 'b', tagged.slice(0, -1)).verdict).toBe('bad-signature');
  expect(checkAck(auth, ID, 'b', `${value}#k1:`)).toEqual({ value, verdict: 'bad-signature' });
  expect(checkAck(auth, ID, 'b', `${value}#k1`)).toEqual({ value, verdict: 'bad-signature' });
  expect(checkAck(auth, ID, 'b', `${value}#`)).toEqual({ value, verdict: 'bad-signature' });
  // The current signing key of another process signs what this one checks.
  expect(checkAck(auth, ID, 'b', signAck(onlyK2, ID, 'b', value)).verdict).toBe('signed');
});

test('the tag starts at the first "#" after the time: a value with one there cannot be signed (it would read back as another)', () => {
  const value = `applied@${AT}`;
  const tag = signAck(auth, ID, 'b', value).slice(value.length);
  expect(checkAck(auth, ID, 'b', `${value}#x${tag}`)).toEqual({ value, verdict: 'bad-signature' });
  expect(() => signAck(auth, ID, 'b', `${value}#x`)).toThrow(/'#' after its time/);
  expect(() => signAck(auth, ID, 'b', `${PARKED_PREFIX}${AT}#x`)).toThrow(/'#' after its time/);
});

test.each(VALUES)('%s: unsigned (every value written so far), it reads unchanged', (value) => {
  expect(checkAck(auth, ID, 'b', value)).toEqual({ value, verdict: 'unsigned' });
  expect(untaggedAck(value)).toBe(value);
});

test('a "#" before the time is no tag: a winner\'s key may hold one', () => {
  const value = formatAck({ outcome: 'superseded', winner }, AT);
  expect(value).toContain('#');
  expect(checkAck(auth, ID, 'b', value).verdict).toBe('unsigned');
  expect(parseAck(value)).toEqual({ outcome: 'superseded', at: AT, winner });
});

// The values that are acks (parked and an organization are none: below).
test.each(VALUES.filter((v) => parseAck(v) !== null))('%s: parseAck reads the signed value exactly as the unsigned one (the time clean)', (value) => {
  expect(parseAck(signAck(auth, ID, 'b', value))).toEqual(parseAck(value));
});

test('parseAck: a signed applied ack has its own time; a signed parked one is still no ack, and still starts "parked "', () => {
  expect(parseAck(signAck(auth, ID, 'b', `applied@${AT}`))).toEqual({ outcome: 'applied', at: AT });
  expect(parseAck(signAck(auth, ID, 'b', AT))).toEqual({ outcome: 'applied', at: AT });
  const parked = signAck(auth, ID, 'b', `${PARKED_PREFIX}${AT}`);
  expect(parseAck(parked)).toBeNull();
  expect(parked.startsWith(PARKED_PREFIX)).toBe(true);
  // The ack script's test of an applied value (its first 7 characters) holds too.
  expect(signAck(auth, ID, 'b', `applied@${AT}`).slice(0, 7)).toBe('applied');
});

test('acksOf and orgOf read a signed record as the unsigned one', () => {
  const org = '01a20904-0000-7000-8000-00000000000f';
  const hash = {
    a: signAck(auth, ID, 'a', `applied@${AT}`),
    b: signAck(auth, ID, 'b', formatAck({ outcome: 'superseded', winner }, AT)),
    c: signAck(auth, ID, 'c', `${PARKED_PREFIX}${AT}`),
    [ORG_FIELD]: signAck(auth, ID, ORG_FIELD, org),
  };
  expect(acksOf(hash)).toEqual(new Map([['a', { outcome: 'applied', at: AT }], ['b', { outcome: 'superseded', at: AT, winner }]]));
  expect(orgOf(hash)).toBe(org);
  expect(orgOf({ [ORG_FIELD]: org })).toBe(org);
  expect(orgOf({})).toBeNull();
});

describe('announcements', () => {
  const body = JSON.stringify({ region: 'b', ids: [ID], lost: { [ID]: signAck(auth, ID, 'b', formatAck({ outcome: 'superseded', winner }, AT)) } });

  test('signed: "s1 kid:mac", a newline, the JSON; the MAC over its own context', () => {
    const mac = createHmac('sha256', 'a'.repeat(32)).update(`${ACK_ANNOUNCEMENT_MAC_CONTEXT}k1\n${body}`).digest().subarray(0, 16).toString('base64url');
    const signed = signAnnouncement(auth, body);
    expect(signed).toBe(`s1 k1:${mac}\n${body}`);
    expect(checkAnnouncement(auth, signed)).toEqual({ body, kept: null, verdict: 'signed' });
    // The same bytes as an ack value (another context) do not check.
    expect(checkAck(auth, ID, 'b', `${body}#k1:${mac}`).verdict).toBe('bad-signature');
  });

  test('a kept line is read apart and not covered; another body, key or a cut MAC does not hold', () => {
    const signed = signAnnouncement(auth, body);
    const kept = JSON.stringify({ [ID]: signAck(auth, ID, 'b', `applied@${AT}`) });
    expect(checkAnnouncement(auth, `${signed}\n${kept}`)).toEqual({ body, kept, verdict: 'signed' });
    expect(checkAnnouncement(auth, signed.replace('"b"', '"c"'))?.verdict).toBe('bad-signature');
    expect(checkAnnouncement(auth, signed.replace('s1 k1:', 's1 k2:'))?.verdict).toBe('bad-signature');
    expect(checkAnnouncement(onlyK2, signed)?.verdict).toBe('unknown-key');
    const [first, rest] = [signed.slice(0, signed.indexOf('\n')), signed.slice(signed.indexOf('\n'))];
    expect(checkAnnouncement(auth, `${first.slice(0, -1)}${rest}`)?.verdict).toBe('bad-signature');
    expect(checkAnnouncement(auth, `s1 k1${rest}`)?.verdict).toBe('bad-signature');
    expect(checkAnnouncement(auth, first)).toBeNull();
  });

  test('the plain JSON of today reads unchanged, as unsigned', () => {
    const plain = JSON.stringify({ region: 'b', ids: [ID] });
    expect(checkAnnouncement(auth, plain)).toEqual({ body: plain, kept: null, verdict: 'unsigned' });
    expect(readAnnouncement(plain)).toEqual({ body: plain, kept: null, tag: null });
  });
});

describe('AckSigning.read', () => {
  test('a value found signed is not checked again (the relay reads waiting rows every round); one that is not, every time', () => {
    const signing = new AckSigning(new EventAuth(parseReplicationKeys(`k1:${'a'.repeat(32)}`)), 'require');
    const mac = jest.spyOn(signing.auth, 'macOf');
    const value = signAck(signing.auth, ID, 'b', `applied@${AT}`);
    mac.mockClear();
    expect([signing.read(ID, 'b', value), signing.read(ID, 'b', value)]).toEqual(['holds', 'holds']);
    expect(mac).toHaveBeenCalledTimes(1);
    // Remembered by change, field and value: the same value for another change or region is checked, and refused.
    expect([signing.read(OTHER_ID, 'b', value), signing.read(ID, 'c', value)]).toEqual(['refused', 'refused']);
    expect(signing.read(OTHER_ID, 'b', value)).toBe('refused');
    expect(mac).toHaveBeenCalledTimes(4);
    expect(signing.unverified['bad-signature']).toBe(3);
  });
});
