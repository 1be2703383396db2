/**
 * Connection names (src/replication/connection-names.ts) are read back exactly: a region's own, whatever its
 * role, and never another deployment's or another region's whose prefix and region run together the same.
 */
import { isConnectionOf, processConnectionName } from '../../src/replication/connection-names';

const named = (prefix: string, region: string, role: string, pid = 4242) => `${processConnectionName(prefix, region, pid)}:${role}`;

test('a process\'s connections, each role of the region and of its operator thread, are its region\'s', () => {
  for (const prefix of ['saml:', 'saml', 'a.b-c_1']) {
    for (const role of ['cmd', 'sub', 'reader', 'to:europe-belgium', 'operator:cmd', 'operator:to:asia-japan']) {
      expect({ prefix, role, ours: isConnectionOf(named(prefix, 'us-east', role), prefix, 'us-east') }).toEqual({ prefix, role, ours: true });
    }
  }
});

test('another region, another deployment, or a name that only starts like ours is not', () => {
  const cases: [string, string, string][] = [
    // [name, prefix, region]
    [named('a:', 'us-east', 'cmd'), 'a:', 'us'],
    [named('a:', 'us', 'cmd'), 'a:', 'us-east'],
    [named('a:us-', 'east', 'cmd'), 'a:', 'us-east'],
    [named('a:', 'us-east', 'cmd'), 'a:us-', 'east'],
    [named('a', 'us-east', 'cmd'), 'a:', 'us-east'],
    [named('a:', 'us-east', 'cmd'), 'a', 'us-east'],
    [named('ab', 'c', 'cmd'), 'a', 'bc'],
    [named('a:us:123:', 'x', 'cmd'), 'a:', 'us'],
    [named('a:us:123:to:', 'x', 'cmd'), 'a:', 'us'],
    ['a:us:123', 'a:', 'us'],
    ['a:us:123:', 'a:', 'us'],
    ['a:us:x:cmd', 'a:', 'us'],
    ['members:123', 'a:', 'us'],
  ];
  for (const [name, prefix, region] of cases) expect({ name, prefix, region, ours: isConnectionOf(name, prefix, region) }).toEqual({ name, prefix, region, ours: false });
});

test('a prefix ending with ":" names as before; one without has "/" before the region (run together, it was ambiguous)', () => {
  expect(named('saml:', 'us-east', 'cmd')).toBe('saml:us-east:4242:cmd');
  expect(named('saml-', 'us-east', 'cmd')).toBe('saml-/us-east:4242:cmd');
  // The form before: a colon-prefixed deployment's region as well ('a:' + 'us-east').
  expect(isConnectionOf('a:us-east:4242:cmd', 'a:us-', 'east')).toBe(false);
});
