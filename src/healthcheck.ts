/**
 * The image's HEALTHCHECK (`node dist/src/healthcheck.js`): asks /readyz of the region this container runs,
 * on the host and port it listens on, resolved from REGIONS_CONFIG, REGION, PORT, HOST and OPERATOR_PORT as the
 * region resolves them (src/config.ts): its config file's port when PORT is unset (the check asked 8080 then,
 * and a region listening on its file's port was never healthy).
 *
 * With an operator port (`operatorPort`, or OPERATOR_PORT) it asks there, not the region's port: a thread of
 * its own answers there while the region's port is flooded (a check of the flooded port timed out, and a busy
 * but healthy container was marked unhealthy, and restarted by whatever acts on that). That thread answers
 * while the main thread is stuck, too: its /readyz and its /healthz, which the check also asks, both answer
 * 503 (`stalled`) once the main thread has published nothing for 30 s (the region's port would not answer
 * then either; a region of an earlier build said so on /healthz only).
 *
 * A region that is not ready only because it is a joining member (it needs a re-seed: `joining` and nothing else
 * wrong) is healthy: a restart would not seed it, and a platform that replaces unhealthy containers would
 * restart a newly added region until its re-seed. Load balancers read /readyz itself.
 *
 * Exits 0 when ready (or joining); 1 when not ready, stalled, not answering or misconfigured (Docker reserves 2),
 * with a line on stderr saying which.
 */
import { ConfigError, listenAddress } from './config';
import { httpUrl, localHost } from './http/url';
import { onlyJoining } from './observability/readiness-body';

/** Below the HEALTHCHECK's --timeout (3 s), so that a region that does not answer is reported as such. */
const PROBE_TIMEOUT_MS = 2000;

/** What a non-2xx answer of each path means. */
const NOT_OK: Record<string, string> = { '/readyz': 'not ready', '/healthz': "stalled: the region's main thread published nothing lately" };

/** Whether a /readyz answer says the region is not ready only because it is a joining member. */
function onlyJoiningText(text: string): boolean {
  try {
    return onlyJoining(JSON.parse(text) as Record<string, unknown>);
  } catch {
    return false;
  }
}

/** Null when `url` answers 2xx, else the line saying what it answered or why it did not. */
async function probe(url: string, path: string, signal: AbortSignal): Promise<string | null> {
  try {
    const res = await fetch(`${url}${path}`, { signal });
    const text = await res.text();
    if (res.ok || (path === '/readyz' && onlyJoiningText(text))) return null;
    return `${url}${path}: ${res.status} (${NOT_OK[path] ?? 'not ok'})`;
  } catch (err) {
    const cause = (err as { cause?: { code?: unknown } }).cause?.code;
    return `${url}${path}: ${(err as Error).message}${typeof cause === 'string' ? ` (${cause})` : ''}`;
  }
}

async function check(): Promise<number> {
  let base: string;
  let paths: string[];
  try {
    const { host, port, operatorPort } = listenAddress();
    base = httpUrl(localHost(host), operatorPort ?? port);
    paths = operatorPort === undefined ? ['/readyz'] : ['/readyz', '/healthz'];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`configuration error: ${err.message}\n`);
    return 1;
  }
  // Together, within one bound: the HEALTHCHECK's --timeout covers the whole check.
  const signal = AbortSignal.timeout(PROBE_TIMEOUT_MS);
  const failures = (await Promise.all(paths.map((p) => probe(base, p, signal)))).filter((f) => f !== null);
  for (const f of failures) process.stderr.write(`${f}\n`);
  return failures.length ? 1 : 0;
}

void check().then((code) => process.exit(code));
