/**
 * LISTEN on a Postgres channel over a connection of its own (a pooled connection cannot hold a LISTEN),
 * reconnecting after a failure. `onState(true)` is called once the LISTEN is in place, `onState(false)` as
 * soon as the connection is lost: notifications sent in between are not delivered, so a listener that
 * caches must treat "down" as "everything may have changed".
 */
import { Client } from 'pg';
import type { Logger } from '../logger';
import { sessionConfig } from './session';

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
}

export function listen(o: ListenOptions): ChannelListener {
  if (!/^[a-z_][a-z0-9_]*$/.test(o.channel)) throw new Error(`bad channel name ${o.channel}`);
  let stopped = false;
  let client: Client | null = null;
  let retry: NodeJS.Timeout | null = null;

  const lost = (c: Client, err?: Error) => {
    if (client !== c) return; // already handled
    client = null;
    o.onState(false);
    c.end().catch(() => undefined);
    if (stopped) return;
    o.log.warn({ err: err?.message, channel: o.channel }, 'lost the LISTEN connection; reconnecting');
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
        if (client === c && !stopped) o.onState(true);
      })
      .catch((err: Error) => lost(c, err));
  };

  connect();
  return {
    async stop() {
      stopped = true;
      if (retry) clearTimeout(retry);
      const c = client;
      client = null;
      o.onState(false);
      await c?.end().catch(() => undefined);
    },
  };
}
