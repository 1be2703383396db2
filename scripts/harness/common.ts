/**
 * Small pieces the harness commands share: flag parsing, the root check, and one teardown registry that
 * runs on every way out (normal exit, Ctrl-C, SIGTERM, SIGHUP, an uncaught error), so a run never leaves
 * namespaces, links, processes or temp dirs behind.
 */
import { ackSignatureMode, type AckSignatures } from '../../src/config-schema';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Blocks the thread: teardown runs from the 'exit' handler too, where nothing asynchronous runs. */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export function log(msg: string): void {
  process.stderr.write(`[harness ${new Date().toISOString().slice(11, 23)}] ${msg}\n`);
}

export type Flags = Map<string, string>;

/**
 * `--name value`, `--name=value` and bare `--switch` (value "true"); everything else is positional.
 * Unknown flags are refused so a typo does not silently run the default schedule.
 */
export function parseFlags(argv: readonly string[], known: readonly string[], switches: readonly string[] = []): { flags: Flags; positional: string[] } {
  const flags: Flags = new Map();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (!a.startsWith('--')) {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = a.slice(2, eq < 0 ? undefined : eq);
    if (switches.includes(name)) {
      flags.set(name, eq < 0 ? 'true' : a.slice(eq + 1));
      continue;
    }
    if (!known.includes(name)) throw new UsageError(`unknown option --${name}`);
    const value = eq < 0 ? argv[++i] : a.slice(eq + 1);
    if (value === undefined) throw new UsageError(`--${name} needs a value`);
    flags.set(name, value);
  }
  return { flags, positional };
}

export class UsageError extends Error {}

/**
 * These commands take options only. An argument that is not one was dropped, so a slip (`short` for
 * `--short`, `-h` after `bench`) ran the default, longest schedule, as root.
 */
export function refuseArguments(positional: readonly string[]): void {
  const first = positional[0];
  if (first !== undefined) throw new UsageError(`unexpected argument '${first}': options start with --`);
}

export function intFlag(flags: Flags, name: string, dflt: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const v = flags.get(name);
  if (v === undefined) return dflt;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got '${v}'`);
  return Number(v);
}

export function numFlag(flags: Flags, name: string, dflt: number, min = 0, max = Number.MAX_VALUE): number {
  const v = flags.get(name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max) throw new UsageError(`--${name} must be a number from ${min} to ${max}, got '${v}'`);
  return n;
}

/** `--ack-signatures off|sign|require`: the regions' config `ackSignatures`; the harness runs `require` unless told. */
export function ackSignaturesFlag(flags: Flags): AckSignatures {
  const v = flags.get('ack-signatures') ?? 'require';
  const mode = ackSignatureMode(v);
  if (!mode) throw new UsageError(`--ack-signatures must be off, sign or require, got '${v}'`);
  return mode;
}

/** Namespaces, veths and tc need root; say so plainly instead of failing halfway with EPERM. */
export function requireRoot(command: string): void {
  if (typeof process.getuid === 'function' && process.getuid() === 0) return;
  process.stderr.write(
    `${command} needs root: it creates network namespaces, veth links and a bridge (ip netns / ip link) and runs\n` +
      `Postgres as the postgres user. Run it as root (e.g. sudo -E ${command}).\n`,
  );
  process.exit(2);
}

type Teardown = () => void;
const teardowns = new Set<Teardown>();
let handlersInstalled = false;
let tearingDown = false;

/** Registers a synchronous teardown; returns its removal. Teardowns run once, newest first. */
export function onTeardown(fn: Teardown): () => void {
  installExitHandlers();
  teardowns.add(fn);
  return () => void teardowns.delete(fn);
}

export function runTeardowns(): void {
  if (tearingDown) return;
  tearingDown = true;
  for (const fn of [...teardowns].reverse()) {
    teardowns.delete(fn);
    try {
      fn();
    } catch (err) {
      process.stderr.write(`[harness] teardown step failed: ${(err as Error).message}\n`);
    }
  }
  tearingDown = false;
}

/** Tears everything down and exits with `code`. */
export function exitWith(code: number): never {
  runTeardowns();
  process.exit(code);
}

function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => runTeardowns());
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      log(`${sig}: cleaning up`);
      exitWith(sig === 'SIGINT' ? 130 : 143);
    });
  }
  process.on('uncaughtException', (err) => {
    process.stderr.write(`[harness] uncaught error: ${err.stack ?? err.message}\n`);
    exitWith(1);
  });
  process.on('unhandledRejection', (err) => {
    process.stderr.write(`[harness] unhandled rejection: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    exitWith(1);
  });
}

/** Runs an async main; a UsageError prints the usage and exits 64, anything else exits 1, after teardown. */
export function runMain(main: () => Promise<number>, usage: string): void {
  main().then(
    (code) => exitWith(code),
    (err: Error) => {
      if (err instanceof UsageError) {
        process.stderr.write(`${err.message}\n\n${usage}`);
        exitWith(64);
      }
      process.stderr.write(`[harness] failed: ${err.stack ?? err.message}\n`);
      exitWith(1);
    },
  );
}
