/**
 * One-way network delay in user space. The kernel here has no netem (CONFIG_NET_SCH_NETEM is not set:
 * `tc qdisc add ... netem` answers "Specified qdisc kind is unknown"), so each host's services listen on
 * 127.0.0.1 inside the host's namespace and a DelayProxy listening on the host's address forwards to them.
 *
 * It models netem on every host's egress: bytes from a peer are held for the peer's delay, bytes back for
 * this host's delay, so the round trip between two hosts is the sum of their delays. The TCP handshake
 * happens at once locally, so the first bytes from the client wait one round trip (what connect() would
 * have cost) before their own one-way delay. Order is kept per direction, half-closes and resets are forwarded after the same
 * delay, and a refused upstream (the service is down) resets the client's connection. A `cut` peer's
 * bytes are held both ways until the cut is lifted: a partition between hosts that keeps the link up.
 */
import net from 'node:net';

export interface DelayTable {
  /** This host's one-way delay (ms) for everything it sends. */
  self: number;
  /** One-way delay (ms) of each peer address; unknown peers (the root namespace) have none. */
  peers: Record<string, number>;
  /** Uniform random extra in [-jitter, +jitter] ms per chunk; order is still kept. */
  jitter: number;
  /**
   * Peers cut off from this host (a partition between them): their bytes, both ways, are held until the
   * cut is lifted, as a black hole that TCP outlives would do. Connections still open; nothing flows.
   */
  cut: string[];
}

export interface DelayProxyOptions {
  listenHost: string;
  listenPort: number;
  targetHost: string;
  targetPort: number;
  delays: () => DelayTable;
}

/** Bytes held in one direction before the sender is paused (back-pressure). */
const HIGH_WATER = 4 * 1024 * 1024;
/** How often a held direction looks whether its cut was lifted. */
const CUT_POLL_MS = 50;
/** How early a direction's timer wakes before its next chunk is due (see DelayedPipe.pump). */
const TIMER_LEAD_MS = 1.5;

/** One direction of a proxied connection: a FIFO whose items run no sooner than `delay` after they arrived. */
class DelayedPipe {
  private readonly queue: { at: number; run: () => void }[] = [];
  private timer: NodeJS.Timeout | NodeJS.Immediate | null = null;
  private last: number;
  private queued = 0;
  private done = false;

  constructor(
    from: net.Socket,
    private readonly to: net.Socket,
    private readonly delay: () => number,
    private readonly isCut: () => boolean,
    notBefore: number,
  ) {
    this.last = notBefore;
    from.on('data', (chunk: Buffer) => {
      this.queued += chunk.length;
      if (this.queued > HIGH_WATER) from.pause();
      this.later(() => {
        this.queued -= chunk.length;
        if (!this.to.destroyed) this.to.write(chunk);
        if (this.queued <= HIGH_WATER / 4 && from.isPaused()) from.resume();
      });
    });
    from.on('end', () =>
      this.later(() => {
        if (!this.to.destroyed) this.to.end();
      }),
    );
  }

  /** Runs `fn` after the delay, after everything queued before it in this direction. */
  later(fn: () => void): void {
    if (this.done) return;
    const at = Math.max(performance.now() + this.delay(), this.last);
    this.last = at;
    this.queue.push({ at, run: fn });
    this.pump();
  }

  /**
   * Node's timers fire on a millisecond clock, on average about a millisecond late (measured: 16.0 ms for a
   * 15 ms delay). The timer is set to wake up to TIMER_LEAD_MS early and the rest is waited on the event
   * loop's check phase (setImmediate), still serving every other socket, so each chunk leaves within a
   * fraction of a millisecond of its time.
   */
  private pump(): void {
    if (this.timer) return;
    for (let head = this.queue[0]; head; head = this.queue[0]) {
      const wait = this.isCut() ? CUT_POLL_MS : head.at - performance.now();
      if (wait > TIMER_LEAD_MS) {
        this.timer = setTimeout(() => {
          this.timer = null;
          this.pump();
        }, wait - TIMER_LEAD_MS);
        return;
      }
      if (wait > 0) {
        this.timer = setImmediate(() => {
          this.timer = null;
          this.pump();
        });
        return;
      }
      this.queue.shift();
      head.run();
    }
  }

  /** Takes nothing more; what is queued still goes out (a reset queued last). */
  stop(): void {
    this.done = true;
  }
}

export class DelayProxy {
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly o: DelayProxyOptions) {}

  listen(): Promise<void> {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (down) => this.accept(down));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.o.listenHost, port: this.o.listenPort, backlog: 1024 }, () => resolve());
    });
  }

  get port(): number {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a.port : this.o.listenPort;
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private jittered(base: number): number {
    const j = this.o.delays().jitter;
    return Math.max(0, base + (j > 0 ? (Math.random() * 2 - 1) * j : 0));
  }

  private accept(down: net.Socket): void {
    const peer = (down.remoteAddress ?? '').replace(/^::ffff:/, '');
    const inbound = () => this.jittered(this.o.delays().peers[peer] ?? 0);
    const outbound = () => this.jittered(this.o.delays().self);
    const rtt = (this.o.delays().peers[peer] ?? 0) + this.o.delays().self;
    const isCut = () => this.o.delays().cut.includes(peer);
    const up = net.connect({ host: this.o.targetHost, port: this.o.targetPort, allowHalfOpen: true });
    for (const s of [down, up]) {
      this.sockets.add(s);
      s.setNoDelay(true);
      s.once('close', () => this.sockets.delete(s));
    }
    // connect() would have returned one round trip after the SYN; the first bytes travel after that.
    const toServer = new DelayedPipe(down, up, inbound, isCut, performance.now() + rtt + (this.o.delays().peers[peer] ?? 0));
    const toClient = new DelayedPipe(up, down, outbound, isCut, 0);
    down.resume();
    // A reset travels like data: the other side learns of it after the delay of the side that reset.
    const failed = (pipe: DelayedPipe, other: net.Socket) => () => {
      pipe.later(() => other.resetAndDestroy());
      toServer.stop();
      toClient.stop();
    };
    up.once('error', failed(toClient, down));
    down.once('error', failed(toServer, up));
    // A clean close of both directions: nothing more to forward.
    up.once('close', (hadError) => {
      if (!hadError) toClient.later(() => down.destroySoon());
    });
    down.once('close', (hadError) => {
      if (!hadError) toServer.later(() => up.destroySoon());
    });
  }
}
