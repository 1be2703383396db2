/**
 * The multi-region stack of the harness: every region as a host of its own (a network namespace with its
 * own address on one bridge), each region with its own Postgres and its own Redis inside its namespace
 * (the other regions reach that Redis at the host's address, through its delays), an IdP metadata server
 * in the root namespace, and per-host one-way delays. With `sharedRedis`, one Redis on a host of its own
 * serves every region instead (the topology before issue I, for comparison). Faults: partition a host
 * (its link down, or a WAN cut from the other hosts) and heal it, pause/resume (SIGSTOP/SIGCONT), kill -9
 * and restart a region, a region's Redis (`redis@<region>`) or the shared Redis.
 *
 * `Stack.up()` registers its teardown before it creates anything, so every way out of the process
 * (Ctrl-C, SIGTERM, an uncaught error, a failed start) removes what was made.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { ConfigFile } from '../../src/config-schema';
import type { AckSignatures } from '../../src/replication/ack-auth';
import { onTeardown } from './common';
import type { DelayTable } from './delay-proxy';
import { startAgainIfKilledFromOutside, type HostProcess } from './host-process';
import { startIdpServer, type IdpServer } from './idp-server';
import { Network, removeLeftovers, reserveRun, type HostLink } from './netns';
import { cloneData, initTemplate, PG_PORT, postgresProcess, waitPostgres } from './postgres';
import { agentProcess, REDIS_PORT, redisProcess, REGION_PORT, regionProcess, startAgent, waitRedis, waitRegion } from './services';

export const DEFAULT_REGIONS: readonly RegionSpec[] = [
  { id: 'us-iowa', delayMs: 5 },
  { id: 'europe-belgium', delayMs: 45 },
  { id: 'asia-japan', delayMs: 70 },
];
export const DEFAULT_REDIS_DELAY_MS = 2;
export const REDIS_HOST = 'redis';
/** The service name of a region's own Redis (kill, restart, pause it by this name). */
export const regionRedis = (region: string) => `redis@${region}`;
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
  /** One Redis for every region, on a host of its own (default: a Redis per region, on its host). */
  sharedRedis?: boolean;
  /** The regions' config `ackSignatures` (`--ack-signatures`; the harness's default is `require`). */
  ackSignatures: AckSignatures;
  /** LOG_LEVEL of the regions. */
  logLevel: string;
  /**
   * The regions' `tombstoneCollection.intervalMs` (default: the service's, 60 s). Each cycle also sweeps the
   * rows a deleted organization still owns (written where its delete had not arrived yet).
   */
  tombstoneIntervalMs?: number;
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
  /** The region's own Redis (null on the shared Redis host, and for regions when Redis is shared). */
  redis: HostProcess | null;
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

  /** The shared Redis's URL, or with a Redis per region the given region's (the first by default). */
  redisUrl(region?: string): string {
    const host = this.o.sharedRedis ? REDIS_HOST : (region ?? this.regionIds[0] ?? '');
    return `redis://${this.host(host).link.ip}:${REDIS_PORT}`;
  }

  get sharedRedis(): boolean {
    return this.o.sharedRedis === true;
  }

  /** Every service that can be killed, restarted, paused: the hosts' main services and the regions' Redis. */
  get serviceNames(): string[] {
    return [...this.hosts.values()].flatMap((h) => (h.redis ? [h.link.name, regionRedis(h.link.name)] : [h.link.name]));
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
    const shared = o.sharedRedis === true;
    net.createBridge();
    const links = [...(shared ? [net.addHost(REDIS_HOST)] : []), ...o.regions.map((r) => net.addHost(r.id))];
    const regionLinks = links.filter((l) => l.name !== REDIS_HOST);
    const delayOf = new Map<string, number>([[REDIS_HOST, o.redisDelayMs], ...o.regions.map((r) => [r.id, r.delayMs] as [string, number])]);
    // The IdP stands for the internet: a WAN partition between our hosts does not cut it off.
    this.idp = await startIdpServer(net.gateway, () => ({ self: 0, peers: this.peerDelays(), jitter: o.jitterMs, cut: [] }));
    const redisAt = (l: HostLink) => `redis://${l.ip}:${REDIS_PORT}`;
    const file: ConfigFile = {
      redisUrl: redisAt(links[0] as HostLink),
      redisKeyPrefix: 'saml:',
      regions: regionLinks.map((l) => ({
        id: l.name,
        port: REGION_PORT,
        databaseUrl: `postgresql://postgres@127.0.0.1:${PG_PORT}/saml`,
        host: l.ip,
        publicUrl: `http://${l.ip}:${REGION_PORT}`,
        // Its own Redis, which the other regions reach at its address (with its delays).
        ...(shared ? {} : { redisUrl: redisAt(l) }),
      })),
      // One organization drives the whole load: lift the per-org quotas that would otherwise refuse it.
      maxCredentialsPerOrg: 100_000,
      metadataFetchConcurrency: { perOrg: 100, perRegion: 1000 },
      metadataAllowedHosts: [this.idp.hostPort],
      ackSignatures: o.ackSignatures,
      ...(o.tombstoneIntervalMs === undefined ? {} : { tombstoneCollection: { intervalMs: o.tombstoneIntervalMs } }),
    };
    fs.writeFileSync(this.configPath, JSON.stringify(file, null, 2));
    const template = initTemplate(path.join(tmp, 'pg'));
    template.catch(() => undefined); // awaited below; until then a failure must not count as unhandled
    const regionEnv = {
      REGIONS_CONFIG: this.configPath,
      ADMIN_TOKEN: this.adminToken,
      TOKEN_SIGNING_SECRET: `harness-${this.adminToken}`,
      // Change events on the bus are signed; every region of the stack shares the key.
      REPLICATION_KEYS: `harness:harness-replication-${this.adminToken}`,
      LOG_LEVEL: o.logLevel,
      METADATA_VALIDATION_TIME: FIXTURE_DATE,
      // A region reaches its own Redis inside its host (loopback), as a region does in its own site.
      ...(shared ? {} : { REGION_REDIS_URL: `redis://127.0.0.1:${REDIS_PORT}` }),
    };
    const redisDir = (name: string) => {
      const dir = path.join(tmp, `redis-${name}`);
      fs.mkdirSync(dir, { recursive: true });
      return dir;
    };
    for (const link of links) {
      const isRedis = link.name === REDIS_HOST;
      this.hosts.set(link.name, {
        link,
        delayMs: delayOf.get(link.name) ?? 0,
        agent: agentProcess(link, isRedis ? [REDIS_PORT] : shared ? [REGION_PORT, PG_PORT] : [REGION_PORT, PG_PORT, REDIS_PORT], this.logFile(`link-agent-${link.name}`)),
        service: isRedis
          ? redisProcess(link, redisDir(link.name), o.redisAppendOnly, this.logFile('redis'))
          : regionProcess(link, regionEnv, this.logFile(`region-${link.name}`), (line) => o.onRegionLine?.(link.name, line)),
        postgres: isRedis ? null : postgresProcess(`postgres@${link.name}`, link.ns, path.join(tmp, 'pg', link.name), this.logFile(`postgres-${link.name}`)),
        redis: isRedis || shared ? null : redisProcess(link, redisDir(link.name), o.redisAppendOnly, this.logFile(`redis-${link.name}`), regionRedis(link.name)),
        partitioned: null,
      });
    }
    await Promise.all(
      [...this.hosts.values()].map(async (h) => {
        await startAgent(h.agent);
        this.pushDelays();
      }),
    );
    const templateDir = await template;
    for (const h of this.hosts.values()) {
      if (!h.postgres) continue;
      cloneData(templateDir, path.join(tmp, 'pg', h.link.name));
      h.postgres.start();
    }
    await Promise.all([
      ...this.serviceNames.filter((n) => n === REDIS_HOST || n.startsWith('redis@')).map((n) => this.startService(n)),
      ...[...this.hosts.values()].flatMap((h) => (h.postgres ? [waitPostgres(h.postgres, h.link.ns)] : [])),
    ]);
    o.say(`${shared ? 'Redis' : `${o.regions.length} Redis servers`} and ${o.regions.length} Postgres servers are up; starting the regions`);
    await Promise.all(this.regionIds.map((r) => this.startService(r)));
  }

  private logFile(name: string): string {
    return path.join(this.logDir, `${name}.log`);
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

  /** The process of a service: a host's main one (a region, the shared Redis), `redis@<region>` or `postgres@<region>`. */
  private proc(service: string): HostProcess {
    const pg = /^postgres@(.+)$/.exec(service)?.[1];
    if (pg) {
      const p = this.host(pg).postgres;
      if (!p) throw new Error(`${pg} has no Postgres`);
      return p;
    }
    const m = /^redis@(.+)$/.exec(service);
    if (!m?.[1]) return this.host(service).service;
    const p = this.host(m[1]).redis;
    if (!p) throw new Error(`${m[1]} has no Redis of its own (the stack runs one shared Redis)`);
    return p;
  }

  /**
   * Starts a service (a region, a region's Redis or Postgres, the shared Redis) if it is not running, and waits
   * until it serves. A start that something outside the run kills (a signal the harness did not send: seen once
   * in CI, a SIGKILL of a region 1 s into its start, with the run's own faults elsewhere) is said and tried
   * once more, and counted in `outsideKills`: it is no fault of the service, and the run goes on to judge it.
   */
  async startService(service: string, timeoutMs = 60_000): Promise<void> {
    await startAgainIfKilledFromOutside(this.proc(service), () => this.startOnce(service, timeoutMs), (signal) => {
      this.outsideKills++;
      this.o.say(`${service} was ended by ${signal} while it started, a signal the harness did not send; starting it again`);
    });
  }

  /** Starts of a service that a signal from outside the run ended (see startService). */
  outsideKills = 0;

  private async startOnce(service: string, timeoutMs: number): Promise<void> {
    const p = this.proc(service);
    if (!p.running) p.start();
    const pg = /^postgres@(.+)$/.exec(service)?.[1];
    if (pg) return waitPostgres(p, this.host(pg).link.ns, timeoutMs);
    const region = /^redis@(.+)$/.exec(service)?.[1];
    if (service === REDIS_HOST) await waitRedis(p, this.redisUrl(), timeoutMs);
    else if (region) await waitRedis(p, this.redisUrl(region), timeoutMs);
    else await waitRegion(p, this.regionUrl(service), timeoutMs);
  }

  partition(host: string, mode: PartitionMode = 'link'): void {
    const h = this.host(host);
    if (h.partitioned) throw new Error(`${host} is already partitioned (${h.partitioned})`);
    h.partitioned = mode;
    if (mode === 'link') this.net.setLink(host, false);
    else this.pushDelays();
  }

  /**
   * Ends a host's partition. A host that is not partitioned is refused, saying which are: healing it did
   * nothing and answered ok, so an operator who typed the wrong host believed the right one healed.
   */
  heal(host: string): void {
    const h = this.host(host);
    const mode = h.partitioned;
    if (!mode) {
      const cut = [...this.hosts.values()].filter((x) => x.partitioned).map((x) => `${x.link.name} (${x.partitioned})`);
      throw new Error(`${host} is not partitioned: nothing to heal (${cut.length ? `partitioned: ${cut.join(', ')}` : 'no host is partitioned'})`);
    }
    h.partitioned = null;
    if (mode === 'link') this.net.setLink(host, true);
    else this.pushDelays();
  }

  /** SIGSTOP. A service that is down or already paused is refused, as a heal of a host not partitioned is. */
  pause(service: string): void {
    const state = this.state(service);
    if (state !== 'running') throw new Error(`${service} is ${state === 'down' ? 'down' : 'already paused'}: nothing to pause`);
    this.proc(service).pause();
  }

  /** SIGCONT. A service that is not paused is refused, saying what it is and which are paused. */
  resume(service: string): void {
    const state = this.state(service);
    if (state !== 'paused') {
      const paused = this.serviceNames.filter((n) => this.state(n) === 'paused');
      throw new Error(`${service} is not paused: it is ${state} (${paused.length ? `paused: ${paused.join(', ')}` : 'no service is paused'})`);
    }
    this.proc(service).resume();
  }

  /** Whether a service runs, is paused (SIGSTOP) or is down. */
  state(service: string): HostStatus['state'] {
    const p = this.proc(service);
    return !p.running ? 'down' : p.paused ? 'paused' : 'running';
  }

  /** kill -9 (or `signal`) of a region, a Redis or a Postgres; resolves when it has exited. */
  async kill(service: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.proc(service).stop(signal);
  }

  /** Stops the service if it runs (kill -9 unless `signal` says otherwise) and starts it again. */
  async restart(host: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.kill(host, signal);
    await this.startService(host);
  }

  isPartitioned(host: string): boolean {
    return this.host(host).partitioned !== null;
  }

  isRunning(service: string): boolean {
    return this.proc(service).running;
  }

  status(): HostStatus[] {
    return this.serviceNames.map((name) => {
      const h = this.host(/^redis@(.+)$/.exec(name)?.[1] ?? name);
      return {
        host: name,
        address: h.link.ip,
        delayMs: h.delayMs,
        pid: this.proc(name).pid ?? null,
        state: this.state(name),
        partitioned: h.partitioned,
      };
    });
  }

  /** Stops everything and removes every namespace, link and temp dir of this run. Synchronous. */
  teardown(): void {
    this.untrack();
    const t0 = Date.now();
    for (const h of this.hosts.values()) {
      h.service.signalSync('SIGKILL');
      h.redis?.signalSync('SIGKILL');
      // Immediate shutdown: Postgres stops its backends and releases its shared memory itself.
      h.postgres?.signalSync('SIGQUIT');
      h.agent.signalSync('SIGKILL');
      for (const p of [h.service, h.redis, h.postgres, h.agent]) p?.closeLog();
    }
    void this.idp?.close();
    this.net.destroy();
    this.o.say(`run ${this.runId} cleaned up in ${Date.now() - t0} ms`);
  }
}
