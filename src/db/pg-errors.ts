/** The Postgres SQLSTATE of an error from a raw query (through the Prisma pg adapter, or pg itself), if it has one. */
export function pgCode(err: unknown): string | null {
  const cause = (err as { meta?: { driverAdapterError?: { cause?: { originalCode?: string; code?: string } } } }).meta?.driverAdapterError?.cause;
  const own = (err as { code?: unknown } | undefined)?.code;
  return cause?.originalCode ?? cause?.code ?? /Code: `(\w{5})`/.exec(String((err as Error | undefined)?.message))?.[1] ??
    (typeof own === 'string' && /^[0-9A-Z]{5}$/.test(own) ? own : null);
}

/**
 * Errors that say "try again", not "this is wrong": deadlock, serialization failure, lock timeout. (The
 * applier still counts a lock timeout against a change applied alone while others commit: ApplyTimeouts.canceledOwn, apply-timeouts.ts.)
 */
export function isTransient(err: unknown): boolean {
  return ['40P01', '40001', '55P03'].includes(pgCode(err) ?? '');
}

/** Errors of opening a connection to Postgres from the pg pool itself: the server is not there. */
const CONNECT_ERRNOS = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);
/**
 * SQLSTATEs Postgres refuses a new connection with: too many connections, starting up or shutting down, no
 * such database, authentication. (55000 only with its wording: the same code is raised by statements too.)
 */
const REFUSED_CONNECT_CODES = new Set(['53300', '57P03', '3D000', '28000', '28P01']);
/** The Prisma pg adapter's kinds for the same. */
const REFUSED_CONNECT_KINDS = new Set(['DatabaseNotReachable', 'DatabaseDoesNotExist', 'TooManyConnections', 'AuthenticationFailed', 'DatabaseAccessDenied']);

/**
 * The database refused or could not be reached when a connection was being opened: no statement of the
 * request ran on it, so nothing it asked for was done. (A connection lost in the middle of a transaction is
 * not this: its COMMIT may have gone through.)
 */
export function isConnectRefused(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown; meta?: { driverAdapterError?: { cause?: { kind?: string } } } } | null | undefined;
  if (typeof e?.code === 'string' && CONNECT_ERRNOS.has(e.code)) return true;
  if (REFUSED_CONNECT_KINDS.has(e?.meta?.driverAdapterError?.cause?.kind ?? '')) return true;
  const code = pgCode(err);
  if (code !== null && REFUSED_CONNECT_CODES.has(code)) return true;
  if (/Connection terminated due to connection timeout/.test(String(e?.message))) return true; // pg's connectionTimeoutMillis
  return code === '55000' && /is not currently accepting connections/.test(String(e?.message));
}

/**
 * The region's database does not exist (dropped, or the URL names another): unlike a refusal, it does not
 * come back by itself; the region's start creates and migrates it.
 */
export function isDatabaseMissing(err: unknown): boolean {
  const kind = (err as { meta?: { driverAdapterError?: { cause?: { kind?: string } } } } | null | undefined)?.meta?.driverAdapterError?.cause?.kind;
  return kind === 'DatabaseDoesNotExist' || pgCode(err) === '3D000';
}

/**
 * The database lacks the service's tables (42P01): created again empty under a running region, say. A build's
 * statements name only tables its migrations create, so a region's start (which migrates) mends it. Also a
 * replicated table without its replication columns (replication/table-sql.ts, by name: SchemaMissing).
 */
export function isSchemaMissing(err: unknown): boolean {
  return pgCode(err) === '42P01' || (err as Error | null)?.name === 'SchemaMissing';
}

/**
 * SQLSTATEs of a session the server ended (an administrator's pg_terminate_backend, a shutdown, another
 * backend's crash) and of a connection that failed: the statement under way did not finish on it.
 */
const LOST_CODES = new Set(['57P01', '57P02', '57P05', '08000', '08003', '08006']);
/**
 * node-postgres's own wording when the socket closed with no error from the server first. Not its
 * "Connection terminated due to connection timeout": that one is of opening a connection (isConnectRefused).
 */
const LOST_WORDING = /\bConnection terminated(?! due to connection timeout)\b|Client has encountered a connection error and is not queryable|Client was closed and is not queryable/;

/**
 * The connection a statement ran on was lost under it (the database restarted, or ended the session):
 * unlike isConnectRefused, the statement may have started, and a COMMIT sent with it may have gone
 * through. A read can be run again on another connection (see retryingReads); a write cannot be told
 * "nothing was done" without finding out (see Replicator.write).
 */
export function isConnectionLost(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown; meta?: { driverAdapterError?: { cause?: { kind?: string } } } } | null | undefined;
  if ((err as Error | null)?.name === 'ConnectionLost') return true; // replication/pg-tx.ts
  if (e?.code === 'ECONNRESET' || e?.code === 'EPIPE' || e?.code === 'P1017') return true;
  const kind = e?.meta?.driverAdapterError?.cause?.kind;
  if (kind === 'ConnectionClosed' || kind === 'SocketTimeout') return true;
  // A socket that timed out while open (keepalive, retransmissions), not one that never connected.
  if (e?.code === 'ETIMEDOUT' && ['read', 'write'].includes(String((err as { syscall?: unknown }).syscall))) return true;
  if (LOST_CODES.has(pgCode(err) ?? '')) return true;
  return LOST_WORDING.test(String(e?.message ?? ''));
}

/**
 * SQLSTATEs of the database's trouble rather than the statement's: a connection failed or was ended, a
 * system (I/O) error, the disk full, too many connections, no such database, authentication. Not 53200
 * (out of memory, or of shared memory for locks) nor 53400 (a configured limit): a statement can cause those
 * itself (a batch taking too many locks), and one run alone may go through.
 */
const SERVER_TROUBLE = /^(08|57P0[1-5]|58|53100|53300|3D000|28)/;

/**
 * The database's trouble, not the statement's: it could not be reached or refused a connection
 * (isConnectRefused), ended the session under it (isConnectionLost), refused the statement for its own state
 * (databaseRefusal: read-only, canceled), or reported a SERVER_TROUBLE code.
 * Says nothing about what was asked of it, so nothing may be counted against that (the applier's
 * failures). An error the server reported is judged by its SQLSTATE alone: its message may quote a value
 * that reads like a lost connection.
 */
export function isDatabaseTrouble(err: unknown): boolean {
  // Read-only, or a statement canceled (a statement_timeout under a lock or load, pg_cancel_backend): the
  // database's state too. Counted, MAX_FAILURES of them parked good changes as apply-failed. (The applier
  // still counts a cancellation against a change applied alone while others commit: ApplyTimeouts.canceledOwn, apply-timeouts.ts.)
  if (databaseRefusal(err) !== null) return true;
  const code = pgCode(err);
  if ((err as { severity?: unknown } | null)?.severity !== undefined && code !== null) return SERVER_TROUBLE.test(code) || isConnectRefused(err);
  return isConnectRefused(err) || isConnectionLost(err);
}

/**
 * Why the database refused a statement for its own state rather than for what the statement asked: it is
 * read-only (a standby after a failover, or `default_transaction_read_only` set by an operator), it could not
 * write (the disk full, an I/O error), or it canceled the statement (its `statement_timeout`, an
 * administrator's `pg_cancel_backend`). The statement's transaction was rolled back. Null for any other error.
 */
export type DatabaseRefusal = 'read-only' | 'cannot-write' | 'canceled';

const REFUSALS: Record<string, DatabaseRefusal> = {
  '25006': 'read-only',
  '53100': 'cannot-write',
  '58030': 'cannot-write',
  '57014': 'canceled',
};

export function databaseRefusal(err: unknown): DatabaseRefusal | null {
  return REFUSALS[pgCode(err) ?? ''] ?? null;
}
