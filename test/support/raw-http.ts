/** Requests written as bytes, for what a client library would not send (framing, odd headers, CONNECT). */
import net from 'node:net';

/** Writes `bytes` on a fresh connection to `port` and collects what comes back until the server closes it (or `waitMs`). */
export function rawExchangeWith(port: number, bytes: Buffer | string, waitMs = 3000): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(bytes));
    const parts: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(), waitMs);
    socket.on('data', (d: Buffer) => parts.push(d));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(parts).toString('utf8'));
    });
  });
}

/**
 * A connection to write to piece by piece: `connected` once it is open, `answered` with all it received once the
 * server closes it.
 */
export function rawConnection(port: number): { socket: net.Socket; connected: Promise<void>; answered: Promise<string> } {
  const socket = net.connect(port, '127.0.0.1');
  const parts: Buffer[] = [];
  socket.on('data', (d: Buffer) => parts.push(d));
  socket.on('error', () => undefined);
  const connected = new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  const answered = new Promise<string>((resolve) => socket.on('close', () => resolve(Buffer.concat(parts).toString('utf8'))));
  return { socket, connected, answered };
}
