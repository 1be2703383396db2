/**
 * `npm run cluster`: every region of the config as its own process on this machine. Creates and migrates
 * their databases (each region does so at start), prints each region's URL once it is ready, and stops
 * them all on Ctrl-C / SIGTERM. Makes up an ADMIN_TOKEN when none is set, and prints it.
 */
import crypto from 'node:crypto';
import { RegionProcess } from '../src/cluster/region-process';
import { ConfigError, readConfigFile } from '../src/config';
import path from 'node:path';

function formatLine(region: string, line: string): string {
  try {
    const j = JSON.parse(line) as Record<string, unknown>;
    const time = new Date(Number(j.time)).toISOString().slice(11, 23);
    const level = ({ 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' } as Record<string, string>)[String(j.level)] ?? j.level;
    const { msg, time: _t, level: _l, pid: _p, hostname: _h, region: _r, ...rest } = j;
    const extra = Object.keys(rest).length ? ' ' + JSON.stringify(rest) : '';
    return `[${region}] ${time} ${level} ${String(msg)}${extra}`;
  } catch {
    return `[${region}] ${line}`;
  }
}

async function main(): Promise<void> {
  const configPath = path.resolve(process.env.REGIONS_CONFIG || './regions.config.json');
  let file;
  try {
    file = readConfigFile(configPath);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`configuration error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  let adminToken = process.env.ADMIN_TOKEN;
  if (!adminToken) {
    adminToken = crypto.randomBytes(24).toString('base64url');
    process.stdout.write(`ADMIN_TOKEN was not set; using a generated one for this cluster:\n  export ADMIN_TOKEN=${adminToken}\n`);
  }
  const tokenSigningSecret = process.env.TOKEN_SIGNING_SECRET || crypto.randomBytes(32).toString('base64url');
  // The key that signs change events on the bus (the same in every region; see README, Security).
  let replicationKeys = process.env.REPLICATION_KEYS;
  if (!replicationKeys) {
    replicationKeys = `k1:${crypto.randomBytes(32).toString('base64url')}`;
    process.stdout.write(`REPLICATION_KEYS was not set; using a generated one for this cluster:\n  export REPLICATION_KEYS=${replicationKeys}\n`);
  }
  let stopping = false;
  const procs = file.regions.map(
    (r) =>
      new RegionProcess({
        region: r.id,
        url: r.publicUrl ?? `http://${r.host ?? '127.0.0.1'}:${r.port}`,
        env: { REGIONS_CONFIG: configPath, ADMIN_TOKEN: adminToken, TOKEN_SIGNING_SECRET: tokenSigningSecret, REPLICATION_KEYS: replicationKeys, LOG_LEVEL: process.env.LOG_LEVEL ?? 'info' },
        onLine: (line) => process.stdout.write(formatLine(r.id, line) + '\n'),
        onExit: (code, signal) => {
          if (!stopping) process.stdout.write(`[${r.id}] exited unexpectedly (code ${code}, signal ${signal})\n`);
        },
      }),
  );
  const shutdown = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`\n${sig}: stopping ${procs.length} regions...\n`);
    await Promise.all(procs.map((p) => p.stop()));
    process.stdout.write('all regions stopped\n');
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));

  for (const p of procs) p.start();
  const results = await Promise.allSettled(procs.map(async (p) => {
    await p.waitReady(60_000);
    process.stdout.write(`READY ${p.region} ${p.url}\n`);
  }));
  const failed = results.filter((r) => r.status === 'rejected');
  if (failed.length) {
    process.stderr.write(`${failed.length} region(s) failed to start:\n${failed.map((f) => `  ${(f as PromiseRejectedResult).reason}`).join('\n')}\n`);
    await shutdown('startup failure');
    return;
  }
  process.stdout.write(`cluster ready: ${procs.map((p) => `${p.region}=${p.url}`).join(' ')} (Ctrl-C stops it)\n`);
}

void main();
