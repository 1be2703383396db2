/**
 * The operator listener: GET /healthz, /readyz and /admin/replication on a port of their own (`operatorPort`),
 * served by a worker thread (worker.ts) with its own event loop, database pool and Redis connections. Under a
 * flood the main thread's loop spends seconds accepting and answering thousands of connections, and a
 * request to the region's port waits its turn behind them; on the operator port it does not. The main thread
 * publishes what only it knows (snapshot.ts) every SNAPSHOT_INTERVAL_MS; the answers say how old that copy is.
 *
 * The worker runs compiled JavaScript: dist/src/operator/worker.js next to this file, or, when this file runs
 * as TypeScript (jest), the build's copy.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { httpUrl } from '../http/url';
import type { Logger } from '../logger';
import { PROJECT_ROOT } from '../paths';
import { SNAPSHOT_INTERVAL_MS, type FromWorker, type OperatorSnapshot, type OperatorWorkerData, type ToWorker } from './snapshot';

/**
 * A worker that ended on its own is started again after this long; a start that fails (its port taken
 * meanwhile, the thread failing as it starts), or a thread that ends within STEADY_AFTER_MS of its start, is
 * tried again after twice as long each time, up to the maximum.
 */
const RESTART_DELAY_MS = 1000;
const RESTART_DELAY_MAX_MS = 30_000;
/**
 * A thread that listened this long before it ended counts as having run: the next restart waits
 * RESTART_DELAY_MS again. One that ends sooner is in a loop (ending at each start), not started again every second.
 */
const STEADY_AFTER_MS = 30_000;
const restartDelay = (attempt: number) => Math.min(RESTART_DELAY_MS * 2 ** (attempt - 1), RESTART_DELAY_MAX_MS);
/** How long a stopping listener waits for its worker to close its connections before terminating it. */
const STOP_GRACE_MS = 2000;

export interface OperatorListenerOptions {
  /** The worker's settings; `port` 0 takes any free port (tests). */
  data: OperatorWorkerData;
  /** The main thread's figures now (called every SNAPSHOT_INTERVAL_MS, on the main thread). */
  snapshot: () => Omit<OperatorSnapshot, 'at'>;
  log: Logger;
}

export interface OperatorListener {
  url: string;
  port: number;
  /** The listener's thread now (diagnostics, and tests that end it as a crash would: it is started again). */
  thread(): Worker;
  /** Sends the main thread's figures now, not at the next interval (a change the probes must see at once). */
  publish(): void;
  stop(): Promise<void>;
}

function workerScript(): string {
  const candidates = [path.join(__dirname, 'worker.js'), path.join(PROJECT_ROOT, 'dist', 'src', 'operator', 'worker.js')];
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) throw new Error('the operator listener runs dist/src/operator/worker.js: run npm run build first');
  return found;
}

/** Starts the worker and resolves once it listens (rejects if it cannot, e.g. the port is taken). */
export async function startOperatorListener(o: OperatorListenerOptions): Promise<OperatorListener> {
  const script = workerScript();
  let stopping = false;
  let restartTimer: NodeJS.Timeout | null = null;
  let worker: Worker;
  let bound = o.data.port;
  // Starts tried since the last thread that ran STEADY_AFTER_MS, and when the current thread began to listen.
  let attempts = 0;
  let listeningAt = 0;
  const publish = () => {
    const message: ToWorker = { type: 'snapshot', snapshot: { at: Date.now(), ...o.snapshot() } };
    worker.postMessage(message);
  };

  // Resolves with the port the worker listens on; rejects if it fails before.
  const spawn = (port: number) =>
    new Promise<number>((resolve, reject) => {
      worker = new Worker(script, { workerData: { ...o.data, port } satisfies OperatorWorkerData });
      // The worker listens once it has this first copy of the figures.
      publish();
      let listening = false;
      worker.on('message', (m: FromWorker) => {
        if (m.type !== 'listening') return;
        listening = true;
        listeningAt = Date.now();
        bound = m.port;
        resolve(m.port);
      });
      worker.on('error', (err) => {
        if (!listening) return reject(err);
        o.log.error({ err: err.message }, 'operator listener failed; starting it again');
      });
      worker.on('exit', (code) => {
        if (!listening) return reject(new Error(`the operator listener exited (code ${code}) before it listened`));
        if (stopping) return;
        if (Date.now() - listeningAt >= STEADY_AFTER_MS) attempts = 0;
        o.log.error({ code, next_attempt_in_ms: restartDelay(attempts + 1) }, 'operator listener exited; starting it again');
        restart();
      });
    });

  // The operator port is what on-call reaches when the region's port does not answer: never given up on.
  const restart = () => {
    attempts += 1;
    const attempt = attempts;
    restartTimer = setTimeout(() => {
      restartTimer = null;
      if (stopping) return;
      spawn(bound).then(
        () => void (attempt > 1 && o.log.info({ attempts: attempt }, 'operator listener started again')),
        (err: Error) => {
          if (stopping) return;
          o.log.error({ err: err.message, attempts: attempt, next_attempt_in_ms: restartDelay(attempt + 1) }, 'operator listener could not start again; trying again');
          restart();
        },
      );
    }, restartDelay(attempt)).unref();
  };

  const port = await spawn(o.data.port);
  const timer = setInterval(publish, SNAPSHOT_INTERVAL_MS);
  timer.unref();
  const url = httpUrl(o.data.host, port);
  o.log.info({ url }, 'operator listener ready');
  return {
    url,
    port,
    thread: () => worker,
    publish: () => {
      if (!stopping) publish();
    },
    async stop() {
      stopping = true;
      clearInterval(timer);
      if (restartTimer) clearTimeout(restartTimer);
      const w = worker;
      if (w.threadId === -1) return;
      const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
      w.postMessage({ type: 'stop' } satisfies ToWorker);
      const grace = setTimeout(() => void w.terminate(), STOP_GRACE_MS);
      await exited;
      clearTimeout(grace);
    },
  };
}
