/**
 * The LISTEN connection's heartbeat (src/db/notify.ts): a connection the network stops carrying without
 * closing it (a NAT's idle timeout, say) raises no error for hours; the heartbeat finds it, the listener is
 * told it is down (the API-key cache drops everything then), and it listens again over a new connection.
 */
import net from 'node:net';
import { Client } from 'pg';
import pino from 'pino';
import { listen, type ChannelListener } from '../../src/db/notify';
import { PG_BASE, uniqueName } from '../support/env';

/** A TCP proxy to Postgres whose open connections can be frozen: bytes stop flowing, nothing is closed. */
function freezableProxy() {
  const upstream = new URL(PG_BASE);
  const open: { frozen: boolean }[] = [];
  const sockets: net.Socket[] = [];
  // Half-open allowed: a frozen connection swallows the client's FIN too, as a network that dropped it would.
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const state = { frozen: false };
    open.push(state);
    const pgSocket = net.connect(Number(upstream.port || 5432), upstream.hostname);
    sockets.push(client, pgSocket);
    client.on('data', (b) => void (state.frozen || pgSocket.write(b)));
    pgSocket.on('data', (b) => void (state.frozen || client.write(b)));
    for (const [a, b] of [[client, pgSocket], [pgSocket, client]] as const) {
      a.on('error', () => b.destroy());
      a.on('close', () => b.destroy());
    }
  });
  return {
    server,
    freezeAll: () => open.forEach((s) => (s.frozen = true)),
    /** Closes the proxy and every connection through it (frozen ones never close on their own). */
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
    listening: new Promise<number>((r) => server.listen(0, '127.0.0.1', () => r((server.address() as net.AddressInfo).port))),
  };
}

const proxy = freezableProxy();
let listener: ChannelListener | null = null;
afterAll(async () => {
  await listener?.stop();
  proxy.close();
});

test('a LISTEN connection that silently stops answering is taken for lost, and the listener listens again', async () => {
  const port = await proxy.listening;
  const base = new URL(PG_BASE);
  const viaProxy = `postgresql://${base.username}${base.password ? `:${base.password}` : ''}@127.0.0.1:${port}/postgres`;
  const states: boolean[] = [];
  const heard: string[] = [];
  const channel = uniqueName('hb').replace(/[^a-z0-9_]/g, '_');
  listener = listen({
    databaseUrl: viaProxy,
    channel,
    log: pino({ level: 'silent' }),
    onNotify: (p) => heard.push(p),
    onState: (up) => states.push(up),
    retryMs: 100,
    // A heartbeat's answer passes this process's proxy and a Postgres backend: on a loaded host (load 10-15 on
    // two cores) either can be off the CPU for a few hundred ms, so a 300 ms timeout took a live connection
    // for lost now and then. 1 s still finds the frozen one well within the waits below.
    heartbeatMs: 200,
    heartbeatTimeoutMs: 1000,
  });
  const until = async (what: () => boolean, ms: number) => {
    const end = Date.now() + ms;
    while (!what() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    return what();
  };
  expect(await until(() => states.at(-1) === true, 5000)).toBe(true);
  // Well past a few heartbeats, a connection that answers stays up: the beats sent in the first 500 ms have
  // each been answered or timed out by 1.5 s.
  await new Promise((r) => setTimeout(r, 1500));
  expect(states).toEqual([true]);
  proxy.freezeAll();
  // Found within a beat and its timeout (1.2 s); 5 s leaves a loaded host its margin.
  expect(await until(() => states.includes(false), 5000)).toBe(true);
  // A new connection (not frozen) listens again, and hears what is announced.
  expect(await until(() => states.at(-1) === true, 5000)).toBe(true);
  const direct = new Client({ connectionString: `${PG_BASE}/postgres` });
  await direct.connect();
  await direct.query(`NOTIFY ${channel}, 'after'`);
  await direct.end();
  expect(await until(() => heard.includes('after'), 3000)).toBe(true);
}, 30_000);

test('stopping over a connection the network stopped carrying does not wait for its goodbye', async () => {
  const port = await proxy.listening;
  const base = new URL(PG_BASE);
  const viaProxy = `postgresql://${base.username}${base.password ? `:${base.password}` : ''}@127.0.0.1:${port}/postgres`;
  let up = false;
  const frozenListener = listen({
    databaseUrl: viaProxy,
    channel: 'hb_stop',
    log: pino({ level: 'silent' }),
    onNotify: () => undefined,
    onState: (s) => (up = s),
    heartbeatMs: 60_000,
  });
  const end = Date.now() + 5000;
  while (!up && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  expect(up).toBe(true);
  proxy.freezeAll();
  // The frozen connection never answers the goodbye (the proxy's sockets stay open): a stop that waited for it
  // would never end. Its own bound is 2 s; this only tells "ended" from "hung", with a wide margin.
  const started = Date.now();
  await frozenListener.stop();
  expect(Date.now() - started).toBeLessThan(10_000);
}, 20_000);
