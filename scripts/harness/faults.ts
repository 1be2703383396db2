/**
 * The faults of the fault schedule, run against a Stack while the load runs:
 * - every ~killEvery (±25 %) kill -9 a random region that is up and not cut off, start it again
 *   restartAfter later (in the background, so kills keep their pace);
 * - once, partition one region for `partitionMs`;
 * - once, partition another region entirely for `isolateMs` (its link down: its clients, its own Redis and
 *   every other region are cut off from it);
 * - once, kill Redis (SIGKILL by default, so up to a second of its append-only file is lost) and start it
 *   again on the same data dir: with a Redis per region, one region's Redis; else the shared one.
 * - once, restart one region's Postgres (SIGINT: a fast shutdown, which ends every session; SIGQUIT: an
 *   immediate one, as a crash, recovered from the WAL at start) and start it again after a second: the
 *   region's pooled connections all die under it (see docs/operations.md, "Database restarts").
 * - at each of `stallAtMs` (or once a region is up, if none is), stall one region's database (its credential tables locked EXCLUSIVE by the
 *   harness: every write there, local or applied, waits) for `stallMs`, kill -9 the region and end its
 *   database sessions while it is stalled, end the lock and start the region again: whatever the region had answered, acked or XACKed
 *   for a transaction that had not committed is then gone (an acknowledgement before the commit).
 * `stop()` ends the schedule and brings everything back: heals, restarts what is down, waits until it serves.
 */
import { Client } from 'pg';
import { sleep } from './common';
import { REDIS_HOST, regionRedis, type PartitionMode, type Stack } from './stack';

/** What the schedule does to a stack (a test drives it over region processes of its own). */
export type FaultTarget = Pick<Stack, 'regionIds' | 'hostNames' | 'sharedRedis' | 'isRunning' | 'isPartitioned' | 'partition' | 'heal' | 'kill' | 'startService' | 'dbUrl'>;

export interface FaultOptions {
  killEveryMs: number;
  restartAfterMs: number;
  /** When (after the start) to partition a region, and for how long; 0 disables. */
  partitionAtMs: number;
  partitionMs: number;
  partitionMode: PartitionMode;
  /** When to partition a region entirely (link down), and for how long; 0 disables. */
  isolateAtMs: number;
  isolateMs: number;
  /** When to restart Redis (a region's own, or the shared one); null disables. */
  redisRestartAtMs: number | null;
  redisSignal: NodeJS.Signals;
  /** When to restart a region's Postgres; null disables. */
  postgresRestartAtMs: number | null;
  postgresSignal: NodeJS.Signals;
  /** When (after the start) to stall a region's database and kill the region meanwhile, and how long the stall lasts before the kill. */
  stallAtMs: number[];
  stallMs: number;
}

export interface FaultEvent {
  atMs: number;
  what: string;
}

export class FaultSchedule {
  private stopped = false;
  private started = 0;
  private readonly loops: Promise<void>[] = [];
  private readonly restarts = new Set<Promise<void>>();
  private readonly restarting = new Set<string>();
  readonly events: FaultEvent[] = [];
  kills = 0;
  partitions = 0;
  redisRestarts = 0;
  postgresRestarts = 0;
  /** Stalls of a region's database that ran (each with its kill -9 of the region). */
  stalls = 0;
  /** Each Postgres restart: the region, from its stop to when it accepted connections again (Date.now()). */
  readonly databaseOutages: Array<{ region: string; from: number; to: number }> = [];
  failures: string[] = [];

  constructor(
    private readonly stack: FaultTarget,
    private readonly o: FaultOptions,
    private readonly say: (msg: string) => void,
  ) {}

  start(): void {
    this.started = Date.now();
    this.loops.push(this.killer());
    if (this.o.partitionMs > 0) this.loops.push(this.at(this.o.partitionAtMs, () => this.partition(this.o.partitionMode, this.o.partitionMs)));
    if (this.o.isolateMs > 0) this.loops.push(this.at(this.o.isolateAtMs, () => this.partition('link', this.o.isolateMs)));
    if (this.o.redisRestartAtMs !== null) this.loops.push(this.at(this.o.redisRestartAtMs, () => this.restartRedis()));
    if (this.o.postgresRestartAtMs !== null) this.loops.push(this.at(this.o.postgresRestartAtMs, () => this.restartPostgres()));
    if (this.o.stallMs > 0) for (const t of this.o.stallAtMs) this.loops.push(this.at(t, () => this.stallAndKill()));
  }

  /** Ends the faults; resolves once every region and Redis is back, connected and serving. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
    await Promise.all([...this.restarts]);
    for (const host of this.stack.hostNames) {
      if (this.stack.isPartitioned(host)) {
        this.stack.heal(host);
        this.event(`heal ${host} (end of schedule)`);
      }
    }
    await Promise.all(
      this.stack.hostNames.filter((h) => !this.stack.isRunning(h)).map(async (h) => {
        await this.stack.startService(h);
        this.event(`start ${h} (end of schedule)`);
      }),
    );
  }

  private event(what: string): void {
    const atMs = Date.now() - this.started;
    this.events.push({ atMs, what });
    this.say(`t+${(atMs / 1000).toFixed(1)}s ${what}`);
  }

  /** Sleeps up to `ms`, waking early when the schedule stops; true if it stopped. */
  private async nap(ms: number): Promise<boolean> {
    const until = Date.now() + ms;
    while (!this.stopped && Date.now() < until) await sleep(Math.min(100, until - Date.now()));
    return this.stopped;
  }

  private async at(ms: number, fn: () => Promise<void>): Promise<void> {
    if (await this.nap(ms)) return;
    await fn().catch((err: Error) => this.fail(err.message));
  }

  private fail(message: string): void {
    this.failures.push(message);
    this.event(`FAILED: ${message}`);
  }

  private async killer(): Promise<void> {
    for (;;) {
      const wait = this.o.killEveryMs * (0.75 + Math.random() * 0.5);
      if (await this.nap(wait)) return;
      const candidates = this.stack.regionIds.filter((r) => this.stack.isRunning(r) && !this.stack.isPartitioned(r) && !this.restarting.has(r));
      const region = candidates[Math.floor(Math.random() * candidates.length)];
      if (!region) continue;
      // Marked before the kill's first await: a stall-and-kill choosing meanwhile must not take the same
      // region, or it kills the restart below during its start-up (a failed run, cc6 of 2026-12-05).
      this.restarting.add(region);
      await this.stack.kill(region);
      this.kills++;
      this.event(`kill -9 ${region}`);
      const restart = (async () => {
        await sleep(this.o.restartAfterMs);
        await this.stack.startService(region);
        this.event(`${region} is back`);
      })()
        .catch((err: Error) => this.fail(`restart of ${region}: ${err.message}`))
        .finally(() => {
          this.restarting.delete(region);
          this.restarts.delete(restart);
        });
      this.restarts.add(restart);
    }
  }

  private async partition(mode: PartitionMode, ms: number): Promise<void> {
    const free = this.stack.regionIds.filter((r) => !this.stack.isPartitioned(r));
    const candidates = free.filter((r) => !this.restarting.has(r));
    const region = candidates[Math.floor(Math.random() * candidates.length)] ?? free[0];
    if (!region) return;
    this.stack.partition(region, mode);
    this.partitions++;
    this.event(`partition (${mode === 'link' ? 'link: the whole region, its Redis included' : mode}) ${region} for ${ms / 1000} s`);
    await sleep(ms);
    this.stack.heal(region);
    this.event(`heal ${region}`);
  }

  /**
   * A region that is up, reachable and not being restarted, for a fault that needs one. The killer and the
   * partitions can leave none such at the fault's moment (two regions down, the third cut off): it waits for
   * one, as long as the killer's restarts take to bring a region back and more. None by then, or the schedule
   * ending first, fails the run: a stall that returned here unseen let a run pass with one fewer (a --short
   * run of 2026-12-07 had two of its three).
   */
  private async upRegion(fault: string): Promise<string | null> {
    const waitUntil = Date.now() + Math.max(15_000, 3 * this.o.restartAfterMs);
    for (;;) {
      const up = this.stack.regionIds.filter((r) => this.stack.isRunning(r) && !this.stack.isPartitioned(r) && !this.restarting.has(r));
      const region = up[Math.floor(Math.random() * up.length)];
      if (region) return region;
      if (Date.now() > waitUntil || (await this.nap(250))) {
        this.fail(`no region was up to ${fault}`);
        return null;
      }
    }
  }

  private async stallAndKill(): Promise<void> {
    const region = await this.upRegion('stall the database of');
    if (!region) return;
    this.restarting.add(region);
    try {
      const db = new Client({ connectionString: this.stack.dbUrl(region), connectionTimeoutMillis: 5000 });
      db.on('error', () => undefined);
      try {
        await db.connect();
        await db.query('BEGIN');
        await db.query('LOCK TABLE saml_provider_credentials, saml_credential_metadata IN EXCLUSIVE MODE');
        this.event(`database of ${region} stalled (credential tables locked) for ${this.o.stallMs / 1000} s`);
        await sleep(this.o.stallMs);
        await this.stack.kill(region);
        this.kills++;
        this.stalls++;
        // Its sessions end with it (as in a crash of its host): a transaction waiting on the lock, whose
        // COMMIT went with its statements, would otherwise commit once the lock goes, client or not.
        const ended = await db.query(
          "SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
        );
        this.event(`kill -9 ${region} and its ${String(ended.rows[0]?.n ?? 0)} database sessions while its database stalls`);
        await db.query('ROLLBACK');
      } finally {
        await db.end().catch(() => undefined);
      }
      await sleep(this.o.restartAfterMs);
      await this.stack.startService(region);
      this.event(`${region} is back`);
    } finally {
      this.restarting.delete(region);
    }
  }

  private async restartRedis(): Promise<void> {
    // With a Redis per region: one region's Redis, chosen among the regions that are up.
    const up = this.stack.regionIds.filter((r) => this.stack.isRunning(r));
    const target = this.stack.sharedRedis ? REDIS_HOST : regionRedis(up[Math.floor(Math.random() * up.length)] ?? this.stack.regionIds[0] ?? '');
    await this.stack.kill(target, this.o.redisSignal);
    this.event(`${target} stopped with ${this.o.redisSignal}`);
    await sleep(1000);
    await this.stack.startService(target);
    this.redisRestarts++;
    this.event(`${target} is back`);
  }

  private async restartPostgres(): Promise<void> {
    // A region that is up and reachable, so that its clients are served while its database goes away.
    // Not one being restarted, and the killer leaves it alone meanwhile (a region does not start without
    // its database).
    const region = await this.upRegion('restart the Postgres of');
    if (!region) return;
    this.restarting.add(region);
    const outage = { region, from: Date.now(), to: Number.MAX_SAFE_INTEGER };
    this.databaseOutages.push(outage);
    try {
      await this.stack.kill(`postgres@${region}`, this.o.postgresSignal);
      this.event(`postgres@${region} stopped with ${this.o.postgresSignal}`);
      await sleep(1000);
      await this.stack.startService(`postgres@${region}`);
    } finally {
      outage.to = Date.now();
      this.restarting.delete(region);
    }
    this.postgresRestarts++;
    this.event(`postgres@${region} is back`);
  }
}
