// Pure checks: nothing here opens a connection.
import { blockedReason, isAllowListed } from '../../src/metadata/address-policy';

describe('blockedReason', () => {
  it.each([
    ['127.0.0.1', /^loopback address 127\.0\.0\.1$/],
    ['127.255.255.254', /^loopback/],
    ['10.0.0.1', /^private address 10\.0\.0\.1/],
    ['10.255.255.255', /^private/],
    ['172.16.0.1', /^private/],
    ['172.31.255.255', /^private/],
    ['192.168.1.1', /^private/],
    ['192.168.255.255', /^private/],
    ['169.254.0.1', /^link-local/],
    ['169.254.255.254', /^link-local/],
    ['169.254.169.254', /^cloud metadata address 169\.254\.169\.254/],
    ['100.64.0.1', /^carrier-grade NAT/],
    ['100.127.255.255', /^carrier-grade NAT/],
    ['0.0.0.0', /^unspecified address 0\.0\.0\.0/],
    ['0.1.2.3', /this network/],
    ['224.0.0.1', /^multicast/],
    ['239.255.255.250', /^multicast/],
    ['255.255.255.255', /^broadcast address 255\.255\.255\.255/],
    ['240.0.0.1', /^reserved/],
    ['192.0.2.10', /^documentation/],
    ['198.51.100.7', /^documentation/],
    ['203.0.113.9', /^documentation/],
    ['198.18.0.1', /^benchmarking/],
    ['192.0.0.8', /IETF/],
    ['192.88.99.1', /^6to4 relay/],
  ])('refuses IPv4 %s', (ip, reason) => {
    expect(blockedReason(ip)).toMatch(reason);
  });

  it.each([
    ['::1', /^loopback address ::1$/],
    ['::', /^unspecified address ::$/],
    ['fc00::1', /^unique-local/],
    ['fd00:ec2::254', /^unique-local/], // AWS's IPv6 instance metadata endpoint
    ['fe80::1', /^link-local/],
    ['febf:ffff::1', /^link-local/],
    ['ff02::1', /^multicast/],
    ['ff00::', /^multicast/],
    ['::ffff:10.0.0.1', /^IPv4-mapped form of private address 10\.0\.0\.1/],
    ['::ffff:127.0.0.1', /^IPv4-mapped form of loopback address 127\.0\.0\.1/],
    ['::ffff:169.254.169.254', /cloud metadata/],
    ['[::1]', /^loopback/],
    ['::127.0.0.1', /IPv4-compatible/],
    ['::8.8.8.8', /IPv4-compatible/],
    ['64:ff9b::7f00:1', /^NAT64 form of loopback address 127\.0\.0\.1/],
    ['64:ff9b::a9fe:a9fe', /^NAT64 form of cloud metadata address/],
    ['2002:c0a8:0101::1', /^6to4 form of private address 192\.168\.1\.1/],
    ['2002:7f00:1::', /^6to4 form of loopback/],
    ['2001:db8::1', /^documentation/],
    ['2001:0:4136:e378::1', /^Teredo/],
    // The rest of 2001::/23 (benchmarking 2001:2::/48, ORCHIDv2 2001:20::/28, ...) up to its last address.
    ['2001:2::1', /^IETF protocol-assignment/],
    ['2001:20::1', /^IETF protocol-assignment/],
    ['2001:1ff:ffff::1', /^IETF protocol-assignment/],
    ['3fff::1', /^documentation/],
    ['3fff:fff:ffff::1', /^documentation/],
    ['64:ff9b:1::a', /^local-use NAT64/],
    ['fec0::1', /^site-local/],
    ['100::1', /^discard-only/],
    ['4000::1', /^reserved IPv6/],
    ['fe80::1%eth0', /^scoped IPv6/],
  ])('refuses IPv6 %s', (ip, reason) => {
    expect(blockedReason(ip)).toMatch(reason);
  });

  it.each(['8.8.8.8', '93.184.215.14', '1.1.1.1', '172.32.0.1', '100.128.0.1', '169.255.0.1', '2606:4700:4700::1111', '2001:200::1', '3fff:1000::1', '::ffff:8.8.8.8', '64:ff9b::808:808', '2002:808:808::1'])(
    'allows the public address %s',
    (ip) => {
      expect(blockedReason(ip)).toBeNull();
    },
  );

  it.each(['localhost', '2130706433', '127.1', '0x7f000001', '', 'example.com'])(
    'refuses "%s", which is not a canonical IP literal',
    (text) => {
      expect(blockedReason(text)).toMatch(/not an IP address/);
    },
  );
});

describe('isAllowListed', () => {
  const list = ['idp.corp.internal:8443', '127.0.0.1:9400', '[::1]:9401', 'plain.example', 'Secure.Example:443'];

  it('matches host and port, ignoring the case of the host', () => {
    expect(isAllowListed(new URL('https://IDP.corp.internal:8443/md'), list)).toBe(true);
    expect(isAllowListed(new URL('http://idp.corp.internal:8443/md'), list)).toBe(true);
    expect(isAllowListed(new URL('https://secure.example/md'), list)).toBe(true);
  });

  it('refuses the right host on another port, including the default one', () => {
    expect(isAllowListed(new URL('https://idp.corp.internal/md'), list)).toBe(false);
    expect(isAllowListed(new URL('http://127.0.0.1:9401/'), list)).toBe(false);
    expect(isAllowListed(new URL('http://secure.example/'), list)).toBe(false);
  });

  it('treats an entry without a port as the default port of the URL scheme', () => {
    expect(isAllowListed(new URL('http://plain.example/'), list)).toBe(true);
    expect(isAllowListed(new URL('https://plain.example/'), list)).toBe(true);
    expect(isAllowListed(new URL('https://plain.example:8443/'), list)).toBe(false);
  });

  it('matches IPv6 hosts written in brackets', () => {
    expect(isAllowListed(new URL('http://[::1]:9401/'), list)).toBe(true);
    expect(isAllowListed(new URL('http://[0:0::1]:9401/'), list)).toBe(true);
    expect(isAllowListed(new URL('http://[::1]:9400/'), list)).toBe(false);
  });

  it('does not confuse a host with a sub- or super-domain', () => {
    expect(isAllowListed(new URL('https://evil.idp.corp.internal:8443/'), list)).toBe(false);
    expect(isAllowListed(new URL('https://corp.internal:8443/'), list)).toBe(false);
    expect(isAllowListed(new URL('https://127.0.0.10:9400/'), list)).toBe(false);
  });

  it('ignores malformed entries', () => {
    expect(isAllowListed(new URL('https://a.example/'), ['https://a.example', 'a.example:x', ''])).toBe(false);
  });
});
