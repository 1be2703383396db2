/**
 * Polls GET /admin/replication every 250 ms and prints one JSON line per answer ({ ms, status, waiting }).
 * bench/overload.ts runs it as a process of its own: the process that sends the flood is itself too busy to
 * time anything. Run as `node dist/bench/admin-poller.js <url> <admin token>`; stops on SIGTERM.
 */
const [url, token] = process.argv.slice(2);
let running = true;
process.on('SIGTERM', () => {
  running = false;
});

async function poll(): Promise<void> {
  while (running) {
    const t = performance.now();
    let status = -1;
    let waiting: number | null = null;
    try {
      const res = await fetch(`${url}/admin/replication`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(30_000) });
      status = res.status;
      waiting = ((await res.json()) as { waiting_requests?: number }).waiting_requests ?? null;
    } catch {
      // no answer within 30 s (or none at all): status -1
    }
    process.stdout.write(`${JSON.stringify({ ms: Math.round(performance.now() - t), status, waiting })}\n`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

void poll();
