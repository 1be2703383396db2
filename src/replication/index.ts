/**
 * The replication module: the one place that knows the protocol. It wires the writer, the tracker, the
 * applier and the outbox relay. Each region has its own Redis (one Redis may serve them all): this
 * process reads its own region's inbox and tracker there, and writes into the other regions' Redis only
 * to deliver changes and to send acks back to their origins. Features only declare their tables.
 */
import os from 'node:os';
import { redisUrlOf, type Config } from '../config';
import type { Db } from '../db/client';
import type { Logger } from '../logger';
import { createRedis, replicationKeys, type Redis } from '../redis';
import { replicationAdminRoutes, replicationFigures } from './admin-routes';
import { Applier } from './applier';
import { Deliverer } from './delivery';
import { inFlightMs, WRITE_TX_TIMEOUT_MS } from './horizon';
import { createApplyPool } from './pg-tx';
import { AckSigning } from './ack-auth';
import { EventAuth } from './event-auth';
import { DEFAULT_MAX_CLOCK_SKEW_MS, HybridClock } from './hlc';
import { RedisLinks } from './links';
import { DEFAULT_ADOPT_AFTER_SECONDS, Departures } from './departures';
import { processConnectionName } from './connection-names';
import { Membership } from './membership';
import { OutboxRelay } from './relay';
import { PartSweep } from './parts';
import { Replicator } from './replicator';
import { RowStore } from './row-store';
import { DEFAULT_STREAM_MAX_LENGTH } from './stream';
import type { ReplicatedTable } from './tables';
import { Tracker } from './tracker';
import { DEFAULT_TOMBSTONE_COLLECTION, TombstoneCollector } from './tombstones';

export interface ReplicationOptions {
  config: Pick<
    Config,
    'redisUrl' | 'redisKeyPrefix' | 'regions' | 'region' | 'localRedisUrl' | 'maxClockSkewMs' | 'streamMaxLength' | 'streamTrimIntervalMs' | 'claimIntervalMs' | 'replicationPacks' | 'ackSignatures' | 'ackTtlSeconds' | 'replicationKeys' | 'tombstoneCollection' | 'adoptAfterSeconds' | 'writeTransactionTimeoutMs' | 'republishAfterMs'
  > &
    Partial<Pick<Config, 'configPath' | 'operatorEnv'>>;
  db: Db;
  log: Logger;
  tables: readonly ReplicatedTable[];
  /** Run the applier in this process (default true). */
  applier?: boolean;
  consumerName?: string;
}

/**
 * This process's connections to its region's Redis (commands, the tracker's subscription, the applier's
 * blocking reads) and its links to the other regions' Redis.
 */
function redisConnections(o: Pick<ReplicationOptions, 'config'>, region: string) {
  // Connection names (CLIENT LIST) carry the deployment's key prefix: `members remove` tells a running region
  // by them, and two deployments may share a Redis and region names (connection-names.ts).
  const name = processConnectionName(o.config.redisKeyPrefix, region);
  // Where the other regions reach this region's Redis (recorded in its membership entry), and where this
  // process does (the same unless REGION_REDIS_URL says otherwise).
  const sharedUrl = redisUrlOf(o.config, region);
  const ownUrl = o.config.localRedisUrl ?? sharedUrl;
  const redis = createRedis(ownUrl, `${name}:cmd`);
  const subscriber = createRedis(ownUrl, `${name}:sub`, { queueWhileOffline: true });
  const reader = createRedis(ownUrl, `${name}:reader`);
  const connections: Redis[] = [redis, subscriber, reader];
  const links = new RedisLinks({
    region, own: redis, name, defaultUrl: o.config.redisUrl,
    configured: new Map(o.config.regions.map((r) => [r.id, r.id === region ? ownUrl : redisUrlOf(o.config, r.id)])),
  });
  return { sharedUrl, redis, subscriber, reader, connections, links };
}

export async function createReplication(o: ReplicationOptions) {
  const region = o.config.region.id;
  const regions = o.config.regions.map((r) => r.id);
  const keys = replicationKeys(o.config.redisKeyPrefix);
  const { sharedUrl, redis, subscriber, reader, connections, links } = redisConnections(o, region);
  const store = await RowStore.load(o.db, o.tables);
  const clock = new HybridClock(region, Date.now, o.config.maxClockSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS);
  // Signs the events this region creates; verifies every event it applies (see event-auth.ts).
  const auth = new EventAuth(o.config.replicationKeys);
  const tracker = new Tracker(redis, subscriber, keys, region, o.log, 1000, o.config.ackTtlSeconds, new AckSigning(auth, o.config.ackSignatures));
  const { streamMaxLength, streamTrimIntervalMs, replicationPacks, republishAfterMs } = o.config;
  // The bound of this region's writes, which its watermark counts on (the collector's in-flight time).
  const writeTxBoundMs = o.config.writeTransactionTimeoutMs ?? WRITE_TX_TIMEOUT_MS;
  const deliverer = new Deliverer(keys, auth, streamMaxLength ?? DEFAULT_STREAM_MAX_LENGTH, replicationPacks ?? true);
  // The deployment's members (the record in this region's Redis united with this config), not this config's list
  // alone; the waits under way follow them (a region removed meanwhile is no longer waited for).
  const membership = new Membership({
    links, subscriber, keys, region, configured: regions, ownRedisUrl: sharedUrl, log: o.log, signing: tracker.signing,
    onChange: (members) => tracker.narrow(members),
  });
  // Whether this region may take over the work of regions removed from the deployment (departures.ts).
  const departures = new Departures({
    db: o.db, redis, inbox: keys.inbox(region), region, membership, log: o.log,
    graceMs: (o.config.adoptAfterSeconds ?? DEFAULT_ADOPT_AFTER_SECONDS) * 1000,
  });
  const repl = new Replicator({
    db: o.db, links, deliverer, store, clock, tracker, region, regions, membership, departures, log: o.log, auth, writeTxTimeoutMs: writeTxBoundMs,
  });
  const relay = new OutboxRelay({
    db: o.db, links, keys, tracker, region, regions, membership, log: o.log, streamMaxLength, trimIntervalMs: streamTrimIntervalMs, republishAfterMs, auth, deliverer,
  });
  const pool = o.applier === false ? null : createApplyPool(o.config.region.databaseUrl);
  const applier =
    pool === null
      ? null
      : new Applier({
          db: o.db, pool, reader, links, keys, store, clock, tracker, region, regions, membership, log: o.log,
          consumer: o.consumerName ?? `${region}@${os.hostname()}`, auth, claimEveryMs: o.config.claimIntervalMs,
          reseedCommand: o.config,
        });

  // Tombstones are collected by the processes that apply changes (see tombstones.ts).
  const tombstones =
    o.applier === false
      ? null
      : new TombstoneCollector({
          db: o.db, links, keys, region, regions, membership, store, tables: o.tables, log: o.log, signing: tracker.signing,
          options: { ...DEFAULT_TOMBSTONE_COLLECTION, ...o.config.tombstoneCollection }, inFlightMs: inFlightMs(writeTxBoundMs),
          parts: new PartSweep({ db: o.db, repl, store, tables: o.tables, log: o.log, pageSize: 500 }),
        });

  return {
    repl,
    tracker,
    relay,
    deliverer,
    applier,
    tombstones,
    keys,
    redis,
    links,
    membership,
    /** `db`: the client the operator routes read through (the region gives them a pool of their own). */
    adminRoutes: (db: Db = o.db) =>
      replicationAdminRoutes({ db, links, keys, tracker, relay, applier, tombstones, region, regions, membership, tables: o.tables, log: o.log, auth }),
    /** The in-memory part of GET /admin/replication (what the operator listener gets a copy of). */
    figures: () => replicationFigures({ links, tracker, relay, applier, tombstones, regions, membership, auth }),
    /** Per configured region, its Redis as this process reaches it. */
    redisUrls: Object.fromEntries(regions.map((r) => [r, links.urlOf(r)])),
    async start() {
      // Subscribing waits for Redis; do not hold the region's start-up hostage to a Redis outage.
      void tracker.start().catch((err: Error) => o.log.error({ err: err.message }, 'tracker subscription failed'));
      membership.start();
      relay.start();
      applier?.start();
      tombstones?.start();
    },
    /**
     * Waits up to `waitMs` for the applier's start check (restore-check.ts); true once it has run, or when this
     * process runs no applier (the check is an applier's). Logs a warning when it has not.
     */
    async startChecked(waitMs: number): Promise<boolean> {
      if (!applier || (await applier.checkedAtStart(waitMs))) return true;
      o.log.warn(
        { waited_ms: waitMs },
        "this region's start check (whether its database was restored from a backup or replaced) has not run yet: it needs the region's Redis and database, and one of them does not answer. Serving meanwhile; the check runs once they answer (start_check in GET /admin/replication)",
      );
      return false;
    },
    /** Stops background work, publishing what the outbox still holds if Redis lets us. */
    async stop() {
      membership.stop();
      await tombstones?.stop();
      await applier?.stop();
      await repl.flushPublished();
      await relay.stop();
      await relay.publishPending(0).catch(() => 0);
      links.disconnect();
      for (const c of connections) c.disconnect();
      await pool?.end().catch(() => undefined);
    },
  };
}

export type Replication = Awaited<ReturnType<typeof createReplication>>;
