/** A Redis server of the test's own (so a test can stop and restart it without touching the shared one). */
import { spawn, type ChildProcess } from 'node:child_process';
import Redis from 'ioredis';
import { freePorts } from './env';

export interface OwnRedis {
  url: string;
  port: number;
  start(): Promise<void>;
  /** Stops it abruptly; without persistence, everything it held is gone. */
  kill(): Promise<void>;
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
