/**
 * The replication module: the one place that knows the protocol. It wires the writer, the tracker, the
 * applier and the outbox relay over one Redis deployment. Features only declare their tables.
 */
import os from 'node:os';
import type { Config } from '../config';
import type { Db } from '../db/client';
import type { Logger } from '../logger';
import { createRedis, replicationKeys, type Redis } from '../redis';
import { replicationAdminRoutes } from './admin-routes';
import { Applier } from './applier';
import { EventAuth } from './event-auth';
import { DEFAULT_MAX_CLOCK_SKEW_MS, HybridClock } from './hlc';
import { Membership } from './membership';
import { OutboxRelay } from './relay';
import { Replicator } from './replicator';
import { RowStore } from './row-store';
import type { ReplicatedTable } from './tables';
import { Tracker } from './tracker';
import { DEFAULT_TOMBSTONE_COLLECTION, TombstoneCollector } from './tombstones';

export interface ReplicationOptions {
  config: Pick<Config, 'redisUrl' | 'redisKeyPrefix' | 'regions' | 'region' | 'maxClockSkewMs' | 'streamMaxLength' | 'ackTtlSeconds' | 'replicationKeys' | 'tombstoneCollection'>;
  db: Db;
  log: Logger;
  tables: readonly ReplicatedTable[];
  /** Run the applier in this process (default true). */
  applier?: boolean;
  consumerName?: string;
}

export async function createReplication(o: ReplicationOptions) {
  const region = o.config.region.id;
  const regions = o.config.regions.map((r) => r.id);
  const keys = replicationKeys(o.config.redisKeyPrefix);
  const name = `${region}:${process.pid}`;
  const redis = createRedis(o.config.redisUrl, `${name}:cmd`);
  const subscriber = createRedis(o.config.redisUrl, `${name}:sub`, { queueWhileOffline: true });
  const reader = createRedis(o.config.redisUrl, `${name}:reader`);
  const connections: Redis[] = [redis, subscriber, reader];
  const store = await RowStore.load(o.db, o.tables);
  const clock = new HybridClock(region, Date.now, o.config.maxClockSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS);
  const tracker = new Tracker(redis, subscriber, keys, o.log, 1000, o.config.ackTtlSeconds);
  const { streamMaxLength } = o.config;
  // Signs the events this region creates; verifies every event it applies (see event-auth.ts).
  const auth = new EventAuth(o.config.replicationKeys);
  // The deployment's members (Redis record united with this config), not this config's list alone.
  const membership = new Membership({ redis, subscriber, keys, region, configured: regions, log: o.log });
  const repl = new Replicator({ db: o.db, redis, keys, store, clock, tracker, region, regions, membership, log: o.log, streamMaxLength, auth });
  const relay = new OutboxRelay({ db: o.db, redis, keys, tracker, region, regions, membership, log: o.log, streamMaxLength, auth });
  const applier =
    o.applier === false
      ? null
      : new Applier({
          db: o.db, reader, redis, keys, store, clock, tracker, region, regions, membership, log: o.log,
          consumer: o.consumerName ?? `${region}@${os.hostname()}`, auth,
        });

  // Tombstones are collected by the processes that apply changes (see tombstones.ts).
  const tombstones =
    o.applier === false
      ? null
      : new TombstoneCollector({
          db: o.db, redis, keys, region, regions, membership, store, tables: o.tables, log: o.log,
          options: { ...DEFAULT_TOMBSTONE_COLLECTION, ...o.config.tombstoneCollection },
        });

  return {
    repl,
    tracker,
    relay,
    applier,
    tombstones,
    keys,
    redis,
    membership,
    /** `db`: the client the operator routes read through (the region gives them a pool of their own). */
    adminRoutes: (db: Db = o.db) =>
      replicationAdminRoutes({ db, redis, keys, tracker, relay, applier, tombstones, region, regions, membership, tables: o.tables }),
    async start() {
      // Subscribing waits for Redis; do not hold the region's start-up hostage to a Redis outage.
      void tracker.start().catch((err: Error) => o.log.error({ err: err.message }, 'tracker subscription failed'));
      membership.start();
      relay.start();
      applier?.start();
      tombstones?.start();
    },
    /** Stops background work, publishing what the outbox still holds if Redis lets us. */
    async stop() {
      membership.stop();
      await tombstones?.stop();
      await applier?.stop();
      await repl.flushPublished();
      await relay.stop();
      await relay.publishPending(0).catch(() => 0);
      for (const c of connections) c.disconnect();
    },
  };
}

export type Replication = Awaited<ReturnType<typeof createReplication>>;
