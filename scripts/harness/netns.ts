/**
 * Kernel plumbing of the harness: one Linux bridge in the root namespace and, per host, a network namespace
 * joined to it by a veth pair. Addresses come from the benchmarking range 198.18.0.0/24, cut into eight /27
 * slots so that two runs can coexist: slot k uses 198.18.0.(32k)/27, the bridge is .32k+1 and hosts follow.
 *
 * Every name starts with `samlh<run id>` (run id = 4 hex digits) and every run holds a state file
 * /run/saml-harness/slot-<k>.json naming its pid, so leftovers of a run that died (kill -9, power cut) are
 * recognised by prefix and removed when the next run starts, while a live run is left alone.
 * Everything here is synchronous on purpose: teardown must also work from the process 'exit' handler.
 */
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sleepSync } from './common';

const NAME_PREFIX = 'samlh';
const STATE_DIR = '/run/saml-harness';
const TMP_BASE = 'saml-harness-';
const SLOTS = 8;
const SLOT_SIZE = 32;
const NET = '198.18.0.';

export interface RunState {
  id: string;
  slot: number;
  pid: number;
  /** /proc/<pid>/stat start time, so a recycled pid is not taken for the run. */
  startTime: string | null;
  tmpdir: string;
}

export interface HostLink {
  name: string;
  ns: string;
  ip: string;
  /** The root-namespace end of the veth (the other end is eth0 inside the namespace). */
  rootIf: string;
}

export function sh(cmd: string, args: readonly string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${(e.stderr || e.message).trim()}`);
  }
}

function trySh(cmd: string, args: readonly string[]): boolean {
  try {
    sh(cmd, args);
    return true;
  } catch {
    return false;
  }
}

function procStartTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22; the command name (field 2) may contain spaces, so count from its closing parenthesis.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

function procState(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return null;
  }
}

function isAlive(s: RunState): boolean {
  const t = procStartTime(s.pid);
  // A killed harness whose parent has not reaped it yet is a zombie: dead, though /proc still lists it.
  return t !== null && t === s.startTime && procState(s.pid) !== 'Z';
}

const slotFile = (slot: number) => path.join(STATE_DIR, `slot-${slot}.json`);
const runIdOf = (name: string) => new RegExp(`^${NAME_PREFIX}([0-9a-f]{4})`).exec(name)?.[1] ?? null;

function readStates(): RunState[] {
  if (!fs.existsSync(STATE_DIR)) return [];
  const out: RunState[] = [];
  for (const f of fs.readdirSync(STATE_DIR)) {
    if (!/^slot-\d+\.json$/.test(f)) continue;
    try {
      out.push(JSON.parse(fs.readFileSync(path.join(STATE_DIR, f), 'utf8')) as RunState);
    } catch {
      fs.rmSync(path.join(STATE_DIR, f), { force: true }); // half-written by a run that died at once
    }
  }
  return out;
}

function namespaces(): string[] {
  return sh('ip', ['netns', 'list'])
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(NAME_PREFIX));
}

function links(): string[] {
  return sh('ip', ['-o', 'link', 'show'])
    .split('\n')
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1] ?? '')
    .filter((n) => n.startsWith(NAME_PREFIX));
}

/** Stops whatever still runs in a namespace: TERM first (Postgres shuts down cleanly), then KILL. */
function killNamespace(ns: string): void {
  // Zombies (our own children, not reaped while this runs synchronously) are dead already.
  const pids = () => {
    try {
      return sh('ip', ['netns', 'pids', ns]).split('\n').filter(Boolean).map(Number).filter((pid) => procState(pid) !== 'Z');
    } catch {
      return [];
    }
  };
  for (const [sig, waitMs] of [['SIGTERM', 3000], ['SIGKILL', 2000]] as const) {
    const list = pids();
    if (list.length === 0) return;
    for (const pid of list) {
      try {
        process.kill(pid, 'SIGCONT');
        process.kill(pid, sig);
      } catch {
        // already gone
      }
    }
    for (let waited = 0; waited < waitMs && pids().length > 0; waited += 50) sleepSync(50);
  }
}

/** Removes every namespace, link, temp dir and state file of run `id`. Safe to call twice. */
function destroyRun(id: string, state: RunState | null): void {
  const prefix = `${NAME_PREFIX}${id}`;
  const ours = namespaces().filter((n) => n.startsWith(prefix));
  for (const ns of ours) killNamespace(ns);
  for (const ns of ours) trySh('ip', ['netns', 'del', ns]);
  // Deleting a namespace destroys its veth ends and with them the root ends; the bridge remains.
  for (const l of links().filter((n) => n.startsWith(prefix))) trySh('ip', ['link', 'del', l]);
  const tmpdir = state?.tmpdir ?? path.join(os.tmpdir(), `${TMP_BASE}${id}`);
  if (path.basename(tmpdir).startsWith(TMP_BASE)) fs.rmSync(tmpdir, { recursive: true, force: true });
  if (state) {
    const file = slotFile(state.slot);
    try {
      const onDisk = JSON.parse(fs.readFileSync(file, 'utf8')) as RunState;
      if (onDisk.id === id) fs.rmSync(file, { force: true });
    } catch {
      // not there
    }
  }
}

/** Removes what earlier runs left behind, unless the run that made it is still alive. Returns run ids removed. */
export function removeLeftovers(): string[] {
  const states = readStates();
  const ids = new Set<string>(states.map((s) => s.id));
  for (const n of [...namespaces(), ...links()]) {
    const id = runIdOf(n);
    if (id) ids.add(id);
  }
  for (const d of fs.readdirSync(os.tmpdir())) {
    if (d.startsWith(TMP_BASE)) ids.add(d.slice(TMP_BASE.length));
  }
  const removed: string[] = [];
  for (const id of ids) {
    const state = states.find((s) => s.id === id) ?? null;
    if (state && isAlive(state)) continue;
    destroyRun(id, state);
    removed.push(id);
  }
  return removed;
}

function addressesInUse(): string[] {
  return sh('ip', ['-4', '-o', 'addr', 'show']).split('\n').map((l) => /inet (\d+\.\d+\.\d+\.\d+)/.exec(l)?.[1] ?? '').filter(Boolean);
}

/** Claims a free slot (atomically, by creating its state file) and the run's temp dir. */
export function reserveRun(): RunState {
  fs.mkdirSync(STATE_DIR, { recursive: true });
  const taken = new Set(readStates().map((s) => s.id));
  let id = crypto.randomBytes(2).toString('hex');
  while (taken.has(id)) id = crypto.randomBytes(2).toString('hex');
  const used = addressesInUse();
  for (let slot = 0; slot < SLOTS; slot++) {
    const base = slot * SLOT_SIZE;
    // Someone else's interface in this /27 (not a harness run) would make routes ambiguous: skip the slot.
    if (used.some((a) => a.startsWith(NET) && Math.floor(Number(a.slice(NET.length)) / SLOT_SIZE) * SLOT_SIZE === base)) continue;
    const state: RunState = {
      id,
      slot,
      pid: process.pid,
      startTime: procStartTime(process.pid),
      tmpdir: path.join(os.tmpdir(), `${TMP_BASE}${id}`),
    };
    try {
      fs.writeFileSync(slotFile(slot), JSON.stringify(state), { flag: 'wx' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw err;
    }
    // Postgres runs as the postgres user and must be able to reach its data dir below this one.
    fs.mkdirSync(state.tmpdir, { mode: 0o755 });
    fs.chmodSync(state.tmpdir, 0o755);
    return state;
  }
  throw new Error(`all ${SLOTS} harness address slots in ${NET}0/24 are in use`);
}

export class Network {
  readonly bridge: string;
  readonly gateway: string;
  private readonly hosts = new Map<string, HostLink>();
  private readonly base: number;

  constructor(readonly run: RunState) {
    this.base = run.slot * SLOT_SIZE;
    this.bridge = `${NAME_PREFIX}${run.id}br`;
    this.gateway = `${NET}${this.base + 1}`;
  }

  createBridge(): void {
    sh('ip', ['link', 'add', this.bridge, 'type', 'bridge']);
    sh('ip', ['addr', 'add', `${this.gateway}/27`, 'dev', this.bridge]);
    sh('ip', ['link', 'set', this.bridge, 'up']);
  }

  addHost(name: string): HostLink {
    const index = this.hosts.size;
    if (index + 2 >= SLOT_SIZE - 1) throw new Error('too many hosts for one /27');
    const h: HostLink = {
      name,
      ns: `${NAME_PREFIX}${this.run.id}-${name}`,
      ip: `${NET}${this.base + 2 + index}`,
      rootIf: `${NAME_PREFIX}${this.run.id}v${index}`,
    };
    const peer = `${NAME_PREFIX}${this.run.id}p${index}`;
    this.hosts.set(name, h);
    sh('ip', ['netns', 'add', h.ns]);
    sh('ip', ['link', 'add', h.rootIf, 'type', 'veth', 'peer', 'name', peer]);
    sh('ip', ['link', 'set', peer, 'netns', h.ns]);
    sh('ip', ['-n', h.ns, 'link', 'set', peer, 'name', 'eth0']);
    sh('ip', ['-n', h.ns, 'addr', 'add', `${h.ip}/27`, 'dev', 'eth0']);
    sh('ip', ['-n', h.ns, 'link', 'set', 'eth0', 'up']);
    sh('ip', ['-n', h.ns, 'link', 'set', 'lo', 'up']);
    sh('ip', ['link', 'set', h.rootIf, 'master', this.bridge]);
    sh('ip', ['link', 'set', h.rootIf, 'up']);
    return h;
  }

  host(name: string): HostLink {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no host '${name}' (hosts: ${[...this.hosts.keys()].join(', ')})`);
    return h;
  }

  /** Partition (up = false) cuts the host's link at both ends; established connections stall until healed. */
  setLink(name: string, up: boolean): void {
    const h = this.host(name);
    const state = up ? 'up' : 'down';
    sh('ip', ['-n', h.ns, 'link', 'set', 'eth0', state]);
    sh('ip', ['link', 'set', h.rootIf, state]);
  }

  destroy(): void {
    destroyRun(this.run.id, this.run);
  }
}
