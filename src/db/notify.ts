/**
 * LISTEN on a Postgres channel over a connection of its own (a pooled connection cannot hold a LISTEN),
 * reconnecting after a failure. `onState(true)` is called once the LISTEN is in place, `onState(false)` as
 * soon as the connection is lost: notifications sent in between are not delivered, so a listener that
 * caches must treat "down" as "everything may have changed". The connection sits idle (its channel's changes
 * are rare), and a network that drops an idle connection silently (a NAT's or a load balancer's idle timeout,
 * a failover behind a virtual address) raises no error until TCP keepalive gives up, 2 h 11 min with Linux's
 * defaults; meanwhile the listener would believe it hears every change. So it also sends a heartbeat query:
 * one that fails, or gets no answer within its timeout, counts as the connection lost.
 */
import { Client } from 'pg';
import type { Logger } from '../logger';
import { sessionConfig } from './session';
import { withTimeout } from './timeout';

export interface ChannelListener {
  stop(): Promise<void>;
}

export interface ListenOptions {
  databaseUrl: string;
  /** A plain identifier (letters, digits, underscore). */
  channel: string;
  log: Logger;
  onNotify(payload: string): void;
  onState(listening: boolean): void;
  /** Wait before reconnecting (default 1000 ms). */
  retryMs?: number;
  /** How often the heartbeat query runs (default 10 s). */
  heartbeatMs?: number;
  /** How long the heartbeat may take before the connection counts as lost (default 5 s). */
  heartbeatTimeoutMs?: number;
}

export const HEARTBEAT_MS = 10_000;
/**
 * While the database stays unreachable, one warning per this many failed attempts (about a minute at the
 * default retry), not one per attempt: an outage of a minute logged 55 identical lines per channel.
 */
export const REPEAT_WARNING_EVERY = 60;
export const HEARTBEAT_TIMEOUT_MS = 5_000;

export function listen(o: ListenOptions): ChannelListener {
  if (!/^[a-z_][a-z0-9_]*$/.test(o.channel)) throw new Error(`bad channel name ${o.channel}`);
  let stopped = false;
  let client: Client | null = null;
  let retry: NodeJS.Timeout | null = null;
  let heartbeat: NodeJS.Timeout | null = null;
  /** Connections lost or refused since the LISTEN was last in place. */
  let failures = 0;
  const stopHeartbeat = () => {
    if (heartbeat) clearInterval(heartbeat);
    heartbeat = null;
  };

  const lost = (c: Client, err?: Error) => {
    if (client !== c) return; // already handled
    client = null;
    stopHeartbeat();
    o.onState(false);
    c.end().catch(() => undefined);
    if (stopped) return;
    failures += 1;
    if (failures === 1) o.log.warn({ err: err?.message, channel: o.channel }, 'lost the LISTEN connection; reconnecting');
    else if (failures % REPEAT_WARNING_EVERY === 0) o.log.warn({ err: err?.message, channel: o.channel, attempts: failures }, 'still cannot LISTEN; reconnecting');
    retry = setTimeout(connect, o.retryMs ?? 1000);
  };

  const connect = () => {
    retry = null;
    if (stopped) return;
    const c = new Client({ ...sessionConfig(o.databaseUrl), keepAlive: true });
    client = c;
    c.on('notification', (n) => {
      if (n.channel === o.channel) o.onNotify(n.payload ?? '');
    });
    c.on('error', (err) => lost(c, err));
    c.on('end', () => lost(c));
    c.connect()
      .then(() => c.query(`LISTEN ${o.channel}`))
      .then(() => {
        if (client !== c || stopped) return;
        if (failures > 1) o.log.info({ channel: o.channel, attempts: failures }, 'LISTEN connection back');
        failures = 0;
        o.onState(true);
        heartbeat = setInterval(() => beat(c), o.heartbeatMs ?? HEARTBEAT_MS);
        heartbeat.unref();
      })
      .catch((err: Error) => lost(c, err));
  };

  const beat = (c: Client) =>
    void withTimeout(c.query('SELECT 1'), o.heartbeatTimeoutMs ?? HEARTBEAT_TIMEOUT_MS, 'no answer to the heartbeat in time').catch((err: Error) => lost(c, err));

  connect();
  return {
    async stop() {
      stopped = true;
      if (retry) clearTimeout(retry);
      stopHeartbeat();
      const c = client;
      client = null;
      o.onState(false);
      // A connection the network stopped carrying never answers the goodbye: do not wait for it long.
      if (c) await withTimeout(c.end(), 2000).catch(() => undefined);
    },
  };
}
