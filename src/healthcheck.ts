/**
 * The image's HEALTHCHECK (`node dist/src/healthcheck.js`): asks /readyz of the region this container runs,
 * on the host and port it listens on, resolved from REGIONS_CONFIG, REGION, PORT and HOST as the region
 * resolves them (src/config.ts): its config file's port when PORT is unset (the check asked 8080 then, and a
 * region listening on its file's port was never healthy). Exits 0 when ready; 1 when not ready, not
 * answering or misconfigured (Docker reserves 2), with a line on stderr saying which.
 */
import { ConfigError, listenAddress } from './config';
import { httpUrl } from './http/url';

/** Below the HEALTHCHECK's --timeout (3 s), so that a region that does not answer is reported as such. */
const PROBE_TIMEOUT_MS = 2000;

/** Where a client of this machine reaches a server listening on `host` (the wildcard addresses accept on loopback). */
const probeHost = (host: string) => (host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host);

async function check(): Promise<number> {
  let url: string;
  try {
    const { host, port } = listenAddress();
    url = `${httpUrl(probeHost(host), port)}/readyz`;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`configuration error: ${err.message}\n`);
    return 1;
  }
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    await res.arrayBuffer();
    if (res.ok) return 0;
    process.stderr.write(`${url}: ${res.status} (not ready)\n`);
  } catch (err) {
    const cause = (err as { cause?: { code?: unknown } }).cause?.code;
    process.stderr.write(`${url}: ${(err as Error).message}${typeof cause === 'string' ? ` (${cause})` : ''}\n`);
  }
  return 1;
}

void check().then((code) => process.exit(code));
