/**
 * The console's page and assets as a region serves them (src/console/routes.ts): each under a policy that lets
 * it load nothing from elsewhere nor be framed (the page takes the admin token), with its own content type.
 */
import { startInProcess, type InProcessRegion } from '../support/in-process';

let r: InProcessRegion;
beforeAll(async () => {
  r = await startInProcess('console-pages', ['us-iowa']);
}, 60_000);
afterAll(async () => {
  await r?.stop();
});

const POLICY = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

test.each([
  ['/admin/console', /^text\/html/],
  ['/admin/console.js', /^(text|application)\/javascript/],
  ['/admin/console.css', /^text\/css/],
  ['/admin/console.svg', /^image\/svg\+xml/],
])('%s is served without a token, under a policy that loads nothing from elsewhere and forbids framing', async (path, type) => {
  const res = await fetch(`${r.url}${path}`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(type);
  expect(res.headers.get('content-security-policy')).toBe(POLICY);
  expect(res.headers.get('referrer-policy')).toBe('no-referrer');
  expect(res.headers.get('cache-control')).toBe('no-cache');
  expect((await res.text()).length).toBeGreaterThan(0);
});
