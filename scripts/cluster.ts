/**
 * `npm run cluster [-- region ...]`: every region of the config (or the ones named) as its own process on
 * this machine. Creates and migrates their databases (each region does so at start), prints each region's
 * URL once it is ready, and stops them all on Ctrl-C / SIGTERM.
 * ADMIN_TOKEN, TOKEN_SIGNING_SECRET and REPLICATION_KEYS come from the environment; one that is not set is
 * taken from the cluster's secrets file (`.cluster/<config name>.env` next to the config), or made up and
 * written there on the first start. The next start, or one region started alone after it stopped, uses the
 * same ones: with a new replication key the other regions refuse the changes signed with the old one still
 * on their way (dead-lettered), and a new signing secret voids every access token issued before.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { RegionProcess } from '../src/cluster/region-process';
import { ConfigError, readConfigFile } from '../src/config';

/** The secrets a cluster needs, and how one is made up. */
const SECRETS: Record<string, () => string> = {
  ADMIN_TOKEN: () => crypto.randomBytes(24).toString('base64url'),
  TOKEN_SIGNING_SECRET: () => crypto.randomBytes(32).toString('base64url'),
  REPLICATION_KEYS: () => `k1:${crypto.randomBytes(32).toString('base64url')}`,
};

function secretsPath(configPath: string): string {
  return path.join(path.dirname(configPath), '.cluster', `${path.basename(configPath, '.json')}.env`);
}

function readSecrets(file: string): Map<string, string> {
  const out = new Map<string, string>();
  if (!fs.existsSync(file)) return out;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Z_]+)=(.+)$/.exec(line.trim());
    if (m && m[1] && m[2] && m[1] in SECRETS) out.set(m[1], m[2]);
  }
  return out;
}

/** Each secret from the environment, else from the file, else made up and added to the file (mode 0600). */
function clusterSecrets(configPath: string): Record<string, string> {
  const file = secretsPath(configPath);
  const kept = readSecrets(file);
  const out: Record<string, string> = {};
  const made: string[] = [];
  for (const [name, make] of Object.entries(SECRETS)) {
    const fromEnv = process.env[name];
    if (fromEnv) out[name] = fromEnv;
    else {
      const value = kept.get(name) ?? make();
      if (!kept.has(name)) made.push(name);
      kept.set(name, value);
      out[name] = value;
      // TOKEN_SIGNING_SECRET is not printed: nothing but the regions needs it.
      if (name !== 'TOKEN_SIGNING_SECRET') process.stdout.write(`${name} was not set; using the cluster's:\n  export ${name}=${value}\n`);
    }
  }
  if (made.length) {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    fs.writeFileSync(file, [...kept].map(([k, v]) => `${k}=${v}\n`).join(''), { mode: 0o600 });
    process.stdout.write(`${made.join(', ')} made up and kept in ${file}\n`);
  }
  if (kept.size) process.stdout.write(`(the next start uses the same; \`set -a; . ${path.relative(process.cwd(), file) || file}; set +a\` exports them in a shell)\n`);
  return out;
}

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
  // Regions named on the command line: only those (one started again after it stopped, say).
  const named = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const unknown = named.filter((id) => !file.regions.some((r) => r.id === id));
  if (unknown.length) {
    process.stderr.write(`configuration error: ${unknown.join(', ')} not in ${configPath} (its regions: ${file.regions.map((r) => r.id).join(', ')})\n`);
    process.exit(2);
  }
  const secrets = clusterSecrets(configPath);
  let stopping = false;
  const procs = file.regions.filter((r) => named.length === 0 || named.includes(r.id)).map(
    (r) =>
      new RegionProcess({
        region: r.id,
        url: r.publicUrl ?? `http://${r.host ?? '127.0.0.1'}:${r.port}`,
        env: { REGIONS_CONFIG: configPath, ...secrets, LOG_LEVEL: process.env.LOG_LEVEL ?? 'info' },
        onLine: (line) => process.stdout.write(formatLine(r.id, line) + '\n'),
        onExit: (code, signal) => {
          if (stopping) return;
          const again = `${process.env.REGIONS_CONFIG ? `REGIONS_CONFIG=${process.env.REGIONS_CONFIG} ` : ''}npm run cluster -- ${r.id}`;
          process.stdout.write(`[${r.id}] exited unexpectedly (code ${code}, signal ${signal}); start it again with \`${again}\` (same secrets; the others keep running)\n`);
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
