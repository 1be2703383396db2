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
