/**
 * Redis with a password, and over TLS (rediss://): REDIS_URL carries both to ioredis, which the regions
 * use for every connection (commands, stream reads, subscriptions). Regions replicate through such a Redis.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import { freePorts } from '../support/env';
import { adminHeaders, call, createOrg, eventually, startCluster, type Cluster } from '../support/harness';
import { ownRedis, type OwnRedis } from '../support/redis-server';

const ALL = { 'SlashID-Required-Consistency': 'all_regions' };
const REGIONS = ['us-iowa', 'europe-belgium'];

async function replicates(cluster: Cluster): Promise<void> {
  const org = await createOrg(cluster.url('us-iowa'), 'acme', { headers: ALL });
  const there = await call(cluster.url('europe-belgium'), 'GET', `/admin/organizations/${org.id}`, { headers: adminHeaders });
  expect(there.status).toBe(200);
  const s = (await call(cluster.url('europe-belgium'), 'GET', '/admin/replication', { headers: adminHeaders })).body;
  expect(s.stream.connected).toBe(true);
}

const password = 'redis-pass-0123456789:/@?#';
let redis: OwnRedis;
let passCluster: Cluster;
let dir: string;
let child: ChildProcess | null = null;
let tlsCluster: Cluster;

/** A TLS-only Redis (self-signed certificate for 127.0.0.1) answering at `url`; `cert` is the certificate. */
async function startTlsRedis(): Promise<{ url: string; cert: string }> {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'redis-tls-'));
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
  ], { stdio: 'ignore' });
  const [port = 0] = await freePorts(1);
  child = spawn('redis-server', [
    '--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--tls-cert-file', cert, '--tls-key-file', key, '--tls-ca-cert-file', cert, '--tls-auth-clients', 'no', '--requirepass', 'tls-pass',
  ], { stdio: 'ignore' });
  const url = `rediss://:tls-pass@127.0.0.1:${port}`;
  const probe = () => {
    const c = new Redis(url, { tls: { ca: fs.readFileSync(cert) }, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    c.on('error', () => undefined);
    return c;
  };
  expect(await eventually(async () => {
    const c = probe();
    try {
      await c.connect();
      return (await c.ping()) === 'PONG';
    } finally {
      c.disconnect();
    }
  }, 10_000)).toBe(true);
  return { url, cert };
}

// Both clusters start at once: their start-up (region processes migrating and connecting) is most of this
// file's time, and neither touches the other's Redis, databases or key prefix.
beforeAll(async () => {
  redis = await ownRedis({ password });
  await redis.start();
  await Promise.all([
    (async () => {
      passCluster = await startCluster('redispass', REGIONS, { extra: { redisUrl: redis.url } });
    })(),
    (async () => {
      const tls = await startTlsRedis();
      // The regions trust the certificate the usual way (NODE_EXTRA_CA_CERTS); rediss:// turns TLS on.
      tlsCluster = await startCluster('redistls', REGIONS, { extra: { redisUrl: tls.url }, env: { NODE_EXTRA_CA_CERTS: tls.cert } });
    })(),
  ]);
}, 120_000);
afterAll(async () => {
  await Promise.all([passCluster?.stop(), tlsCluster?.stop()]);
  await redis?.kill();
  child?.kill('SIGKILL');
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('a password-protected Redis', () => {
  test('refuses a client without it; regions given it in REDIS_URL replicate through it', async () => {
    // A client without the password: refused (raw RESP, so no client library retries hide the answer).
    const answer = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(redis.port, '127.0.0.1', () => sock.write('PING\r\n'));
      sock.once('data', (d) => {
        resolve(d.toString());
        sock.destroy();
      });
      sock.once('error', reject);
    });
    expect(answer).toMatch(/^-NOAUTH/);
    expect(redis.url).toContain(encodeURIComponent(password));
    expect(passCluster.deployment.file.redisUrl).toBe(redis.url);
    await replicates(passCluster);
  });
});

describe('Redis over TLS (rediss://)', () => {
  test('regions replicate through a TLS-only Redis whose certificate they trust', async () => {
    expect(tlsCluster.deployment.file.redisUrl).toMatch(/^rediss:\/\//);
    await replicates(tlsCluster);
  });
});
