/**
 * The edge check of text Postgres cannot store (src/http/storable-text.ts), called directly: Node's HTTP
 * parser refuses most such header values before any middleware runs, so a request cannot always carry them.
 */
import type { Request } from 'express';
import { refuseUnstorableInput } from '../../src/http/storable-text';

const check = (req: Partial<Request>): unknown => {
  let passed = false;
  try {
    refuseUnstorableInput()(req as Request, {} as never, () => (passed = true));
  } catch (err) {
    return (err as Error).message;
  }
  return passed ? 'next' : 'neither';
};
const req = (over: Partial<Request> = {}): Partial<Request> => ({ path: '/x', url: '/x', query: {}, rawHeaders: ['Host', 'a', 'X-Label', 'fine'], ...over });

test('a request with storable path, query and headers goes on', () => {
  expect(check(req({ url: '/x?limit=5', query: { limit: '5' } }))).toBe('next');
});

test('the header that carries a NUL or an unpaired surrogate is named', () => {
  expect(check(req({ rawHeaders: ['Host', 'a', 'X-Label', 'bad\u0000', 'X-Other', 'fine'] }))).toMatch(/The header X-Label contains text that cannot be stored/);
  expect(check(req({ rawHeaders: ['Host', 'a', 'X-Other', 'fine', 'X-Half', '\ud800'] }))).toMatch(/The header X-Half/);
  // A high surrogate ending one value and a low one starting the next are two unpaired halves, not a pair.
  expect(check(req({ rawHeaders: ['X-A', 'x\ud800', 'X-B', '\udc00y'] }))).toMatch(/The header X-A/);
});

test('the query is checked when the URL has one; a path is decoded only when it has escapes', () => {
  expect(check(req({ url: '/x?q=%00', query: { q: '\u0000' } }))).toMatch(/The query parameter q/);
  expect(check(req({ path: '/x%00', url: '/x%00' }))).toMatch(/The URL path contains text/);
  expect(check(req({ path: '/x%E0%A4%A', url: '/x%E0%A4%A' }))).toMatch(/malformed %-escape/);
  // In the query too (the query parser kept them as they were: a 200 before).
  for (const q of ['x=%zz', 'x=%FF', 'a=1&x=%E0%A4%A', '%zz=1']) expect(check(req({ url: `/x?${q}`, query: { x: 'kept' } }))).toBe('The query contains a malformed %-escape.');
  expect(check(req({ url: '/x?x=a+b%20c%C3%A9', query: { x: 'a b cé' } }))).toBe('next');
});
