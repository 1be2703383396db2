/** What the main thread and the operator listener's thread (src/operator) exchange. */
import type { ReplicationFigures } from '../replication/admin-routes';

/** The operator listener's database pool for /admin/replication's reads (/readyz reads on one of its own: src/db/reader-pool.ts). */
export const OPERATOR_POOL_SIZE = 2;
/** How often the main thread publishes its in-memory figures to the operator listener. */
export const SNAPSHOT_INTERVAL_MS = 250;
/**
 * The operator port's /healthz answers 503 (`stalled`) once the main thread has published nothing for this
 * long: its event loop is stuck, and a liveness probe on the operator port must not hide that.
 */
export const STALLED_AFTER_MS = 30_000;

/** The main thread's in-memory figures, as of `at`. */
export interface OperatorSnapshot {
  at: number;
  /** ioredis' status of the main thread's command connection to its own Redis. */
  redisStatus: string;
  replication: ReplicationFigures;
  /** The `admission` block of /admin/replication; null when the region runs without admission control. */
  admission: Record<string, unknown> | null;
  /** The region drains after SIGTERM: /readyz answers 503 here too, while this port still answers. */
  draining: boolean;
  /** The region's own port listens (false until then: /readyz answers 503 here, `starting`). */
  serving: boolean;
}

export interface OperatorWorkerData {
  region: string;
  host: string;
  port: number;
  databaseUrl: string;
  /** Per configured region, its Redis as this process reaches it. */
  redisUrls: Record<string, string>;
  defaultRedisUrl: string;
  keyPrefix: string;
  /** ADMIN_TOKEN first, then ADMIN_TOKEN_ACCEPTED's. */
  adminTokens: string[];
  logLevel: string;
  /** STALLED_AFTER_MS unless given (tests). */
  stalledAfterMs?: number;
}

export type ToWorker = { type: 'snapshot'; snapshot: OperatorSnapshot } | { type: 'stop' };
export type FromWorker = { type: 'listening'; port: number };
