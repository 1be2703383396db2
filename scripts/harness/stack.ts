/**
 * The multi-region stack of the harness: Redis and every region as hosts of their own (a network namespace
 * with its own address on one bridge), each region with its own Postgres inside its namespace, an IdP
 * metadata server in the root namespace, and per-host one-way delays. Faults: partition/heal a host's link,
 * pause/resume (SIGSTOP/SIGCONT), kill -9 and restart a region or Redis.
 *
 * `Stack.up()` registers its teardown before it creates anything, so every way out of the process
 * (Ctrl-C, SIGTERM, an uncaught error, a failed start) removes what was made.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Redis from 'ioredis';
import type { ConfigFile } from '../../src/config';
import { PROJECT_ROOT } from '../../src/paths';
import { onTeardown, sleep } from './common';
import type { DelayTable } from './delay-proxy';
import { HostProcess } from './host-process';
import { startIdpServer, type IdpServer } from './idp-server';
import type { AgentConfig } from './link-agent';
import { Network, removeLeftovers, reserveRun, type HostLink } from './netns';
import { cloneData, initTemplate, PG_PORT, postgresProcess, waitPostgres } from './postgres';

export const DEFAULT_REGIONS: readonly RegionSpec[] = [
  { id: 'us-iowa', delayMs: 5 },
  { id: 'europe-belgium', delayMs: 45 },
  { id: 'asia-japan', delayMs: 70 },
];
export const DEFAULT_REDIS_DELAY_MS = 2;
export const REDIS_HOST = 'redis';
const REGION_PORT = 8080;
const REDIS_PORT = 6379;
/** The fixtures' MANIFEST judges certificates as of this date; the regions' clock for metadata is pinned to it. */
export const FIXTURE_DATE = '2026-11-23T00:00:00Z';

export interface RegionSpec {
  id: string;
  delayMs: number;
}

export interface StackOptions {
  regions: readonly RegionSpec[];
  redisDelayMs: number;
  jitterMs: number;
  /** Redis with an append-only file (needed to restart Redis without losing the stream). */
  redisAppendOnly: boolean;
  /** LOG_LEVEL of the regions. */
  logLevel: string;
  /** Keep the hosts' logs here; by default they live in the run's temp dir and go with it. */
  logDir?: string;
  /** Receives every line a region prints. */
  onRegionLine?: (region: string, line: string) => void;
  say: (msg: string) => void;
}

/**
 * How a host is partitioned: `link` takes its veth down at both ends (nothing reaches it, its clients
 * included); `wan` cuts it from the other hosts (Redis, other regions) while its clients and the IdP still
 * reach it, which is what a region cut off from the replication bus looks like.
 */
export type PartitionMode = 'link' | 'wan';

interface Host {
  link: HostLink;
  delayMs: number;
  agent: HostProcess;
  service: HostProcess;
  postgres: HostProcess | null;
  partitioned: PartitionMode | null;
}

export interface HostStatus {
  host: string;
  address: string;
  delayMs: number;
  pid: number | null;
  state: 'running' | 'paused' | 'down';
  partitioned: PartitionMode | null;
}

export class Stack {
  readonly adminToken = crypto.randomBytes(18).toString('base64url');
  private readonly hosts = new Map<string, Host>();
  private idp: IdpServer | null = null;
  private readonly untrack: () => void;
  private readonly logDir: string;
  readonly configPath: string;

  private constructor(
    private readonly o: StackOptions,
    readonly net: Network,
  ) {
    this.untrack = onTeardown(() => this.teardown());
    this.logDir = o.logDir ?? path.join(net.run.tmpdir, 'logs');
    fs.mkdirSync(this.logDir, { recursive: true });
    this.configPath = path.join(net.run.tmpdir, 'regions.config.json');
  }

  static async up(o: StackOptions): Promise<Stack> {
    const removed = removeLeftovers();
    if (removed.length) o.say(`removed leftovers of earlier harness runs: ${removed.join(', ')}`);
    const stack = new Stack(o, new Network(reserveRun()));
    await stack.build();
    return stack;
  }

  get runId(): string {
    return this.net.run.id;
  }

  get regionIds(): string[] {
    return this.o.regions.map((r) => r.id);
  }

  get hostNames(): string[] {
    return [...this.hosts.keys()];
  }

  regionUrl(region: string): string {
    return `http://${this.host(region).link.ip}:${REGION_PORT}`;
  }

  /** The region's own database, reached from the root namespace through the host's link agent. */
  dbUrl(region: string): string {
    return `postgresql://postgres@${this.host(region).link.ip}:${PG_PORT}/saml`;
  }

  get redisUrl(): string {
    return `redis://${this.host(REDIS_HOST).link.ip}:${REDIS_PORT}`;
  }

  idpUrl(file: string): string {
    if (!this.idp) throw new Error('the IdP server is not running');
    return this.idp.url(file);
  }

  private host(name: string): Host {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no host '${name}'; hosts: ${this.hostNames.join(', ')}`);
    return h;
  }

  private async build(): Promise<void> {
    const { o, net } = this;
    const tmp = net.run.tmpdir;
    net.createBridge();
    const links = [net.addHost(REDIS_HOST), ...o.regions.map((r) => net.addHost(r.id))];
    const delayOf = new Map<string, number>([[REDIS_HOST, o.redisDelayMs], ...o.regions.map((r) => [r.id, r.delayMs] as [string, number])]);
    // The IdP stands for the internet: a WAN partition between our hosts does not cut it off.
    this.idp = await startIdpServer(net.gateway, () => ({ self: 0, peers: this.peerDelays(), jitter: o.jitterMs, cut: [] }));
    const redisIp = links[0]?.ip ?? '';
    const file: ConfigFile = {
      redisUrl: `redis://${redisIp}:${REDIS_PORT}`,
      redisKeyPrefix: 'saml:',
      regions: links.slice(1).map((l) => ({
        id: l.name,
        port: REGION_PORT,
        databaseUrl: `postgresql://postgres@127.0.0.1:${PG_PORT}/saml`,
        host: l.ip,
        publicUrl: `http://${l.ip}:${REGION_PORT}`,
      })),
      metadataAllowedHosts: [this.idp.hostPort],
    };
    fs.writeFileSync(this.configPath, JSON.stringify(file, null, 2));
    const template = initTemplate(path.join(tmp, 'pg'));
    template.catch(() => undefined); // awaited below; until then a failure must not count as unhandled
    fs.mkdirSync(path.join(tmp, 'redis'));
    for (const link of links) {
      const isRedis = link.name === REDIS_HOST;
      const ports = isRedis ? [REDIS_PORT] : [REGION_PORT, PG_PORT];
      this.hosts.set(link.name, {
        link,
        delayMs: delayOf.get(link.name) ?? 0,
        agent: this.agentProcess(link, ports),
        service: isRedis ? this.redisProcess(link, path.join(tmp, 'redis')) : this.regionProcess(link),
        postgres: isRedis ? null : postgresProcess(`postgres@${link.name}`, link.ns, path.join(tmp, 'pg', link.name), this.logFile(`postgres-${link.name}`)),
        partitioned: null,
      });
    }
    await Promise.all([...this.hosts.values()].map((h) => this.startAgent(h)));
    const templateDir = await template;
    for (const h of this.hosts.values()) {
      if (!h.postgres) continue;
      cloneData(templateDir, path.join(tmp, 'pg', h.link.name));
      h.postgres.start();
    }
    await Promise.all([
      this.startService(REDIS_HOST),
      ...[...this.hosts.values()].flatMap((h) => (h.postgres ? [waitPostgres(h.postgres, h.link.ns)] : [])),
    ]);
    o.say(`Redis and ${o.regions.length} Postgres servers are up; starting the regions`);
    await Promise.all(this.regionIds.map((r) => this.startService(r)));
  }

  private logFile(name: string): string {
    return path.join(this.logDir, `${name}.log`);
  }

  private agentProcess(link: HostLink, ports: number[]): HostProcess {
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
      logFile: this.logFile(`link-agent-${link.name}`),
    });
  }

  private async startAgent(h: Host): Promise<void> {
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${h.agent.name} did not start:\n${h.agent.lastLines(10).join('\n')}`)), 15_000);
      const poll = setInterval(() => {
        if (h.agent.lastLines(5).includes('ready')) {
          clearTimeout(timer);
          clearInterval(poll);
          resolve();
        }
      }, 20);
    });
    h.agent.start();
    await ready;
    this.pushDelays();
  }

  private redisProcess(link: HostLink, dir: string): HostProcess {
    const aof = this.o.redisAppendOnly;
    return new HostProcess({
      name: 'redis',
      ns: link.ns,
      command: 'redis-server',
      args: ['--bind', '127.0.0.1', '--port', String(REDIS_PORT), '--dir', dir, '--save', '', '--appendonly', aof ? 'yes' : 'no', '--appendfsync', 'everysec', '--protected-mode', 'no'],
      logFile: this.logFile('redis'),
    });
  }

  private regionProcess(link: HostLink): HostProcess {
    return new HostProcess({
      name: link.name,
      ns: link.ns,
      command: process.execPath,
      args: [path.join(PROJECT_ROOT, 'dist', 'src', 'main.js')],
      env: {
        REGION: link.name,
        REGIONS_CONFIG: this.configPath,
        ADMIN_TOKEN: this.adminToken,
        TOKEN_SIGNING_SECRET: `harness-${this.adminToken}`,
        // The config's host is the address others reach the region at; the process listens behind its agent.
        HOST: '127.0.0.1',
        LOG_LEVEL: this.o.logLevel,
        METADATA_VALIDATION_TIME: FIXTURE_DATE,
      },
      logFile: this.logFile(`region-${link.name}`),
      onLine: (line) => this.o.onRegionLine?.(link.name, line),
    });
  }

  private peerDelays(): Record<string, number> {
    return Object.fromEntries([...this.hosts.values()].map((h) => [h.link.ip, h.delayMs]));
  }

  private pushDelays(): void {
    const peers = this.peerDelays();
    const all = [...this.hosts.values()];
    const wan = all.filter((h) => h.partitioned === 'wan').map((h) => h.link.ip);
    for (const h of all) {
      // A WAN-partitioned host is cut from every other host; the others are cut from it.
      const cut = h.partitioned === 'wan' ? all.filter((x) => x !== h).map((x) => x.link.ip) : wan;
      const table: DelayTable = { self: h.delayMs, peers, jitter: this.o.jitterMs, cut };
      h.agent.send(JSON.stringify(table));
    }
  }

  /** Changes a host's one-way delay at once (running connections included). */
  setDelay(host: string, ms: number): void {
    this.host(host).delayMs = ms;
    this.pushDelays();
  }

  /** Starts a host's service (a region or Redis) if it is not running, and waits until it serves. */
  async startService(host: string, timeoutMs = 60_000): Promise<void> {
    const h = this.host(host);
    if (!h.service.running) h.service.start();
    if (host === REDIS_HOST) await this.waitRedis(h, timeoutMs);
    else await this.waitRegion(h, timeoutMs);
  }

  private async waitRegion(h: Host, timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    const url = `${this.regionUrl(h.link.name)}/healthz`;
    while (Date.now() < until) {
      if (!h.service.running) throw new Error(`${h.link.name} exited during start-up:\n${h.service.lastLines(20).join('\n')}`);
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
        // A reply from an earlier process of the region must not pass for this one.
        const body = res.ok ? ((await res.json()) as { pid?: number }) : null;
        if (body?.pid !== undefined && body.pid === h.service.pid) return;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    throw new Error(`${h.link.name} was not ready within ${timeoutMs} ms:\n${h.service.lastLines(20).join('\n')}`);
  }

  private async waitRedis(h: Host, timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      if (!h.service.running) throw new Error(`redis exited during start-up:\n${h.service.lastLines(20).join('\n')}`);
      const c = new Redis(this.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 2000 });
      c.on('error', () => undefined);
      try {
        await c.connect();
        // While loading the append-only file Redis answers LOADING; it is not ready yet.
        if ((await c.ping()) === 'PONG') return;
      } catch {
        // not up yet
      } finally {
        c.disconnect();
      }
      await sleep(100);
    }
    throw new Error(`redis was not ready within ${timeoutMs} ms`);
  }

  partition(host: string, mode: PartitionMode = 'link'): void {
    const h = this.host(host);
    if (h.partitioned) throw new Error(`${host} is already partitioned (${h.partitioned})`);
    h.partitioned = mode;
    if (mode === 'link') this.net.setLink(host, false);
    else this.pushDelays();
  }

  heal(host: string): void {
    const h = this.host(host);
    const mode = h.partitioned;
    h.partitioned = null;
    if (mode === 'link') this.net.setLink(host, true);
    else if (mode === 'wan') this.pushDelays();
  }

  pause(host: string): void {
    this.host(host).service.pause();
  }

  resume(host: string): void {
    this.host(host).service.resume();
  }

  /** kill -9 (or `signal`) of a region or Redis; resolves when it has exited. */
  async kill(host: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.host(host).service.stop(signal);
  }

  /** Stops the service if it runs (kill -9 unless `signal` says otherwise) and starts it again. */
  async restart(host: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.kill(host, signal);
    await this.startService(host);
  }

  isPartitioned(host: string): boolean {
    return this.host(host).partitioned !== null;
  }

  isRunning(host: string): boolean {
    return this.host(host).service.running;
  }

  lastLines(host: string, n = 30): string[] {
    return this.host(host).service.lastLines(n);
  }

  status(): HostStatus[] {
    return [...this.hosts.values()].map((h) => ({
      host: h.link.name,
      address: h.link.ip,
      delayMs: h.delayMs,
      pid: h.service.pid ?? null,
      state: !h.service.running ? 'down' : h.service.paused ? 'paused' : 'running',
      partitioned: h.partitioned,
    }));
  }

  /** Stops everything and removes every namespace, link and temp dir of this run. Synchronous. */
  teardown(): void {
    this.untrack();
    const t0 = Date.now();
    for (const h of this.hosts.values()) {
      h.service.signalSync('SIGKILL');
      // Immediate shutdown: Postgres stops its backends and releases its shared memory itself.
      h.postgres?.signalSync('SIGQUIT');
      h.agent.signalSync('SIGKILL');
      for (const p of [h.service, h.postgres, h.agent]) p?.closeLog();
    }
    void this.idp?.close();
    this.net.destroy();
    this.o.say(`run ${this.runId} cleaned up in ${Date.now() - t0} ms`);
  }
}
