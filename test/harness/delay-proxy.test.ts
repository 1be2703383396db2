/**
 * The harness's user-space link delay (the kernel here has no netem): one-way delays per direction, the
 * round trip a connect would cost, order under jitter, a cut that holds traffic until lifted, and a reset
 * when the service behind the proxy is down. Loopback only; needs no root.
 */
import net from 'node:net';
import { DelayProxy, type DelayTable } from '../../scripts/harness/delay-proxy';

let echo: net.Server;
let echoPort = 0;
const proxies: DelayProxy[] = [];
const sockets: net.Socket[] = [];

beforeAll(async () => {
  echo = net.createServer((s) => s.pipe(s));
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', () => resolve()));
  echoPort = (echo.address() as net.AddressInfo).port;
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await Promise.all(proxies.map((p) => p.close()));
  await new Promise((r) => echo.close(r));
});

async function proxyTo(targetPort: number, table: DelayTable): Promise<{ proxy: DelayProxy; table: DelayTable }> {
  const proxy = new DelayProxy({ listenHost: '127.0.0.1', listenPort: 0, targetHost: '127.0.0.1', targetPort, delays: () => table });
  await proxy.listen();
  proxies.push(proxy);
  return { proxy, table };
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
    sockets.push(s);
  });
}

/** Sends `msg` and resolves with the ms until all of it came back. */
function roundTrip(s: net.Socket, msg: string): Promise<number> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    let got = '';
    const onData = (d: Buffer) => {
      got += d.toString();
      if (got.length >= msg.length) {
        s.off('data', onData);
        resolve(Date.now() - t0);
      }
    };
    s.on('data', onData);
    s.write(msg);
  });
}

test('bytes wait for the sender host’s delay each way, and the first ones also for the handshake', async () => {
  // The client (127.0.0.1) has 40 ms, the proxied host 60 ms: 100 ms round trip. The first message pays the
  // handshake's round trip too: 200 ms counted from the connect (counted from the write, the moment between
  // connect and write is left out, and on a loaded host that moment was 19 ms: CI read 181).
  const { proxy } = await proxyTo(echoPort, { self: 60, peers: { '127.0.0.1': 40 }, jitter: 0, cut: [] });
  const connecting = Date.now();
  const s = await connect(proxy.port);
  const sinceConnect = Date.now() - connecting;
  const first = sinceConnect + (await roundTrip(s, 'hello'));
  const second = await roundTrip(s, 'again');
  expect(first).toBeGreaterThanOrEqual(198);
  expect(first).toBeLessThan(600);
  expect(second).toBeGreaterThanOrEqual(95);
  expect(second).toBeLessThan(450);
});

test('jitter never reorders bytes', async () => {
  const { proxy } = await proxyTo(echoPort, { self: 5, peers: { '127.0.0.1': 5 }, jitter: 5, cut: [] });
  const s = await connect(proxy.port);
  const msg = Array.from({ length: 300 }, (_, i) => `<${i}>`).join('');
  let got = '';
  const done = new Promise<void>((resolve) => {
    s.on('data', (d: Buffer) => {
      got += d.toString();
      if (got.length >= msg.length) resolve();
    });
  });
  for (let i = 0; i < 300; i++) {
    s.write(`<${i}>`);
    if (i % 30 === 0) await new Promise((r) => setTimeout(r, 2));
  }
  await done;
  expect(got).toBe(msg);
});

test('a cut holds traffic both ways until it is lifted, then delivers it in order', async () => {
  const { proxy, table } = await proxyTo(echoPort, { self: 0, peers: {}, jitter: 0, cut: [] });
  const s = await connect(proxy.port);
  await roundTrip(s, 'warm');
  table.cut = ['127.0.0.1'];
  let got = '';
  s.on('data', (d: Buffer) => (got += d.toString()));
  s.write('during the cut');
  await new Promise((r) => setTimeout(r, 400));
  expect(got).toBe('');
  table.cut = [];
  await new Promise((r) => setTimeout(r, 300));
  expect(got).toBe('during the cut');
});

test('a connection to a service that is down is reset', async () => {
  const closed = net.createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', () => resolve()));
  const deadPort = (closed.address() as net.AddressInfo).port;
  await new Promise((r) => closed.close(r));
  const { proxy } = await proxyTo(deadPort, { self: 10, peers: {}, jitter: 0, cut: [] });
  const s = await connect(proxy.port);
  const outcome = await new Promise<string>((resolve) => {
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    s.once('close', () => resolve('closed'));
    s.write('anyone?');
  });
  expect(outcome).toBe('ECONNRESET');
});
