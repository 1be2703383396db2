import type { Router } from 'express';
import type { Registry } from 'prom-client';
import type { Config } from './config';
import type { Db } from './db/client';
import type { Logger } from './logger';
import type { Operation } from './openapi/operation';
import type { Redis } from './redis';
import type { Replicator } from './replication/replicator';
import type { ReplicatedTable } from './replication/tables';

/** What a feature gets to build its routes and background jobs. */
export interface FeatureDeps {
  config: Config;
  db: Db;
  repl: Replicator;
  log: Logger;
  /** The deployment's shared Redis (fail-fast command connection), for short-lived state with a TTL. */
  redis: Redis;
}

/** A capability of the service: the tables it replicates, its HTTP routes, and optional background work. */
export interface Feature {
  name: string;
  tables: readonly ReplicatedTable[];
  /** Routes of the public API, rendered in the feature's own dialect. */
  routes?(deps: FeatureDeps): Router;
  /** Routes under /admin (they run behind the admin token). */
  adminRoutes?(deps: FeatureDeps): Router;
  /**
   * Pages that hold no data, served without the admin token (their scripts send it to fetch data). Their
   * paths are under /admin/ or /openapi.json: only those reach them (UNGATED in app.ts).
   */
  pages?(deps: FeatureDeps): Router;
  /** Starts background work; returns its stop function. */
  start?(deps: FeatureDeps): () => Promise<void>;
  /** Registers the feature's metric families in the region's registry (read at scrape time). */
  metrics?(deps: FeatureDeps, registry: Registry): void;
  /** The OpenAPI operations of the feature's routes (GET /openapi.json collects them; the tests check every answer against them). */
  operations?: readonly Operation[];
}
