/**
 * Whether the Redis servers an operator command needs can be reached, asked once each before the command does
 * anything. The command's own connections retry and queue (a Redis restarting must not fail a re-seed), so a
 * Redis that refuses connections (nothing listening, a wrong port) or a URL naming no host surfaced only as
 * "Command timed out" after their commands' bound: here it is named at once, with what to check.
 */
import Redis from 'ioredis';
import { redisUrlOf } from './config';
import { CONNECTION_REFUSED } from './connection-refused';
import type { ConfigFile } from './config-schema';
import { withoutCredentials } from './replication/links';

/** How long one Redis may take to connect and answer PING. */
export const REACH_TIMEOUT_MS = 2000;

/** A Redis an operator command needs could not be reached: exit 1 (not a usage mistake; try again once it is up). */
export class RedisUnreachable extends Error {}

/** Why the Redis at `url` cannot be reached, as an operator reads it; null when it answers PING. */
export async function redisReachProblem(url: string, timeoutMs = REACH_TIMEOUT_MS): Promise<string | null> {
  // One attempt, no retry, no queue: the question is whether it answers now.
  const client = new Redis(url, {
    lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null,
    connectTimeout: timeoutMs, commandTimeout: timeoutMs, connectionName: `reach:${process.pid}`,
  });
  // The socket's error comes as an event; connect() then only says the connection closed.
  let first: (Error & { code?: string }) | undefined;
  client.on('error', (err: Error) => {
    first ??= err;
  });
  try {
    await client.connect();
    await client.ping();
    return null;
  } catch (err) {
    return reachProblem(first ?? (err as Error), timeoutMs);
  } finally {
    // Not once it ended on its own: disconnect() then held the process open for 2 s more.
    if (client.status !== 'end') client.disconnect();
  }
}

function reachProblem(err: Error & { code?: string }, timeoutMs: number): string {
  switch (err.code) {
    case 'ECONNREFUSED':
      return CONNECTION_REFUSED;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'its host name does not resolve';
    case 'ETIMEDOUT':
      return `no connection within ${timeoutMs / 1000} s (its host is down or a firewall drops the connection; or the URL says rediss:// to a Redis without TLS)`;
    default:
  }
  if (/WRONGPASS|NOAUTH|invalid password|invalid username/i.test(err.message)) return `it refused the credentials (${err.message.split('\n')[0]})`;
  if (/Protocol error/.test(err.message)) return 'what answers there is not a Redis (it does not speak the Redis protocol)';
  if (/Connection is closed/.test(err.message)) return 'the connection was closed before Redis answered (what listens there may not be a Redis)';
  if (/Command timed out/.test(err.message)) return `no answer to PING within ${timeoutMs / 1000} s (hung, or not a Redis)`;
  return err.message;
}

/** A Redis of the deployment: its URL, the regions it serves, and which setting gave that URL (what to check). */
export interface DeploymentRedis {
  url: string;
  regions: readonly string[];
  check: string;
}

/** Per server of `servers` that cannot be reached (asked at once), the line saying so, why, and what to check. */
export async function unreachableRedis(servers: readonly DeploymentRedis[]): Promise<Map<string, string>> {
  const problems = await Promise.all(servers.map(async (s) => ({ ...s, problem: await redisReachProblem(s.url) })));
  return new Map(problems.flatMap((f) => (f.problem === null ? [] : [[
    f.url,
    `Redis at ${withoutCredentials(f.url)} (${f.regions.length > 1 ? 'regions' : 'region'} ${f.regions.join(', ')}) cannot be reached (${f.problem}). Check that Redis runs there, and ${f.check}`,
  ] as const])));
}

/** Throws a RedisUnreachable naming every one of `servers` that cannot be reached, with why. */
export async function checkRedisReachable(servers: readonly DeploymentRedis[]): Promise<void> {
  const down = await unreachableRedis(servers);
  if (down.size) throw new RedisUnreachable([...down.values()].join('; '));
}

/**
 * Each distinct Redis of a deployment's regions (config file `file`, read from `configPath`, with REDIS_URL over
 * its `redisUrl` as withRedisOverrides takes it), with the regions it serves and the setting that gave its URL.
 */
export function deploymentRedis(file: Pick<ConfigFile, 'redisUrl' | 'regions'>, configPath: string, env: NodeJS.ProcessEnv = process.env): DeploymentRedis[] {
  const servers = new Map<string, DeploymentRedis & { regions: string[] }>();
  for (const r of file.regions) {
    const url = redisUrlOf(file, r.id);
    const check = r.redisUrl
      ? `the redisUrl of region ${r.id} in ${configPath}`
      : env.REDIS_URL
        ? `REDIS_URL (set in the environment, over the redisUrl of ${configPath})`
        : `the redisUrl of ${configPath} (or set REDIS_URL)`;
    const s = servers.get(url);
    if (s) s.regions.push(r.id);
    else servers.set(url, { url, regions: [r.id], check });
  }
  return [...servers.values()];
}
