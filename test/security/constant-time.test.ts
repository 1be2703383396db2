/**
 * Secrets are compared in constant time: an API key with its stored hash (also when there is no row: the same
 * work against a dummy hash), and the admin token with every accepted token (no early exit at the first
 * match). No answer shows the difference, so this watches the comparison itself.
 */
import crypto from 'node:crypto';
import type { Request, Response } from 'express';
import { adminAuth } from '../../src/http/admin-auth';
import { generateApiKey, keyMatches } from '../../src/organizations/api-keys';

let spy: jest.SpyInstance;
beforeEach(() => {
  spy = jest.spyOn(crypto, 'timingSafeEqual');
});
afterEach(() => spy.mockRestore());

test('an API key is checked against its hash with timingSafeEqual, and against nothing in the same way', () => {
  const key = generateApiKey();
  const other = generateApiKey();
  expect(keyMatches(key.apiKey, key.keyHash)).toBe(true);
  expect(keyMatches(other.apiKey, key.keyHash)).toBe(false);
  expect(keyMatches(key.apiKey, null)).toBe(false);
  expect(keyMatches(key.apiKey, 'not a hash')).toBe(false);
  expect(spy).toHaveBeenCalledTimes(4);
});

test('the admin token is compared with every accepted token with timingSafeEqual, whichever matches', () => {
  const check = adminAuth(['first-token-0123456789', 'second-token-0123456789', 'third-token-0123456789']);
  const request = (token: string) =>
    ({ get: (name: string) => (name.toLowerCase() === 'authorization' ? `Bearer ${token}` : undefined), rawHeaders: ['Authorization', `Bearer ${token}`] }) as unknown as Request;
  for (const token of ['first-token-0123456789', 'third-token-0123456789']) {
    spy.mockClear();
    const next = jest.fn();
    check(request(token), {} as Response, next);
    expect(next).toHaveBeenCalledWith();
    expect(spy).toHaveBeenCalledTimes(3);
  }
  spy.mockClear();
  expect(() => check(request('wrong-token-0123456789'), {} as Response, jest.fn())).toThrow(/ADMIN_TOKEN/);
  expect(spy).toHaveBeenCalledTimes(3);
});
