/**
 * Metrics labels, request-log levels and the /readyz bound on their own (no region): what a dashboard or an
 * alert reads, for answers a region cannot be made to give on demand (a 500).
 */
import express from 'express';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import type { Request, Response } from 'express';
import { createMetrics } from '../../src/observability/metrics';
import { createReadiness } from '../../src/observability/readiness';
import { requestLog } from '../../src/observability/request-log';
import { requestId } from '../../src/http/request-id';

function fakeReqRes(status: number, opts: { changeId?: string; consistency?: string } = {}) {
  const res = { statusCode: status, locals: {}, getHeader: (h: string) => (h === 'x-change-id' ? opts.changeId : undefined) };
  const req = {
    method: 'PATCH',
    baseUrl: '',
    route: { path: '/things/:id' },
    res,
    get: (h: string) => (h.toLowerCase() === 'slashid-required-consistency' ? opts.consistency : undefined),
  };
  return [req as unknown as Request, res as unknown as Response] as const;
}

async function count(m: ReturnType<typeof createMetrics>, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const metric = (await m.registry.getMetricsAsJSON()).find((x) => x.name === name) as { values: { metricName?: string; labels: Record<string, unknown>; value: number }[] };
  return metric.values.find((v) => v.metricName === `${name}_count` && Object.entries(labels).every(([k, val]) => v.labels[k] === val))?.value;
}

test('requests on one route are counted under the status each one answered, not the first one seen', async () => {
  const m = createMetrics({ region: 'test' });
  m.observe(...fakeReqRes(200), 0.01);
  m.observe(...fakeReqRes(500), 0.01);
  m.observe(...fakeReqRes(500), 0.01);
  expect(await count(m, 'http_request_duration_seconds', { route: '/things/:id', method: 'PATCH', status: '200' })).toBe(1);
  expect(await count(m, 'http_request_duration_seconds', { route: '/things/:id', method: 'PATCH', status: '500' })).toBe(2);
});

test('a replicated write answered 409 is counted as a conflict', async () => {
  const m = createMetrics({ region: 'test' });
  m.observe(...fakeReqRes(409, { changeId: 'c1', consistency: 'all_regions' }), 0.01);
  expect(await count(m, 'consistency_wait_seconds', { level: 'all_regions', outcome: 'conflict' })).toBe(1);
  expect(await count(m, 'consistency_wait_seconds', { level: 'all_regions', outcome: 'error' })).toBeUndefined();
});

test('a replicated write that committed and then failed (a 500 or 503 with its X-Change-Id) is counted as an error, under its level', async () => {
  // A region answers so only on a fault after its commit: a wait whose Redis went away times out (408).
  const m = createMetrics({ region: 'test' });
  m.observe(...fakeReqRes(500, { changeId: 'c1', consistency: 'all_regions' }), 0.01);
  m.observe(...fakeReqRes(503, { changeId: 'c2', consistency: 'all_regions' }), 0.01);
  m.observe(...fakeReqRes(500, { changeId: 'c3' }), 0.01);
  // Without a change id, a failure waited for nothing: not counted.
  m.observe(...fakeReqRes(500, { consistency: 'all_regions' }), 0.01);
  expect(await count(m, 'consistency_wait_seconds', { level: 'all_regions', outcome: 'error' })).toBe(2);
  expect(await count(m, 'consistency_wait_seconds', { level: 'local_region', outcome: 'error' })).toBe(1);
  for (const outcome of ['reached', 'timeout', 'conflict']) {
    for (const level of ['all_regions', 'local_region']) expect(await count(m, 'consistency_wait_seconds', { level, outcome })).toBeUndefined();
  }
});

test('a 500 is logged at error level (a 503 at info), with its request id', async () => {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({ write(c: Buffer, _e, done) { for (const l of c.toString().split('\n')) if (l) lines.push(JSON.parse(l)); done(); } });
  const app = express();
  app.use(requestId(), requestLog(pino({ level: 'info' }, sink)));
  app.get('/boom', (_req, res) => void res.status(500).end());
  app.get('/busy', (_req, res) => void res.status(503).end());
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    // node:http, not fetch: the jest setup checks fetch answers against the OpenAPI document.
    const get = (p: string, id: string) =>
      new Promise<void>((resolve, reject) => http.get(`${base}${p}`, { headers: { 'X-Request-Id': id, connection: 'close' } }, (res) => res.resume().on('end', resolve)).on('error', reject));
    await get('/boom', 'rl-500');
    await get('/busy', 'rl-503');
    for (let i = 0; i < 100 && lines.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
  } finally {
    server.closeAllConnections();
    server.close();
  }
  expect(lines.find((l) => l.requestId === 'rl-500')).toMatchObject({ level: 50, status: 500 });
  expect(lines.find((l) => l.requestId === 'rl-503')).toMatchObject({ level: 30, status: 503 });
});

test('/readyz answers "unreachable" within its bound when the database never answers', async () => {
  const hung = { $queryRawUnsafe: () => new Promise<never>(() => undefined) } as never;
  const check = createReadiness({ db: hung, redisStatus: () => 'ready', log: pino({ level: 'silent' }), timeoutMs: 200 });
  // Its own bound answers, long before the test's (which only tells an answer from a hang).
  const report = await Promise.race([check(), new Promise((r) => setTimeout(() => r('still waiting'), 10_000))]);
  expect(report).toMatchObject({ ready: false, database: 'unreachable' });
});
