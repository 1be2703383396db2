/**
 * Whether a port can be listened on, asked before a start creates or registers anything. A region's port
 * listens last (after its database is migrated and it has registered in the deployment's membership, so that
 * it never serves as `active` before its start check ran): without asking first, a port already taken failed
 * the start after all that was done.
 */
import net from 'node:net';

/**
 * Listens on `host`:`port` and closes again; rejects with the listen error itself (EADDRINUSE, EACCES,
 * EADDRNOTAVAIL, or getaddrinfo's for a host that does not resolve), as the real listen would have.
 * Port 0 (any free port) always can.
 */
export async function checkListen(host: string, port: number): Promise<void> {
  if (port === 0) return;
  const probe = net.createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen({ port, host }, () => resolve());
  });
  await new Promise<void>((resolve) => probe.close(() => resolve()));
}

/**
 * Why a listen failed, said for the operator to fix (a port taken, one that needs privileges, an address no
 * interface has); null for any other error. A region's start (main.ts) and `npm run cluster`'s check of every
 * port say it with their own remedy.
 */
export function listenProblem(code: string | undefined): string | null {
  if (code === 'EADDRINUSE') return 'the port is in use';
  if (code === 'EACCES') return 'not permitted (a port below 1024 needs privileges this user lacks)';
  if (code === 'EADDRNOTAVAIL') return 'no interface of this machine has that address';
  return null;
}
