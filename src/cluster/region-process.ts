/**
 * A region run as its own OS process (node dist/src/main.js), for `npm run cluster` and the test harness:
 * start, wait until /healthz answers, pause (SIGSTOP), resume, kill -9, stop (SIGTERM), restart.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { REGION_ENTRY_ENV } from '../config';
import { onlyJoining } from '../observability/readiness-body';
import { PROJECT_ROOT } from '../paths';

export interface RegionProcessOptions {
  region: string;
  url: string;
  /**
   * Added to this process's environment. Of the variables that override one region's entry of the config
   * (REGION_ENTRY_ENV: PORT, DATABASE_URL…) only those given here reach the region: inherited from the
   * caller's shell (a DATABASE_URL exported for Prisma, say), they would put every region on one database.
   */
  env: Record<string, string>;
  /** Receives each output line of the process. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  onExit?: (code: number | null, signal: NodeJS.Signals | null) => void;
  entry?: string;
}

/** Calls `onLine` with each complete line a child's output stream prints. */
export function forEachLine(stream: NodeJS.ReadableStream | null, onLine: (line: string) => void): void {
  let buf = '';
  stream?.setEncoding('utf8');
  stream?.on('data', (chunk: string) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a /readyz 503 body (observability/readiness.ts) says is missing, in a few words. */
function notReadyBecause(body: Record<string, unknown>): string {
  if (onlyJoining(body)) return 'joining: it takes no traffic until it is re-seeded (its log line names the command)';
  const why: string[] = [];
  if (body.draining === true) why.push('draining');
  if (body.database !== undefined && body.database !== 'ok') why.push(`database ${String(body.database)}`);
  if (Array.isArray(body.missing_migrations) && body.missing_migrations.length > 0) why.push(`${body.missing_migrations.length} migration(s) not applied`);
  const redis = body.redis as { reachable?: unknown } | undefined;
  if (redis?.reachable === false) why.push('Redis unreachable');
  return why.length > 0 ? why.join(', ') : 'its /readyz answers 503';
}

export class RegionProcess {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();

  constructor(readonly opts: RegionProcessOptions) {}

  get region(): string {
    return this.opts.region;
  }

  get url(): string {
    return this.opts.url;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== null;
  }

  start(): void {
    if (this.child) throw new Error(`${this.region} is already running`);
    const entry = this.opts.entry ?? path.join(PROJECT_ROOT, 'dist', 'src', 'main.js');
    // Bench experiments: REGION_NODE_ARGS (node options for every region process, space-separated) and
    // REGION_CPU_PROFILE_DIR (a V8 CPU profile per region, written when it stops).
    const nodeArgs = [
      ...(process.env.REGION_NODE_ARGS ? process.env.REGION_NODE_ARGS.split(' ').filter(Boolean) : []),
      ...(process.env.REGION_CPU_PROFILE_DIR ? ['--cpu-prof', '--cpu-prof-dir', process.env.REGION_CPU_PROFILE_DIR] : []),
    ];
    const inherited = { ...process.env };
    for (const name of REGION_ENTRY_ENV) delete inherited[name];
    const child = spawn(process.execPath, [...nodeArgs, entry], {
      env: { ...inherited, ...this.opts.env, REGION: this.region },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    for (const stream of ['stdout', 'stderr'] as const) forEachLine(child[stream], (line) => this.opts.onLine?.(line, stream));
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        if (this.child === child) this.child = null;
        this.opts.onExit?.(code, signal);
        resolve();
      });
    });
  }

  /** Resolves once GET /healthz answers 200 from this very process; rejects if the process exits or the time runs out. */
  async waitReady(timeoutMs = 30_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      if (!this.child) throw new Error(`${this.region} exited before it was ready`);
      try {
        const res = await fetch(`${this.url}/healthz`, { signal: AbortSignal.timeout(1000) });
        // Another process on the same port (an old cluster) must not pass for this one.
        const body = res.ok ? ((await res.json()) as { pid?: number }) : null;
        if (body?.pid === this.child.pid) return;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    throw new Error(`${this.region} was not ready within ${timeoutMs} ms`);
  }

  /**
   * Whether the region takes traffic (GET /readyz), asked until it says 200 or says why not for a reason that
   * lasts (`joining`: it needs its re-seed), for up to `settleMs`; a region whose /healthz answered but whose
   * database or Redis is not there yet gets that time. `why` names what /readyz reported.
   */
  async readiness(settleMs = 5_000): Promise<{ ready: true } | { ready: false; joining: boolean; why: string }> {
    const until = Date.now() + settleMs;
    let last: { ready: false; joining: boolean; why: string } = { ready: false, joining: false, why: 'its /readyz did not answer' };
    for (;;) {
      try {
        const res = await fetch(`${this.url}/readyz`, { signal: AbortSignal.timeout(2_500) });
        const body = (await res.json()) as Record<string, unknown>;
        if (res.ok) return { ready: true };
        last = { ready: false, joining: onlyJoining(body), why: notReadyBecause(body) };
        if (last.joining) return last;
      } catch {
        // not answering (yet): asked again
      }
      if (Date.now() >= until || !this.child) return last;
      await sleep(200);
    }
  }

  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  resume(): void {
    this.child?.kill('SIGCONT');
  }

  /** Sends `signal` to the process, if it runs (a second SIGTERM ends a draining region at once). */
  signal(signal: NodeJS.Signals): void {
    this.child?.kill(signal);
  }

  /** kill -9: no shutdown code runs. */
  async kill(): Promise<void> {
    if (!this.child) return;
    this.child.kill('SIGCONT');
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM and wait for the graceful exit (kill -9 after `graceMs`); true when it had to be killed. */
  async stop(graceMs = 30_000): Promise<boolean> {
    const child = this.child;
    if (!child) return false;
    child.kill('SIGCONT');
    child.kill('SIGTERM');
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, graceMs);
    await this.exited;
    clearTimeout(timer);
    return killed;
  }

  async restart(): Promise<void> {
    await this.kill();
    this.start();
    await this.waitReady();
  }
}
