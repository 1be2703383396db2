/**
 * The run's test certificates and keys, made with openssl once per jest run by the global setup
 * (openapi-global-setup.ts) and read from the file it names (CERTS_ENV). Each RSA key costs openssl ~0.2 s of
 * CPU, and made with execFileSync in a test file it blocked the jest worker's event loop: on a loaded host past
 * a region's keep-alive, so the next request went out on a connection whose close was overdue (ECONNRESET).
 * A file run without the global setup (`--selectProjects unit`, a jest config of its own) makes them itself,
 * once per process.
 */
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

export interface TestCerts {
  /** Valid for 30 days, PEM. */
  pem: string;
  /** The same certificate as bare base64 DER on one line, as IdPs show it in their metadata. */
  bareBase64: string;
  /** Valid from 2020-01-01 to 2020-02-01 only. */
  expiredPem: string;
  expiredNotAfter: string;
  /** A second valid certificate, for updates. */
  otherPem: string;
  /** Valid, with an empty subject and issuer (named in its subjectAltName only, as RFC 5280 allows). */
  noSubjectPem: string;
}

export interface RunCerts {
  certs: TestCerts;
  /** The key of `certs.expiredPem`, for signing as an IdP whose certificate has expired. */
  expiredKey: string;
  /** A key for the dated certificates a test makes (datedCert): signing one then spawns no key generation. */
  datingKey: string;
}

/** Names the file that holds the run's certificates (written by the global setup). */
export const CERTS_ENV = 'TEST_CERTS_FILE';
/** The temporary folder it is written in starts so (the teardown removes no other). */
export const CERTS_DIR_PREFIX = 'saml-test-certs-';
const FILE = 'certs.json';

const x509 = (name: string, subject: string, extra: string[] = []) =>
  ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30', '-subj', subject, ...extra, '-keyout', `${name}.key`, '-out', `${name}.pem`];

/** `req -x509` cannot back-date a certificate in OpenSSL 3.0; `ca -selfsign` takes explicit dates. */
function caFiles(dir: string): void {
  fs.mkdirSync(path.join(dir, 'ca'));
  fs.writeFileSync(path.join(dir, 'ca', 'index.txt'), '');
  fs.writeFileSync(path.join(dir, 'ca', 'serial'), '01\n');
  fs.writeFileSync(
    path.join(dir, 'ca.cnf'),
    ['[ca]', 'default_ca = x', '[x]', 'database = ca/index.txt', 'new_certs_dir = ca', 'serial = ca/serial',
      'default_md = sha256', 'policy = p', 'unique_subject = no', '[p]', 'commonName = supplied', ''].join('\n'),
  );
}

const selfSignDated = (name: string, start: string, end: string) =>
  ['ca', '-batch', '-config', 'ca.cnf', '-selfsign', '-keyfile', `${name}.key`, '-in', `${name}.csr`, '-out', `${name}.pem`, '-startdate', start, '-enddate', end, '-notext'];

/** Independent chains of openssl commands (run in one folder: their files' names differ). */
const CHAINS: string[][][] = [
  [x509('idp', '/CN=idp.example.com')],
  [x509('nosubject', '/', ['-addext', 'subjectAltName=DNS:idp.example.com'])],
  [x509('next', '/CN=idp-next.example.com')],
  [['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=expired-idp', '-keyout', 'expired.key', '-out', 'expired.csr'],
    selfSignDated('expired', '20200101000000Z', '20200201000000Z')],
  [['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', 'dating.key']],
];

function collect(dir: string): RunCerts {
  const read = (file: string) => fs.readFileSync(path.join(dir, file), 'utf8');
  const pem = read('idp.pem');
  return {
    certs: {
      pem,
      bareBase64: pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, ''),
      expiredPem: read('expired.pem'),
      expiredNotAfter: '2020-02-01T00:00:00.000Z',
      otherPem: read('next.pem'),
      noSubjectPem: read('nosubject.pem'),
    },
    expiredKey: read('expired.key'),
    datingKey: read('dating.key'),
  };
}

/**
 * For the global setup: makes the run's certificates in `dir` (the chains in parallel, in child processes, so
 * the setup's other work goes on) and writes them to one file there; returns its path.
 */
export async function writeRunCerts(dir: string): Promise<string> {
  const work = fs.mkdtempSync(path.join(dir, 'work-'));
  try {
    caFiles(work);
    const run = promisify(execFile);
    await Promise.all(CHAINS.map(async (chain) => {
      for (const args of chain) await run('openssl', args, { cwd: work });
    }));
    const file = path.join(dir, FILE);
    fs.writeFileSync(file, JSON.stringify(collect(work)), { mode: 0o600 });
    return file;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

function makeHere(): RunCerts {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'test-certs-'));
  try {
    caFiles(dir);
    for (const args of CHAINS.flat()) execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    return collect(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

let made: RunCerts | null = null;

/** The run's certificates: the global setup's, or (without it) made here on the first call. */
export function runCerts(): RunCerts {
  const file = process.env[CERTS_ENV];
  if (file && fs.existsSync(file)) return JSON.parse(fs.readFileSync(file, 'utf8')) as RunCerts;
  made ??= makeHere();
  return made;
}

/**
 * A fresh self-signed certificate with subject CN=`cn`, valid from `start` to `end` (openssl's
 * YYYYMMDDHHMMSSZ), PEM, and its key: the run's dating key, so only signing runs here, not a key's generation.
 */
export function datedCert(cn: string, start: string, end: string): { key: string; cert: string } {
  const key = runCerts().datingKey;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dated-cert-'));
  try {
    caFiles(dir);
    fs.writeFileSync(path.join(dir, 'dated.key'), key, { mode: 0o600 });
    const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    openssl(['req', '-new', '-key', 'dated.key', '-subj', `/CN=${cn}`, '-out', 'dated.csr']);
    openssl(selfSignDated('dated', start, end));
    return { key, cert: fs.readFileSync(path.join(dir, 'dated.pem'), 'utf8') };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
