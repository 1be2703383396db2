/**
 * The test certificates are made once per run, by jest's global setup: makeCerts in a test file only reads
 * them. It ran openssl synchronously (five RSA keys) in each of a dozen files, some between requests, and a
 * jest worker's event loop held for seconds on a loaded host closed kept-alive connections under the next
 * request (ECONNRESET).
 */
import childProcess from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { certValidUntil, makeCerts, type TestCerts } from '../infisical/support/fixtures';
import { expiredSigner } from '../sso/support/idp-simulator';
import { CERTS_ENV, type RunCerts } from '../support/test-certs';

const spawned = () => {
  const calls: string[][] = [];
  for (const name of ['execFileSync', 'execFile', 'spawnSync', 'spawn', 'execSync', 'exec'] as const) {
    jest.spyOn(childProcess, name).mockImplementation(((...args: unknown[]) => {
      calls.push([name, String(args[0])]);
      throw new Error(`${name} called`);
    }) as never);
  }
  return calls;
};

afterEach(() => jest.restoreAllMocks());

test("makeCerts and expiredSigner answer the run's certificates, written by the global setup, without running openssl", () => {
  const file = process.env[CERTS_ENV] ?? '';
  expect(fs.existsSync(file)).toBe(true);
  const run = JSON.parse(fs.readFileSync(file, 'utf8')) as RunCerts;
  const calls = spawned();
  const certs = makeCerts();
  const expired = expiredSigner();
  expect(calls).toEqual([]);
  expect(certs).toEqual(run.certs);
  expect(expired).toEqual({ name: 'expired', key: run.expiredKey, cert: run.certs.expiredPem });
  // What the callers rely on: distinct certificates, each as described.
  expect(new Set([certs.pem, certs.otherPem, certs.expiredPem, certs.noSubjectPem]).size).toBe(4);
  const x = (pem: string) => new crypto.X509Certificate(pem);
  expect(x(certs.pem).subject).toBe('CN=idp.example.com');
  expect(x(certs.otherPem).subject).toBe('CN=idp-next.example.com');
  expect(x(certs.noSubjectPem).subject ?? '').toBe('');
  expect(x(certs.noSubjectPem).subjectAltName).toBe('DNS:idp.example.com');
  expect(new Date(x(certs.expiredPem).validTo).toISOString()).toBe(certs.expiredNotAfter);
  expect(x(expired.cert).checkPrivateKey(crypto.createPrivateKey(expired.key))).toBe(true);
  expect(Buffer.from(certs.bareBase64, 'base64').equals(x(certs.pem).raw)).toBe(true);
});

test('certValidUntil makes a fresh certificate ending then, signed with the run key (no key generated)', () => {
  const notAfter = new Date(Math.floor(Date.now() / 1000) * 1000 + 10 * 60_000);
  const one = new crypto.X509Certificate(certValidUntil(notAfter));
  const run = JSON.parse(fs.readFileSync(process.env[CERTS_ENV] ?? '', 'utf8')) as RunCerts;
  expect(new Date(one.validTo).toISOString()).toBe(notAfter.toISOString());
  expect(one.checkPrivateKey(crypto.createPrivateKey(run.datingKey))).toBe(true);
  expect(certValidUntil(new Date(notAfter.getTime() + 60_000))).not.toBe(one.toString());
});

test('without the global setup (a file run by a jest config of its own), makeCerts makes them itself, once', () => {
  const saved = process.env[CERTS_ENV];
  delete process.env[CERTS_ENV];
  let made: TestCerts | undefined;
  try {
    jest.isolateModules(() => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { makeCerts: makeHere } = require('../infisical/support/fixtures') as typeof import('../infisical/support/fixtures');
      const execs = jest.spyOn(childProcess, 'execFileSync');
      made = makeHere();
      const ran = execs.mock.calls.length;
      expect(ran).toBeGreaterThan(0);
      expect(makeHere()).toBe(made);
      expect(execs.mock.calls.length).toBe(ran);
    });
  } finally {
    process.env[CERTS_ENV] = saved;
  }
  expect(new crypto.X509Certificate(made?.pem ?? '').subject).toBe('CN=idp.example.com');
  expect(made?.pem).not.toBe(makeCerts().pem);
});
