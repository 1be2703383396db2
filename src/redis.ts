import Redis from 'ioredis';

export type { Redis };

/**
 * A command connection that fails fast while Redis is unreachable instead of queueing: callers on the
 * write path must not hang on Redis (the outbox relay publishes later), and readers retry in their loops.
 */
export function createRedis(url: string, name: string, opts: { queueWhileOffline?: boolean } = {}): Redis {
  const client = new Redis(url, {
    connectionName: name,
    enableOfflineQueue: opts.queueWhileOffline ?? false,
    maxRetriesPerRequest: opts.queueWhileOffline ? null : 1,
    retryStrategy: (attempt) => Math.min(100 * attempt, 1000),
    connectTimeout: 2000,
  });
  // Connection errors are expected during a Redis outage; the loops that use the client report them.
  client.on('error', () => undefined);
  return client;
}

/** Keys shared by the regions of one deployment. The {repl} hash tag keeps them in one Redis Cluster slot. */
export function replicationKeys(prefix: string) {
  return {
    stream: `${prefix}{repl}:changes`,
    deadLetter: `${prefix}{repl}:dead-letter`,
    /** The first entry id of this incarnation of the stream (see relay.ts: trimmed or lost?). */
    streamBorn: `${prefix}{repl}:stream-born`,
    ack: (changeId: string) => `${prefix}{repl}:ack:${changeId}`,
    ackChannel: `${prefix}{repl}:acks`,
    /** The deployment's members (see replication/membership.ts) and the channel announcing changes. */
    members: `${prefix}{repl}:members`,
    membersChannel: `${prefix}{repl}:members-changed`,
    /** Each member's watermark for the tombstone horizon (see replication/horizon.ts). */
    watermarks: `${prefix}{repl}:watermarks`,
  };
}
export type ReplicationKeys = ReturnType<typeof replicationKeys>;
