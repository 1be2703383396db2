/**
 * Signed change events (src/replication/event-auth.ts): the signature made where the event is created holds
 * over the event as the outbox gives it back (Postgres jsonb reorders keys and respaces), and any change to
 * the bytes, the key id or the MAC is refused.
 */
import { Client } from 'pg';
import { createHmac } from 'node:crypto';
import { canonicalJson, EVENT_MAC_CONTEXT, EVENT_PACK_MAC_CONTEXT, EventAuth, parseReplicationKeys, type SignedEvent } from '../../src/replication/event-auth';
import type { ChangeEvent } from '../../src/replication/tables';
import { PG_BASE } from '../support/env';

const auth = new EventAuth(parseReplicationKeys(`a:${'a'.repeat(32)},b:${'b'.repeat(32)}`));
const event: ChangeEvent = {
  changeId: '0190a1b2-0000-7000-8000-000000000001',
  origin: 'us-iowa',
  createdAt: '2026-11-30T12:00:00.000Z',
  orgId: null,
  ops: [{
    table: 'organizations',
    key: 'k',
    version: '001796040000000.000001.us-iowa',
    row: { name: 'acme "é" \u2028 😀', n: 1e21, small: 1e-7, neg: -0, nested: { z: [1, { b: 2, a: 1 }], a: null }, version: '001796040000000.000001.us-iowa' },
  }],
};

test('the MAC on the wire is HMAC-SHA256 over the context, the key id, a newline and the bytes, in hex (what every version sends and checks)', () => {
  const [, bytes, , kid, , mac] = auth.entryFields(auth.sign(event));
  const expected = createHmac('sha256', 'a'.repeat(32)).update(EVENT_MAC_CONTEXT).update('a').update('\n').update(bytes as string, 'utf8').digest('hex');
  expect([kid, mac]).toEqual(['a', expected]);
  expect(auth.verify(['e', bytes as string, 'k', 'a', 's', expected])).toMatchObject({ ok: true });
  expect(auth.verify(['e', bytes as string, 'k', 'a', 's', expected.toUpperCase()])).toMatchObject({ ok: false, reason: 'bad-signature' });
});

test('canonical JSON sorts keys at every level and is stable under a parse', () => {
  expect(canonicalJson({ b: 1, a: { d: [3, { y: 1, x: 2 }], c: undefined } })).toBe('{"a":{"d":[3,{"x":2,"y":1}]},"b":1}');
  const c = canonicalJson(event);
  expect(canonicalJson(JSON.parse(c))).toBe(c);
});

/** The definition, written plainly with map/filter/join (as events were signed before canonicalJson's loops). */
function reference(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return reference((value as { toJSON(): unknown }).toJSON());
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined || typeof v === 'function' ? 'null' : reference(v))).join(',')}]`;
  const entries = Object.keys(value)
    .sort()
    .filter((k) => (value as Record<string, unknown>)[k] !== undefined && typeof (value as Record<string, unknown>)[k] !== 'function')
    .map((k) => `${JSON.stringify(k)}:${reference((value as Record<string, unknown>)[k])}`);
  return `{${entries.join(',')}}`;
}

test('canonical JSON is the sorted-keys definition for any shape (random values, keys that look like numbers, dates)', () => {
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const KEYS = ['a', 'b', 'B', '10', '2', '0', 'z', 'é', 'x y', 'version', 'row', 'ops'];
  const gen = (depth: number): unknown => {
    const r = rnd();
    if (depth > 3 || r < 0.3) return [null, true, 1.5, -0, 'text "q" \u2028', undefined, 1e21][Math.floor(rnd() * 7)];
    if (r < 0.45) return new Date(Math.floor(rnd() * 2e12));
    if (r < 0.65) return Array.from({ length: Math.floor(rnd() * 4) }, () => gen(depth + 1));
    return Object.fromEntries(Array.from({ length: Math.floor(rnd() * 6) }, () => [KEYS[Math.floor(rnd() * KEYS.length)], gen(depth + 1)]));
  };
  for (let i = 0; i < 500; i++) {
    const v = gen(0);
    expect(canonicalJson(v)).toBe(reference(v));
  }
  expect(canonicalJson(event)).toBe(reference(event));
});

test('the signature survives the outbox (jsonb) round trip; the first key signs, every key verifies', async () => {
  const signed = auth.sign(event);
  expect(signed.sig.kid).toBe('a');
  const pg = new Client({ connectionString: `${PG_BASE}/postgres` });
  await pg.connect();
  let stored: SignedEvent;
  try {
    stored = (await pg.query<{ e: SignedEvent }>('SELECT $1::jsonb AS e', [JSON.stringify(signed)])).rows[0]!.e;
  } finally {
    await pg.end();
  }
  expect(JSON.stringify(stored)).not.toBe(JSON.stringify(signed)); // jsonb reordered it
  const fields = auth.entryFields(stored);
  expect(fields).toEqual(auth.entryFields(signed));
  expect(auth.verify(fields)).toMatchObject({ ok: true, kid: 'a' });
  const onlyB = new EventAuth(parseReplicationKeys(`b:${'b'.repeat(32)}`));
  expect(onlyB.verify(fields)).toMatchObject({ ok: false, reason: 'unknown-key' });
  expect(auth.verify(onlyB.entryFields(onlyB.sign(event)))).toMatchObject({ ok: true, kid: 'b' });
});

test('altered bytes, a swapped key id, a bad MAC or missing fields are refused', () => {
  const [e, body, k, kid, s, mac] = auth.entryFields(auth.sign(event)) as string[];
  const tampered = body!.replace('acme', 'pwned');
  expect(auth.verify([e!, tampered, k!, kid!, s!, mac!])).toMatchObject({ ok: false, reason: 'bad-signature' });
  expect(auth.verify([e!, body!, k!, 'b', s!, mac!])).toMatchObject({ ok: false, reason: 'bad-signature' });
  expect(auth.verify([e!, body!, k!, kid!, s!, mac!.replace(/^./, (c) => (c === '0' ? '1' : '0'))])).toMatchObject({ ok: false, reason: 'bad-signature' });
  expect(auth.verify([e!, body!, k!, kid!, s!, 'zz'])).toMatchObject({ ok: false, reason: 'bad-signature' });
  expect(auth.verify([e!, body!])).toMatchObject({ ok: false, reason: 'unsigned' });
  expect(auth.verify([e!, body!, k!, kid!])).toMatchObject({ ok: false, reason: 'unsigned' });
  expect(auth.verify([])).toMatchObject({ ok: false, reason: 'unsigned', body: null });
});

test('a pack: one MAC over the JSON array of the events\' bytes under its own context; altered, mistaken for one event or doubled, it is refused', () => {
  const second: ChangeEvent = { ...event, changeId: '0190a1b2-0000-7000-8000-000000000002' };
  const body = `[${[event, second].map((e) => auth.eventBytes(auth.sign(e))).join(',')}]`;
  const fields = auth.packFields(body);
  const [p, , k, kid, s, mac] = fields as string[];
  expect([p, k, kid, s]).toEqual(['p', 'k', 'a', 's']);
  expect(mac).toBe(createHmac('sha256', 'a'.repeat(32)).update(EVENT_PACK_MAC_CONTEXT).update('a\n').update(body, 'utf8').digest('hex'));
  expect(auth.verify(fields)).toEqual({ ok: true, body, kid: 'a', packed: true });
  expect((JSON.parse(body) as ChangeEvent[]).map((e) => e.changeId)).toEqual([event.changeId, second.changeId]);
  // A single event's entry verifies as not packed.
  expect(auth.verify(auth.entryFields(auth.sign(event)))).toMatchObject({ ok: true, packed: false });
  // Altered; the pack's bytes and MAC offered as one event; one event's bytes and MAC offered as a pack.
  expect(auth.verify(['p', body.replace('acme', 'pwned'), k!, kid!, s!, mac!])).toMatchObject({ ok: false, reason: 'bad-signature' });
  expect(auth.verify(['e', body, k!, kid!, s!, mac!])).toMatchObject({ ok: false, reason: 'bad-signature' });
  const [, one, , , , oneMac] = auth.entryFields(auth.sign(event)) as string[];
  expect(auth.verify(['p', one!, 'k', 'a', 's', oneMac!])).toMatchObject({ ok: false, reason: 'bad-signature' });
  // A second body field (another pack or event appended to a valid entry) is refused, not ignored.
  expect(auth.verify([...fields, 'e', one!])).toMatchObject({ ok: false, reason: 'bad-signature' });
  expect(auth.verify(['e', one!, 'k', 'a', 's', oneMac!, 'p', body])).toMatchObject({ ok: false, reason: 'bad-signature' });
});

test('REPLICATION_KEYS parsing refuses short secrets, bad key ids and duplicates', () => {
  expect(() => parseReplicationKeys(`k:${'s'.repeat(31)}`)).toThrow(/at least 32 bytes/);
  expect(() => parseReplicationKeys(`bad kid:${'s'.repeat(32)}`)).toThrow(/key id/);
  expect(() => parseReplicationKeys(`k:${'s'.repeat(32)},k:${'t'.repeat(32)}`)).toThrow(/twice/);
  expect(parseReplicationKeys(`k:${'s'.repeat(32)}:x`)).toEqual([{ kid: 'k', secret: `${'s'.repeat(32)}:x` }]);
});
