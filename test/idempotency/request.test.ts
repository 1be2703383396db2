import { canonicalJson, idempotencyRowId, requestHash } from '../../src/idempotency/request';

describe('canonicalJson', () => {
  test('sorts object keys at every level and keeps array order', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, 1], c: null } })).toBe('{"a":{"c":null,"d":[3,1]},"b":1}');
  });

  test('treats an absent field and an undefined one alike, as JSON does', () => {
    expect(canonicalJson({ a: 1, b: undefined })).toBe(canonicalJson({ a: 1 }));
  });

  test('escapes keys and strings as JSON', () => {
    expect(canonicalJson({ 'a"b': 'x\ny' })).toBe('{"a\\"b":"x\\ny"}');
  });
});

describe('requestHash', () => {
  test('is the same for reordered bodies and differs for different values', () => {
    expect(requestHash({ a: 1, b: [1, 2] })).toBe(requestHash({ b: [1, 2], a: 1 }));
    expect(requestHash({ a: 1, b: [1, 2] })).not.toBe(requestHash({ a: 1, b: [2, 1] }));
    expect(requestHash({ a: '1' })).not.toBe(requestHash({ a: 1 }));
  });
});

describe('idempotencyRowId', () => {
  const org = '01a20904-0000-7000-8000-000000000000';
  test('depends on organization, endpoint and key', () => {
    const base = idempotencyRowId(org, 'e', 'k');
    expect(base).toMatch(/^[0-9a-f]{64}$/);
    expect(idempotencyRowId(org, 'e', 'k')).toBe(base);
    expect(idempotencyRowId('01a20904-0000-7000-8000-000000000001', 'e', 'k')).not.toBe(base);
    expect(idempotencyRowId(org, 'f', 'k')).not.toBe(base);
    expect(idempotencyRowId(org, 'e', 'K')).not.toBe(base);
  });

  test('does not confuse where the endpoint ends and the key begins', () => {
    expect(idempotencyRowId(org, 'a:b', 'c')).not.toBe(idempotencyRowId(org, 'a', 'b:c'));
  });
});
