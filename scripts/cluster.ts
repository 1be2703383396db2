/**
 * `npm run cluster [-- region ...]`: every region of the config (or the ones named) as its own process on
 * this machine. Creates and migrates their databases (each region does so at start), prints each region's
 * URL once it is ready, and stops them all on Ctrl-C / SIGTERM.
 * ADMIN_TOKEN, TOKEN_SIGNING_SECRET and REPLICATION_KEYS come from the environment; one that is not set is
 * taken from the cluster's secrets file (`.cluster/<config name>.env` next to the config), or made up and
 * written there on the first start (a rotation's ADMIN_TOKEN_ACCEPTED and TOKEN_ACCEPTED_SECRETS are taken
 * from it too, never made up). The next start, or one region started alone after it stopped, uses the
 * same ones: with a new replication key the other regions refuse the changes signed with the old one still
 * on their way (dead-lettered), and a new signing secret voids every access token issued before.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { readSecrets, secretsPath } from '../src/cluster/secrets-file';
import type { RegionConfig } from '../src/config-schema';
import { databaseAddress } from '../src/db/address';
import { answerHelp } from './usage';
import { httpUrl } from '../src/http/url';
import { checkListen, listenProblem } from '../src/listen-check';

/** The secrets a cluster needs, and how one is made up. */
const SECRETS: Record<string, () => string> = {
  ADMIN_TOKEN: () => crypto.randomBytes(24).toString('base64url'),
  TOKEN_SIGNING_SECRET: () => crypto.randomBytes(32).toString('base64url'),
  REPLICATION_KEYS: () => `k1:${crypto.randomBytes(32).toString('base64url')}`,
};

/** A rotation's other accepted values (README, Rotating the token secret and Rotating the admin token): taken from the file like the secrets, never made up. */
const ROTATION_SECRETS = ['ADMIN_TOKEN_ACCEPTED', 'TOKEN_ACCEPTED_SECRETS'] as const;

/** The names the secrets file may hold. */
const FILE_NAMES = [...Object.keys(SECRETS), ...ROTATION_SECRETS];

/**
 * Each secret from the environment, else from the file, else made up and added to the file (mode 0600).
 * `alone` (regions named): nothing is made up, since the regions already running have theirs.
 */
function clusterSecrets(configPath: string, alone: boolean): Record<string, string> {
  const file = secretsPath(configPath);
  const shown = path.relative(process.env.INIT_CWD ?? process.cwd(), file) || file;
  const kept = readSecrets(file, FILE_NAMES);
  const missing = Object.keys(SECRETS).filter((name) => !process.env[name] && !kept.has(name));
  if (missing.length && alone) {
    process.stderr.write(
      `${missing.join(', ')} not set, and not in ${shown}: a region started alone must use the secrets of the regions ` +
        'already running (export them as their start had them), or it refuses their changes and they refuse its.\n',
    );
    process.exit(2);
  }
  if (missing.length) {
    const existing = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
    const lines = (existing && !existing.endsWith('\n') ? '\n' : '') + missing.map((name) => `${name}=${(SECRETS[name] as () => string)()}\n`).join('');
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    try {
      // Added to a file there is (its other lines kept); a first start creates it, or finds that another start
      // just did and takes its secrets.
      fs.writeFileSync(file, lines, { mode: 0o600, flag: existing === null ? 'wx' : 'a' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return clusterSecrets(configPath, alone);
      throw err;
    }
  }
  // Read again after a write: what the file says is what this start uses (the last line of a name wins).
  const fromFile = missing.length ? readSecrets(file, FILE_NAMES) : kept;
  for (const name of missing) {
    // TOKEN_SIGNING_SECRET is not printed: nothing but the regions needs it.
    if (name !== 'TOKEN_SIGNING_SECRET') process.stdout.write(`${name} was not set; made one up for this cluster:\n  export ${name}=${fromFile.get(name)}\n`);
  }
  if (missing.length) process.stdout.write(`${missing.join(', ')} kept in ${shown} for the next start\n`);
  const out: Record<string, string> = {};
  for (const name of Object.keys(SECRETS)) out[name] = process.env[name] || (fromFile.get(name) as string);
  // A rotation under way: the file's accepted tokens and secrets reach a region started from the file alone too.
  for (const name of ROTATION_SECRETS) {
    const value = process.env[name] || fromFile.get(name);
    if (value) out[name] = value;
  }
  const rotating = ROTATION_SECRETS.filter((name) => !process.env[name] && fromFile.has(name));
  if (rotating.length) process.stdout.write(`${rotating.join(', ')} taken from ${shown} too (a rotation under way)\n`);
  // A secret the environment sets otherwise than the file (a rotation's next step, README, Secrets): said, since
  // a later start from the file would go back to the file's (the operator updates the file; it is not
  // rewritten here, where the value is not checked yet and the file may hold lines of the operator's own).
  const changed = Object.keys(SECRETS).filter((name) => process.env[name] && fromFile.has(name) && fromFile.get(name) !== process.env[name]);
  if (changed.length) {
    process.stdout.write(`${changed.join(', ')} from the environment differ${changed.length === 1 ? 's' : ''} from ${shown}: put the new value${changed.length === 1 ? '' : 's'} there too, or a later start from the file goes back to the old\n`);
  }
  const taken = Object.keys(SECRETS).filter((name) => !process.env[name] && !missing.includes(name));
  if (taken.length) process.stdout.write(`${taken.join(', ')} taken from ${shown} (\`set -a; . ${shown}; set +a\` exports them in a shell)\n`);
  return out;
}

function formatLine(region: string, line: string, json: boolean): string {
  // LOG_FORMAT=json: each region's JSON lines as they are (for jq or a log shipper; each carries its region).
  if (json && line.startsWith('{')) return line;
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

/**
 * How long a stop waits for each region before kill -9. A region drains for up to 125 s (src/region.ts: an
 * all_regions request answers by its own deadline, at most 120 s): killed after 30 s, as it was, its clients
 * got an empty reply instead of their 201 or 408. docker-compose.yml gives regions 150 s too.
 */
const DRAIN_S = 125;
const STOP_GRACE_MS = 150_000;
/** Signals this close after the first are the same stop (a Ctrl-C reaches this command from npm and from the terminal). */
const SAME_STOP_MS = 1_000;

/** A listen address that takes every host's connections: it clashes with any other on its port. */
const ANY_HOST = new Set(['0.0.0.0', '::', '[::]']);

/**
 * Every two regions of one start on one port (`port` or `operatorPort`, on one host or a wildcard one) or on
 * one database, each said as what to change; none when there is none. Each listener or database that repeats
 * an earlier one is one line, naming the first it repeats: a config with a shared port and a shared database
 * is told both in one run, not the second only after the first is fixed. The file itself may give regions one
 * port (each on a host of its own, deploy/regions.example.json), but this command runs them all on this
 * machine: without this, the region that came second to the port stopped with "the port is in use (… an
 * earlier cluster still running?)", after it had migrated its database and joined the deployment, and two
 * regions on one database each took the other's rows for its own.
 */
function sharedPlaces(regions: readonly RegionConfig[]): string[] {
  const clashes: string[] = [];
  const listeners: { id: string; field: string; host: string; port: number }[] = [];
  const databases = new Map<string, string>();
  for (const r of regions) {
    const host = (r.host ?? '127.0.0.1').toLowerCase();
    for (const [field, port] of [['port', r.port], ['operatorPort', r.operatorPort]] as const) {
      if (port === undefined) continue;
      const other = listeners.find((l) => l.port === port && (l.host === host || ANY_HOST.has(l.host) || ANY_HOST.has(host)));
      if (other) clashes.push(`regions '${other.id}' (${other.field}) and '${r.id}' (${field}) both listen on ${host}:${port}, and this command runs them on one machine; give each its own port`);
      listeners.push({ id: r.id, field, host, port });
    }
    const db = databaseAddress(r.databaseUrl);
    const other = databases.get(db);
    if (other !== undefined) clashes.push(`regions '${other}' and '${r.id}' have one database (${db}); each region needs its own databaseUrl`);
    else databases.set(db, r.id);
  }
  return clashes;
}

/**
 * Where each region of `starting` will listen (its entry, or PORT, OPERATOR_PORT and HOST for a region started
 * alone), each checked by listening on it: one line per port that cannot be, naming the region, the port and
 * what to change. A PORT that is no port is left to the region, which refuses it with its own message.
 */
async function portProblems(starting: readonly RegionConfig[], own: Record<string, string>, configPath: string): Promise<string[]> {
  const problems: string[] = [];
  for (const r of starting) {
    const host = own.HOST || r.host || '127.0.0.1';
    const places = [
      { field: 'port', env: 'PORT', port: own.PORT ? Number(own.PORT) : r.port },
      { field: 'operatorPort', env: 'OPERATOR_PORT', port: own.OPERATOR_PORT ? Number(own.OPERATOR_PORT) : r.operatorPort },
    ];
    for (const { field, env, port } of places) {
      if (port === undefined || !Number.isInteger(port) || port < 1 || port > 65535) continue;
      const err = await checkListen(host, port).then(() => null, (e: NodeJS.ErrnoException) => e);
      if (!err) continue;
      const change = `give it another: "${field}" of its entry in ${configPath}, or ${env} with the region named alone (npm run cluster -- ${r.id})`;
      const where = `region '${r.id}' cannot listen on ${httpUrl(host, port).slice('http://'.length)} (its ${field})`;
      const why = listenProblem(err.code) ?? `${err.message}${err.code ? ` (${err.code})` : ''}`;
      if (err.code === 'EADDRINUSE') problems.push(`${where}: ${why} (that region or an earlier cluster still running, or another program). Stop that process, or ${change}`);
      else if (err.code === 'EACCES') problems.push(`${where}: ${why}; ${change}`);
      else if (err.code === 'EADDRNOTAVAIL') problems.push(`${where}: ${why}; set "host" of its entry, or HOST with the region named alone`);
      else problems.push(`${where}: ${why}; check "host" of its entry, or HOST with the region named alone`);
    }
  }
  return problems;
}

const USAGE = 'usage: npm run cluster [-- <region id> ...] (every region of REGIONS_CONFIG, default ./regions.config.json; or the ones named)';

async function main(): Promise<void> {
  answerHelp(process.argv.slice(2), USAGE);
  // Loaded after `--help`, which needs no config (its schema and validator are ~0.2 s of CPU). Nothing of what
  // only the regions run (Prisma, pg, ioredis, Express) is loaded here: each region is a process of its own.
  const { ConfigError, jsonLogFormat, readRegionsConfig, REGION_ENTRY_ENV, regionsConfigPath } = await import('../src/config');
  const { RegionProcess } = await import('../src/cluster/region-process');
  const configPath = regionsConfigPath();
  let file;
  let json;
  try {
    file = readRegionsConfig().file;
    json = jsonLogFormat();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`configuration error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  // Regions named on the command line: only those (one started again after it stopped, say).
  const named = process.argv.slice(2);
  const options = named.filter((a) => a.startsWith('-'));
  if (options.length) {
    process.stderr.write(`${USAGE}: no options (got ${options.join(' ')})\n`);
    process.exit(2);
  }
  const unknown = named.filter((id) => !file.regions.some((r) => r.id === id));
  if (unknown.length) {
    process.stderr.write(`configuration error: ${unknown.join(', ')} not in ${configPath} (its regions: ${file.regions.map((r) => r.id).join(', ')})\n`);
    process.exit(2);
  }
  const starting = file.regions.filter((r) => named.length === 0 || named.includes(r.id));
  const clashes = sharedPlaces(starting);
  if (clashes.length) {
    process.stderr.write(clashes.map((clash) => `configuration error: ${configPath}: ${clash}\n`).join(''));
    process.exit(2);
  }
  // PORT, DATABASE_URL… override one region's entry: they go to a region started alone (`OPERATOR_PORT=9183
  // npm run cluster -- asia-japan`), never to several, which they would put on one port or one database.
  const overrides = REGION_ENTRY_ENV.filter((name) => process.env[name]);
  const own: Record<string, string> = starting.length === 1 ? Object.fromEntries(overrides.map((name) => [name, process.env[name] as string])) : {};
  if (overrides.length && starting.length > 1) {
    process.stdout.write(`${overrides.join(', ')} from the environment ignored: ${overrides.length === 1 ? 'it overrides' : 'they override'} one region's entry of ${path.basename(configPath)}, and this start runs ${starting.length} regions (name one region to use ${overrides.length === 1 ? 'it' : 'them'})\n`);
  }
  // Every port asked before anything is made: a region started is migrated and registered in the deployment
  // before it listens, and the others had started meanwhile (README, "Ports").
  const taken = await portProblems(starting, own, configPath);
  if (taken.length) {
    process.stderr.write(`${taken.join('\n')}\nNo region was started, and nothing was created or registered.\n`);
    process.exit(1);
  }
  const secrets = clusterSecrets(configPath, named.length > 0);
  let stopping = false;
  let stoppingAt = 0;
  let ready = false;
  let crashed = false;
  const procs = starting.map(
    (r) =>
      new RegionProcess({
        region: r.id,
        // Where it listens: a PORT or HOST given for a region started alone moves it.
        url: own.PORT || own.HOST ? httpUrl(own.HOST ?? r.host ?? '127.0.0.1', own.PORT ?? r.port) : r.publicUrl ?? httpUrl(r.host ?? '127.0.0.1', r.port),
        env: { REGIONS_CONFIG: configPath, ...secrets, ...own, LOG_LEVEL: process.env.LOG_LEVEL ?? 'info' },
        onLine: (line) => process.stdout.write(formatLine(r.id, line, json) + '\n'),
        onExit: (code, signal) => {
          if (stopping) return;
          // During the start its own lines above say why; the start then stops every region.
          if (!ready) {
            process.stdout.write(`[${r.id}] exited while starting (code ${code}, signal ${signal})\n`);
            return;
          }
          const again = `${process.env.REGIONS_CONFIG ? `REGIONS_CONFIG='${process.env.REGIONS_CONFIG}' ` : ''}npm run cluster -- ${r.id}`;
          // Stopped as asked (a SIGTERM sent to the whole process group reaches the regions first, and then
          // stopping is set before this line could be written; or one region stopped on its own): not a crash.
          const clean = code === 0 && signal === null;
          crashed ||= !clean;
          // The last one of this command: it ends, with 1 after a crash (it ended with 0, saying "the others
          // keep running", when the one region it ran crashed: a supervisor or script read it as success).
          const last = !procs.some((p) => p.running);
          const rest = last ? `no region of this command runs any more, so it exits${crashed ? ' 1' : ''}` : 'the others keep running';
          const what = clean ? 'stopped' : `exited unexpectedly (code ${code}, signal ${signal})`;
          process.stdout.write(`[${r.id}] ${what}; ${rest}: start it again with \`${again}\`, with this cluster's secrets in its environment or its secrets file\n`);
          if (last) process.exit(crashed ? 1 : 0);
        },
      }),
  );
  const shutdown = async (sig: string, exitCode = 0) => {
    if (stopping) {
      // A second Ctrl-C or SIGTERM: the regions still draining stop at once (a second signal ends a region).
      // Not the same Ctrl-C: npm passes it on to this command, which the terminal has sent it already.
      if ((sig === 'SIGINT' || sig === 'SIGTERM') && Date.now() - stoppingAt > SAME_STOP_MS) for (const p of procs) p.signal('SIGTERM');
      return;
    }
    stopping = true;
    stoppingAt = Date.now();
    // Only its own that still run (one that exited and was started again on its own is not this command's).
    const running = procs.filter((p) => p.running);
    process.stdout.write(`\n${sig}: stopping ${running.length} region${running.length === 1 ? '' : 's'} (${running.map((p) => p.region).join(', ') || 'none left'})...\n`);
    // A region draining its in-flight requests (an all_regions one waits up to its own timeout) is said once.
    const draining = setTimeout(() => {
      const still = procs.filter((p) => p.running).map((p) => p.region);
      if (still.length) process.stdout.write(`waiting for ${still.join(', ')} to finish in-flight requests (up to ${DRAIN_S} s; Ctrl-C again ends them at once)\n`);
    }, 5_000);
    const killed = (await Promise.all(procs.map(async (p) => ((await p.stop(STOP_GRACE_MS)) ? p.region : null)))).filter((r) => r !== null);
    clearTimeout(draining);
    process.stdout.write(killed.length ? `all regions stopped (${killed.join(', ')} killed after ${STOP_GRACE_MS / 1000} s)\n` : 'all regions stopped\n');
    process.exit(exitCode);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));

  for (const p of procs) p.start();
  // READY: it takes traffic (/readyz). A region that is up but does not (a joining one: added, or its database
  // restored) is said so, and the cluster is then "up", not "ready".
  const notReady: string[] = [];
  const results = await Promise.allSettled(procs.map(async (p) => {
    await p.waitReady(60_000);
    const readiness = await p.readiness();
    if (readiness.ready) {
      process.stdout.write(`READY ${p.region} ${p.url}\n`);
    } else {
      notReady.push(p.region);
      process.stdout.write(`UP ${p.region} ${p.url}, not ready: ${readiness.why}\n`);
    }
  }));
  const failed = results.filter((r) => r.status === 'rejected');
  if (failed.length) {
    process.stderr.write(`${failed.length} region(s) failed to start:\n${failed.map((f) => `  ${(f as PromiseRejectedResult).reason}`).join('\n')}\n`);
    await shutdown('startup failure', 1);
    return;
  }
  ready = true;
  const urls = procs.map((p) => `${p.region}=${p.url}`).join(' ');
  process.stdout.write(
    notReady.length === 0
      ? `cluster ready: ${urls} (Ctrl-C stops it)\n`
      : `cluster up, not ready: ${urls}; ${notReady.join(', ')} take${notReady.length === 1 ? 's' : ''} no traffic yet (above) (Ctrl-C stops it)\n`,
  );
}

void main();
