/**
 * The processes a harness host runs, and how to tell each is serving: the link agent (the host's
 * delayed address, see link-agent.ts), Redis, and a region (`node dist/src/main.js`).
 */
import path from 'node:path';
import Redis from 'ioredis';
import { PROJECT_ROOT } from '../../src/paths';
import { sleep } from './common';
import { HostProcess } from './host-process';
import type { AgentConfig } from './link-agent';
import type { HostLink } from './netns';

export const REGION_PORT = 8080;
export const REDIS_PORT = 6379;

export function agentProcess(link: HostLink, ports: readonly number[], logFile: string): HostProcess {
  const config: AgentConfig = {
    listenHost: link.ip,
    forwards: ports.map((p) => ({ listenPort: p, targetPort: p })),
    delays: { self: 0, peers: {}, jitter: 0, cut: [] },
  };
  return new HostProcess({
    name: `link-agent@${link.name}`,
    ns: link.ns,
    command: process.execPath,
    args: [path.join(PROJECT_ROOT, 'dist', 'scripts', 'harness', 'link-agent.js'), JSON.stringify(config)],
    stdin: true,
    logFile,
  });
}

/** Starts an agent and resolves once it listens (it prints "ready"). */
export async function startAgent(agent: HostProcess, timeoutMs = 15_000): Promise<void> {
  agent.start();
  const until = Date.now() + timeoutMs;
  while (!agent.lastLines(5).includes('ready')) {
    if (!agent.running || Date.now() > until) throw new Error(`${agent.name} did not start:\n${agent.lastLines(10).join('\n')}`);
    await sleep(20);
  }
}

export function redisProcess(link: HostLink, dir: string, appendOnly: boolean, logFile: string, name = 'redis'): HostProcess {
  return new HostProcess({
    name,
    ns: link.ns,
    command: 'redis-server',
    args: [
      '--bind', '127.0.0.1', '--port', String(REDIS_PORT), '--dir', dir, '--save', '',
      '--appendonly', appendOnly ? 'yes' : 'no', '--appendfsync', 'everysec', '--protected-mode', 'no',
    ],
    logFile,
  });
}

export function regionProcess(link: HostLink, env: Record<string, string>, logFile: string, onLine?: (line: string) => void): HostProcess {
  return new HostProcess({
    name: link.name,
    ns: link.ns,
    command: process.execPath,
    args: [path.join(PROJECT_ROOT, 'dist', 'src', 'main.js')],
    // The config's host is the address others reach the region at; the process listens behind its agent.
    env: { ...env, REGION: link.name, HOST: '127.0.0.1' },
    logFile,
    onLine,
  });
}

/** Resolves once GET /healthz answers from this very process (its pid), not an earlier one of the region. */
export async function waitRegion(proc: HostProcess, baseUrl: string, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (!proc.running) throw new Error(`${proc.name} exited during start-up:\n${proc.lastLines(20).join('\n')}`);
    try {
      const res = await fetch(`${baseUrl}/healthz`, { signal: AbortSignal.timeout(2000) });
      const body = res.ok ? ((await res.json()) as { pid?: number }) : null;
      if (body?.pid !== undefined && body.pid === proc.pid) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`${proc.name} was not ready within ${timeoutMs} ms:\n${proc.lastLines(20).join('\n')}`);
}

export async function waitRedis(proc: HostProcess, url: string, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (!proc.running) throw new Error(`${proc.name} exited during start-up:\n${proc.lastLines(20).join('\n')}`);
    const c = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 2000 });
    c.on('error', () => undefined);
    try {
      await c.connect();
      // While it loads the append-only file Redis answers LOADING: not ready yet.
      if ((await c.ping()) === 'PONG') return;
    } catch {
      // not up yet
    } finally {
      c.disconnect();
    }
    await sleep(100);
  }
  throw new Error(`${proc.name} was not ready within ${timeoutMs} ms`);
}
