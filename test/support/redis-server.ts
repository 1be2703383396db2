/** A Redis server of the test's own (so a test can stop and restart it without touching the shared one). */
import { spawn, type ChildProcess } from 'node:child_process';
import Redis from 'ioredis';
import { createDeployment, freePorts, type TestDeployment } from './env';
import type { ConfigFile } from '../../src/config-schema';
import { startCluster, type Cluster } from './harness';

export interface OwnRedis {
  url: string;
  port: number;
  start(): Promise<void>;
  /** Stops it abruptly; without persistence, everything it held is gone. */
  kill(): Promise<void>;
  /** Freezes it (SIGSTOP): its connections stay open and nothing answers; resume() goes on. */
  pause(): void;
  resume(): void;
}

/** `password`: the server requires it (--requirepass); `url` carries it (redis://:password@host:port). */
export async function ownRedis(opts: { password?: string } = {}): Promise<OwnRedis> {
  const [port = 0] = await freePorts(1);
  let child: ChildProcess | null = null;
  const auth = opts.password ? `:${encodeURIComponent(opts.password)}@` : '';
  const url = `redis://${auth}127.0.0.1:${port}`;
  const ping = async () => {
    const c = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    c.on('error', () => undefined);
    try {
      await c.connect();
      return (await c.ping()) === 'PONG';
    } catch {
      return false;
    } finally {
      c.disconnect();
    }
  };
  return {
    url,
    port,
    async start() {
      const password = opts.password ? ['--requirepass', opts.password] : [];
      child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...password], { stdio: 'ignore' });
      for (let i = 0; i < 100 && !(await ping()); i++) await new Promise((r) => setTimeout(r, 50));
    },
    pause() {
      child?.kill('SIGSTOP');
    },
    resume() {
      child?.kill('SIGCONT');
    },
    async kill() {
      const c = child;
      if (!c) return;
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      await exited;
      child = null;
    },
  };
}

/**
 * A cluster whose every region has a Redis server of its own (started first; the regions' `redisUrl`); `opts` as
 * startCluster's (but regionConfig, which this sets).
 */
export async function clusterWithOwnRedis(
  label: string,
  regions: string[],
  extra: Partial<ConfigFile> = {},
  opts: Omit<NonNullable<Parameters<typeof startCluster>[2]>, 'extra' | 'regionConfig'> = {},
): Promise<{ cluster: Cluster; redis: Map<string, OwnRedis>; stop(): Promise<void> }> {
  const servers = await Promise.all(regions.map(async () => {
    const server = await ownRedis();
    await server.start();
    return server;
  }));
  const redis = new Map(regions.map((r, i) => [r, servers[i] as OwnRedis]));
  const cluster = await startCluster(label, regions, { ...opts, extra, regionConfig: Object.fromEntries(regions.map((r) => [r, { redisUrl: redis.get(r)?.url }])) });
  return {
    cluster,
    redis,
    async stop() {
      for (const r of regions) cluster.proc(r).resume();
      await cluster.stop();
      await Promise.all([...redis.values()].map((s) => s.kill()));
    },
  };
}

/**
 * A deployment (createDeployment's) whose default `redisUrl` is a Redis server of the test's own, started: for
 * regions run in the test's process that the test pauses or kills the Redis of. `cleanup()` resumes and
 * kills that server and drops the deployment (stop the regions first).
 */
export async function deploymentWithOwnRedis(label: string, regions: string[]): Promise<{ redis: OwnRedis; dep: TestDeployment; cleanup(): Promise<void> }> {
  const redis = await ownRedis();
  await redis.start();
  const dep = await createDeployment(label, regions, { redisUrl: redis.url });
  return {
    redis,
    dep,
    async cleanup() {
      redis.resume();
      await redis.kill();
      await dep.cleanup();
    },
  };
}
