/**
 * Readiness (GET /readyz): a region is ready to take traffic when its database answers, takes writes (not a
 * standby or set read-only: every write would then fail) and carries every migration this build knows. Redis is reported but does not count: without it a region still serves
 * reads and local_region writes (the outbox holds them), only all_regions writes wait. A region that is
 * draining (SIGTERM) is not ready: its port takes no new connections, and a probe that still read it as ready
 * (the operator port's, which answers until the drain ends) would keep traffic coming to it. Nor is a region
 * whose main thread is stuck (the operator port's view: it published no figures for 30 s): that port's thread
 * still answers, and a readiness probe there would keep a frozen region in service. Nor is a region that is a
 * joining member (added to a running deployment, restored from a backup, or found with changes trimmed from its
 * inbox unread) while another member is active: it lacks changes until it is re-seeded (npm run reseed, which
 * reaches its database and Redis, not its port), and would answer 404 for credentials its peers hold. When no
 * other member is active (every database restored, say) it stays ready, saying `joining`: serving what it holds
 * beats every region refusing traffic. Nor, on the operator port (which listens first), is a region whose own
 * port does not listen yet (its start check can wait up to 10 s for its Redis).
 */
import type { SqlReader } from '../db/client';
import { listMigrations } from '../db/migrate';
import { isDatabaseMissing } from '../db/pg-errors';
import { withTimeout } from '../db/timeout';
import type { Logger } from '../logger';

export interface ReadinessReport {
  ready: boolean;
  database: 'ok' | 'read-only' | 'unreachable' | 'missing';
  /** Migrations this build has that the database has not applied (null when the database is unreachable). */
  missing_migrations: string[] | null;
  redis: { reachable: boolean; status: string };
  /** Present (true) only while the region drains after SIGTERM: not ready, whatever the database says. */
  draining?: true;
  /** Present (true) only on the operator port, while the region's main thread is stalled: not ready either. */
  stalled?: true;
  /** Present (true) only while the region is a joining member (needs its re-seed): not ready if another member is active. */
  joining?: true;
  /** Present (true) only on the operator port, until the region's own port listens: not ready either. */
  starting?: true;
}

const DEFAULT_TIMEOUT_MS = 2000;

export interface Joining {
  /** The region is a joining member (needs_reseed). */
  joining: boolean;
  /** Another member is active (counted so: its entry verifies where entries are signed). */
  othersActive: boolean;
}
const NOT_JOINING: Joining = { joining: false, othersActive: false };

/** `region`'s Joining, from the in-memory replication figures (the main thread's, or the operator port's copy). */
export function joiningOf(figures: { joining: readonly string[]; members: readonly { region: string; state: string; verified: boolean | null }[] }, region: string): Joining {
  const joining = figures.joining.includes(region);
  return { joining, othersActive: joining && figures.members.some((m) => m.region !== region && m.state === 'active' && m.verified !== false) };
}

export function createReadiness(d: {
  db: SqlReader;
  redisStatus: () => string;
  log: Logger;
  timeoutMs?: number;
  /** Whether the region is draining (default: never). */
  draining?: () => boolean;
  /** Whether the region's main thread is stalled (the operator port's view; default: never). */
  stalled?: () => boolean;
  /** Whether the region is a joining member, not yet re-seeded, and whether another member is active (undefined, the default: not joining). */
  joining?: () => Joining | undefined;
  /** Whether the region's own port does not listen yet (the operator port's view; default: never). */
  starting?: () => boolean;
}): () => Promise<ReadinessReport> {
  // The migrations of this build are fixed for the life of the process.
  const expected = listMigrations().map((m) => m.name);
  return async () => {
    const status = d.redisStatus();
    const redis = { reachable: status === 'ready', status };
    const report = await databaseReport(d.db, expected, d.timeoutMs ?? DEFAULT_TIMEOUT_MS, d.log);
    const draining = d.draining?.() === true;
    // Asked after the database's answer: a main thread that stalled meanwhile is reported.
    const stalled = d.stalled?.() === true;
    const joining = d.joining?.() ?? NOT_JOINING;
    const starting = d.starting?.() === true;
    const held = draining || stalled || starting || (joining.joining && joining.othersActive);
    return {
      ...report, ready: report.ready && !held, redis,
      ...(draining ? { draining: true as const } : {}), ...(stalled ? { stalled: true as const } : {}), ...(joining.joining ? { joining: true as const } : {}),
      ...(starting ? { starting: true as const } : {}),
    };
  };
}

async function databaseReport(
  db: SqlReader,
  expected: readonly string[],
  timeoutMs: number,
  log: Logger,
): Promise<Pick<ReadinessReport, 'ready' | 'database' | 'missing_migrations'>> {
  try {
    // One after the other: on the operator listener's pool of two, a probe must not hold both connections.
    const [readOnly, missing] = await withTimeout((async () => [await readOnlyDatabase(db), await missingMigrations(db, expected)] as const)(), timeoutMs);
    return { ready: missing.length === 0 && !readOnly, database: readOnly ? 'read-only' : 'ok', missing_migrations: missing };
  } catch (err) {
    // The reason stays in the log: /readyz needs no credentials and must not describe the database.
    log.warn({ err: (err as Error).message }, 'readiness: the database does not answer');
    // A database that does not exist (dropped) does not come back by itself: said apart, so that an operator
    // restarts the region (which creates it) rather than waiting for Postgres.
    return { ready: false, database: isDatabaseMissing(err) ? 'missing' : 'unreachable', missing_migrations: null };
  }
}

async function missingMigrations(db: SqlReader, expected: readonly string[]): Promise<string[]> {
  const applied = await db
    .$queryRawUnsafe<{ migration_name: string }[]>(
      'SELECT migration_name FROM "_prisma_migrations" WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL',
    )
    .catch((err: Error & { code?: string; meta?: { code?: string } }) => {
      // No migrations table yet: the database answers, nothing is applied.
      if (/_prisma_migrations.*does not exist|42P01/.test(`${err.message} ${err.meta?.code ?? ''}`)) return [];
      throw err;
    });
  const done = new Set(applied.map((r) => r.migration_name));
  return expected.filter((name) => !done.has(name));
}

/**
 * Whether a new transaction of this session would be read-only: a hot standby (after a failover that left
 * the region on one), or `default_transaction_read_only` set by an operator (a full disk's usual first aid).
 */
async function readOnlyDatabase(db: SqlReader): Promise<boolean> {
  const [row] = await db.$queryRawUnsafe<{ ro: boolean }[]>("SELECT pg_is_in_recovery() OR current_setting('default_transaction_read_only') = 'on' AS ro");
  return row?.ro === true;
}
