import { createHash } from 'node:crypto';
import Redis from 'ioredis';

export type { Redis };

/**
 * A command connection that fails fast while Redis is unreachable instead of queueing: callers on the
 * write path must not hang on Redis (the outbox relay publishes later), and readers retry in their loops.
 */
export function createRedis(url: string, name: string, opts: { queueWhileOffline?: boolean; commandTimeoutMs?: number } = {}): Redis {
  const client = new Redis(url, {
    connectionName: name,
    enableOfflineQueue: opts.queueWhileOffline ?? false,
    maxRetriesPerRequest: opts.queueWhileOffline ? null : 1,
    retryStrategy: (attempt) => Math.min(100 * attempt, 1000),
    connectTimeout: 2000,
    // A Redis behind a partition does not refuse commands, it never answers them: bound the wait.
    ...(opts.commandTimeoutMs ? { commandTimeout: opts.commandTimeoutMs } : {}),
  });
  // Connection errors are expected during a Redis outage; the loops that use the client report them.
  client.on('error', () => undefined);
  return client;
}

/**
 * A Lua script run by its hash (EVALSHA); a Redis that does not hold it (new, restarted, its scripts flushed
 * or evicted) gets it whole (EVAL, which caches it there again).
 */
export function luaScript(text: string): (redis: Redis, keys: readonly string[], args: readonly (string | number)[]) => Promise<unknown> {
  const sha = createHash('sha1').update(text).digest('hex');
  return async (redis, keys, args) => {
    try {
      return await redis.evalsha(sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!/NOSCRIPT/.test(String((err as Error).message))) throw err;
      return redis.eval(text, keys.length, ...keys, ...args);
    }
  };
}

/**
 * Replication keys of one deployment. Each region has its own Redis (one Redis may also serve them all):
 * its inbox stream lives there, and so do the ack records of the changes it originated. The {repl} hash
 * tag keeps a Redis's keys in one Redis Cluster slot.
 */
export function replicationKeys(prefix: string) {
  return {
    /** A region's inbox: the changes every other region delivers to it, in that region's Redis. */
    inbox: (region: string) => `${prefix}{repl}:changes:${region}`,
    deadLetter: `${prefix}{repl}:dead-letter`,
    /** The first entry id of this incarnation of a region's inbox (see relay-trim.ts markBorn: trimmed or lost?). */
    inboxBorn: (region: string) => `${prefix}{repl}:changes-born:${region}`,
    /**
     * In an origin's Redis: the last id of `region`'s inbox when this Redis first held the origin's acks of
     * deliveries there (set if absent): deliveries up to it may have had their acks in a Redis since lost.
     */
    acksBornAt: (region: string) => `${prefix}{repl}:acks-born:${region}`,
    ack: (changeId: string) => `${prefix}{repl}:ack:${changeId}`,
    /**
     * In an origin's Redis: "<change id> <region>" of its changes a region applied on a retry after parking
     * them, for the origin's relay to copy that ack into the delivery it confirmed as parked (relay-confirm.ts unparked).
     */
    unparked: (origin: string) => `${prefix}{repl}:unparked:${origin}`,
    /**
     * Where the acks of an origin's changes are announced: one channel per origin, so that where regions
     * share a Redis each announcement wakes only the processes of the region waiting on it.
     */
    ackChannel: (origin: string) => `${prefix}{repl}:acks:${origin}`,
    /** The one channel every ack was announced on before that (versions up to 2026-12-01): still heard. */
    sharedAckChannel: `${prefix}{repl}:acks`,
    /** The deployment's members (see replication/membership.ts) and the channel announcing changes. */
    members: `${prefix}{repl}:members`,
    membersChannel: `${prefix}{repl}:members-changed`,
    /**
     * Regions removed from the deployment (`npm run members -- remove`): region -> when. A positive record,
     * so that a region is taken for gone only when an operator said so (see replication/departures.ts).
     */
    departed: `${prefix}{repl}:departed`,
    /**
     * Per member, the removals its processes know (a JSON array of regions, sorted): a region adopts a removed
     * region's work only alongside members that know of the removal too (see replication/departures.ts).
     */
    departedKnown: `${prefix}{repl}:departed-known`,
    /**
     * In a region's own Redis: per origin, how many of its events the region's database has counted as
     * applied (replication_progress), as last written: a database found behind it was restored from a
     * backup (see replication/restore-check.ts).
     */
    appliedMark: (region: string) => `${prefix}{repl}:applied-mark:${region}`,
    /**
     * In a region's own Redis: the identity of the database the region last ran on (the id of its first
     * migration's record): a region started on another one (its database dropped and created again) lacks
     * every row (see replication/restore-check.ts).
     */
    databaseIdentity: (region: string) => `${prefix}{repl}:database-identity:${region}`,
    /**
     * In a region's own Redis: the highest id of its outbox rows its database had committed, as its relay last
     * recorded it (replication_outbox_mark): a database found below it was set back, and lost changes the region
     * made itself (see replication/restore-check.ts).
     */
    outboxMark: (region: string) => `${prefix}{repl}:outbox-mark:${region}`,
    /** Each member's watermark for the tombstone horizon (see replication/horizon.ts). */
    watermarks: `${prefix}{repl}:watermarks`,
  };
}
export type ReplicationKeys = ReturnType<typeof replicationKeys>;

/** Deletes every key under `prefix` in the Redis at `url` (SCAN, then UNLINK a page at a time): test and bench clean-up. */
export async function deleteKeysWithPrefix(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length) await redis.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

/**
 * How long a Redis (the region's own, or one it delivers into) fails to answer before that is a warning: a
 * shorter failure (a Redis restarting, a connection still connecting on its first use) is a debug line.
 */
export const REDIS_OUTAGE_WARN_MS = 2000;

/**
 * An error of a Redis command as an operator reads it: ioredis refuses commands while it has no connection
 * (no offline queue) with a message about its own options; said here as what it means.
 */
export function redisProblem(err: Error): string {
  if (/Stream isn't writeable|Connection is closed|max retries per request/.test(err.message)) return 'not connected (refused, closed, or still connecting)';
  return /Command timed out/.test(err.message) ? 'did not answer in time (hung, or cut off)' : err.message;
}
