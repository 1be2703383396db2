/**
 * A process run inside a host's network namespace: `ip netns exec <ns> [setpriv --reuid <user> ...] cmd`.
 * Both `ip netns exec` and setpriv exec() the next program, so the child's pid IS the service's pid:
 * SIGSTOP, SIGKILL and the /healthz pid check reach the service itself, not a wrapper.
 *
 * (src/cluster/region-process.ts always spawns `node <entry>` directly; with a launcher-prefix option there,
 * the harness could use it for the regions. Until then this class covers regions, Redis, Postgres and agents.)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { forEachLine } from '../../src/cluster/region-process';

export interface HostProcessOptions {
  /** For messages, e.g. "asia-japan" or "postgres@asia-japan". */
  name: string;
  ns: string;
  command: string;
  args: readonly string[];
  env?: Record<string, string>;
  /** Run as this user (Postgres refuses to run as root). */
  user?: string;
  /** Append every output line here. */
  logFile?: string;
  /** Keep stdin open as a pipe (the link agents read their delays from it). */
  stdin?: boolean;
  onLine?: (line: string) => void;
  onExit?: (code: number | null, signal: NodeJS.Signals | null) => void;
}

export class HostProcess {
  private child: ChildProcess | null = null;
  private exitedP: Promise<void> = Promise.resolve();
  private log: fs.WriteStream | null = null;
  private readonly tail: string[] = [];
  /** A signal that ends a process, sent by the harness to the current child (stop, teardown). */
  private ended: NodeJS.Signals | null = null;
  /** The signal that ended the last child when the harness had sent none: a kill from outside the run. */
  private outsideSignal: NodeJS.Signals | null = null;
  paused = false;

  constructor(readonly opts: HostProcessOptions) {}

  get name(): string {
    return this.opts.name;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== null;
  }

  /**
   * The signal that ended the last child although the harness sent it none (an OOM kill, or a stray
   * `kill -9` of a process group from outside the run); null if it exited by itself or by the harness's hand.
   */
  get killedFromOutside(): NodeJS.Signals | null {
    return this.child ? null : this.outsideSignal;
  }

  /** The last lines the process printed, for failure messages. */
  lastLines(n = 30): string[] {
    return this.tail.slice(-n);
  }

  start(): void {
    if (this.child) throw new Error(`${this.name} is already running`);
    const asUser = this.opts.user ? ['setpriv', `--reuid=${this.opts.user}`, `--regid=${this.opts.user}`, '--init-groups'] : [];
    // Detached: Ctrl-C on the terminal goes to the harness alone, which then stops everything in order.
    const child = spawn('ip', ['netns', 'exec', this.opts.ns, ...asUser, this.opts.command, ...this.opts.args], {
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...this.opts.env },
      stdio: [this.opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      detached: true,
    });
    this.child = child;
    this.ended = null;
    this.outsideSignal = null;
    this.paused = false;
    if (this.opts.logFile && !this.log) this.log = fs.createWriteStream(this.opts.logFile, { flags: 'a' });
    for (const stream of [child.stdout, child.stderr]) forEachLine(stream, (line) => this.line(line));
    child.stdin?.on('error', () => undefined); // the process died; its exit is reported below
    this.exitedP = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        if (this.child === child) {
          this.child = null;
          this.outsideSignal = signal && signal !== this.ended ? signal : null;
        }
        this.line(`[exited: code ${code}, signal ${signal}]${this.outsideSignal ? ' (not sent by the harness)' : ''}`);
        this.opts.onExit?.(code, signal);
        resolve();
      });
    });
  }

  private line(line: string): void {
    this.tail.push(line);
    if (this.tail.length > 200) this.tail.shift();
    this.log?.write(line + '\n');
    this.opts.onLine?.(line);
  }

  /** Writes one line to the process's stdin (link agents). */
  send(line: string): void {
    this.child?.stdin?.write(line + '\n');
  }

  pause(): void {
    this.child?.kill('SIGSTOP');
    this.paused = true;
  }

  resume(): void {
    this.child?.kill('SIGCONT');
    this.paused = false;
  }

  /** Sends `signal` and waits for the exit; SIGKILL after `graceMs`. */
  async stop(signal: NodeJS.Signals = 'SIGKILL', graceMs = 10_000): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill('SIGCONT');
    this.ended = signal;
    child.kill(signal);
    const timer = setTimeout(() => {
      this.ended = 'SIGKILL';
      child.kill('SIGKILL');
    }, graceMs);
    await this.exitedP;
    clearTimeout(timer);
  }

  /** For teardown from the 'exit' handler: signals only, no waiting (the namespace sweep waits). */
  signalSync(signal: NodeJS.Signals): void {
    try {
      this.child?.kill('SIGCONT');
      this.ended = signal;
      this.child?.kill(signal);
    } catch {
      // gone
    }
  }

  closeLog(): void {
    this.log?.end();
    this.log = null;
  }
}

/**
 * Runs `start` (which starts `proc` and waits until it serves); if that fails because a signal from outside
 * the run ended the process, calls `onOutsideKill` and runs `start` once more. Any other failure, and a second
 * one, is thrown.
 */
export async function startAgainIfKilledFromOutside(
  proc: HostProcess,
  start: () => Promise<void>,
  onOutsideKill: (signal: NodeJS.Signals) => void,
): Promise<void> {
  try {
    await start();
  } catch (err) {
    const signal = proc.killedFromOutside;
    if (!signal) throw err;
    onOutsideKill(signal);
    await start();
  }
}
