/**
 * A Postgres per region host, inside the host's namespace on 127.0.0.1:5432 (so a region talks to its own
 * database without WAN delay). initdb refuses root, so it and the server run as the postgres user; the
 * cluster is initialised once per run and copied for each region, which is much faster than initdb thrice.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { sleep } from './common';
import { HostProcess } from './host-process';
import { sh } from './netns';

const run = promisify(execFile);
export const PG_PORT = 5432;
const PG_USER = 'postgres';

/** The newest server installed under /usr/lib/postgresql/<version>/bin. */
export function pgBinDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root) ? fs.readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  const dir = versions.map((v) => path.join(root, v, 'bin')).find((d) => fs.existsSync(path.join(d, 'postgres')));
  if (!dir) throw new Error('no PostgreSQL server found under /usr/lib/postgresql/*/bin');
  return dir;
}

function chownToPostgres(dir: string): void {
  sh('chown', ['-R', `${PG_USER}:${PG_USER}`, dir]);
}

/** Runs initdb once into `<dir>/template`; returns the data directory. */
export async function initTemplate(dir: string): Promise<string> {
  const data = path.join(dir, 'template');
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  fs.mkdirSync(data, { mode: 0o700 });
  chownToPostgres(data);
  await run('setpriv', [
    `--reuid=${PG_USER}`, `--regid=${PG_USER}`, '--init-groups',
    path.join(pgBinDir(), 'initdb'), '-D', data, '-U', PG_USER, '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C',
  ]);
  return data;
}

/** A region's own copy of the template cluster, owned by postgres. */
export function cloneData(template: string, dest: string): void {
  sh('cp', ['-a', template, dest]);
}

export function postgresProcess(name: string, ns: string, dataDir: string, logFile?: string): HostProcess {
  return new HostProcess({
    name,
    ns,
    user: PG_USER,
    command: path.join(pgBinDir(), 'postgres'),
    args: [
      '-D', dataDir,
      '-c', 'listen_addresses=127.0.0.1',
      '-c', `port=${PG_PORT}`,
      // Its own socket dir: the machine's Postgres owns /var/run/postgresql/.s.PGSQL.5432 and the
      // file system is shared between namespaces.
      '-c', `unix_socket_directories=${dataDir}`,
      '-c', 'max_connections=200',
      '-c', 'shared_buffers=64MB',
      '-c', 'log_min_messages=warning',
    ],
    logFile,
  });
}

/** Waits until the server inside `ns` accepts connections. */
export async function waitPostgres(proc: HostProcess, ns: string, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (!proc.running) throw new Error(`${proc.name} exited during start-up:\n${proc.lastLines(15).join('\n')}`);
    try {
      await run('ip', ['netns', 'exec', ns, path.join(pgBinDir(), 'pg_isready'), '-q', '-h', '127.0.0.1', '-p', String(PG_PORT), '-U', PG_USER]);
      return;
    } catch {
      await sleep(100);
    }
  }
  throw new Error(`${proc.name} was not ready within ${timeoutMs} ms`);
}
