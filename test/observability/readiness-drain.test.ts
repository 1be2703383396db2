/**
 * /readyz while a region drains after SIGTERM: its port takes no new connections, so no probe may read it as
 * ready. The operator port still answers then (until the drain ends), and a Kubernetes readiness probe or a load
 * balancer's health check pointed at it (as docs/operations.md, "Operator port", advises) kept reading `ready: true`.
 */
import { adminHeaders, call, eventually } from '../support/harness';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { rawConnection } from '../support/raw-http';

let r: InProcessRegion;
beforeAll(async () => {
  r = await startInProcess('readiness-drain', ['us-iowa'], {}, 'us-iowa', { operatorPort: 0, drainTimeoutMs: 60_000 });
});
afterAll(async () => {
  await r?.stop();
});

test('a draining region answers /readyz 503 with draining: true on the operator port, and finishes its in-flight request', async () => {
  const operator = r.region.operator?.url as string;
  expect(await call(operator, 'GET', '/readyz')).toMatchObject({ status: 200, body: { ready: true } });

  // A request in flight when the drain starts: its headers and half its body sent.
  const body = JSON.stringify({ name: 'in-flight' });
  const inFlight = rawConnection(r.region.port);
  await inFlight.connected;
  inFlight.socket.write(
    `POST /admin/organizations HTTP/1.1\r\nHost: x\r\nAuthorization: ${adminHeaders.authorization}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body.slice(0, 5)}`,
  );
  // The region has it (it counts as in flight once its headers are read).
  expect(await eventually(async () => r.region.server.listening && (await connectionsOf(r)) > 0)).toBe(true);

  const stopped = r.region.stop();
  let last = { status: 0, body: null as unknown };
  expect(await eventually(async () => (last = await call(operator, 'GET', '/readyz')).status === 503)).toBe(true);
  expect(last.body).toMatchObject({ region: 'us-iowa', ready: false, draining: true, database: 'ok' });
  // Liveness is another matter: the process is alive and finishing its work.
  expect((await call(operator, 'GET', '/healthz')).status).toBe(200);
  // New connections to the region's port are refused.
  await expect(call(r.url, 'GET', '/healthz')).rejects.toThrow();

  inFlight.socket.write(body.slice(5));
  const answer = await inFlight.answered;
  expect(answer).toMatch(/^HTTP\/1\.1 201 /);
  expect(answer).toMatch(/\r\nConnection: close\r\n/i);
  await stopped;
});

function connectionsOf(region: InProcessRegion): Promise<number> {
  return new Promise((resolve, reject) => region.region.server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
}
