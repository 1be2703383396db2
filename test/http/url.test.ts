/** src/http/url.ts: the path a log line names, and the URL of a host and port. */
import { httpUrl, requestPath } from '../../src/http/url';

test('the path a log line names leaves out the query and a fragment', () => {
  expect(requestPath({ originalUrl: '/organizations/sso/saml/provider-credentials?api_key=secret' })).toBe('/organizations/sso/saml/provider-credentials');
  expect(requestPath({ originalUrl: '/healthz#x' })).toBe('/healthz');
  expect(requestPath({ originalUrl: '/healthz#x?y=1' })).toBe('/healthz');
  expect(requestPath({ originalUrl: '/admin/replication' })).toBe('/admin/replication');
});

test('an IPv6 host goes in brackets', () => {
  expect(httpUrl('::1', 8080)).toBe('http://[::1]:8080');
  expect(httpUrl('127.0.0.1', 8080)).toBe('http://127.0.0.1:8080');
});
