/**
 * A request whose body does not arrive whole in time is answered 408 by the listener's edge (src/http/edges.ts),
 * after the app took it: that answer is the request's, under its request id, and its log line says 408.
 * Headers that do not arrive whole in time get their 408 in the envelope of the path the client sent.
 */
import pino from 'pino';
import { createOrg, eventually } from '../support/harness';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { rawConnection, rawExchangeWith } from '../support/raw-http';
import { issueToken, SSO } from './support/fixtures';
import { logLines, type LogLine } from '../support/log-lines';
import { scrape } from '../observability/support';

type Line = LogLine;
const { lines, sink } = logLines();

let r: InProcessRegion;
beforeAll(async () => {
  const log = pino({ level: 'info', base: { region: 'us-iowa' } }, sink);
  r = await startInProcess('infisical-slow', ['us-iowa'], {}, undefined, { requestTimeoutMs: 2000, log });
});
afterAll(async () => {
  await r?.stop();
});

test('the 408 of a body that never arrives whole carries the request id the client chose, and the log line says 408', async () => {
  const org = await createOrg(r.url, 'slow');
  const token = await issueToken(r.url, org.id);
  const head = [
    `PATCH ${SSO} HTTP/1.1`, 'Host: x', 'X-Request-Id: slow-body-1', `Authorization: Bearer ${token}`,
    'Content-Type: application/json', 'Content-Length: 100', '', '',
  ].join('\r\n');
  // 100 bytes announced, a few sent: the region's request timeout (2 s here) ends it.
  const answer = await rawExchangeWith(Number(new URL(r.url).port), `${head}{"organizationId":`, 15_000);
  expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 408 Request Timeout');
  expect(answer.toLowerCase()).toContain('\r\nx-request-id: slow-body-1\r\n');
  const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
  expect(body).toEqual({ reqId: 'slow-body-1', statusCode: 408, message: 'The request did not arrive whole in time; nothing was done.', error: 'RequestTimeout' });

  let line: Line | undefined;
  await eventually(async () => (line = lines.find((l) => l.msg === 'request' && l.requestId === 'slow-body-1')) !== undefined, 5000, 20);
  expect(line).toMatchObject({ method: 'PATCH', path: SSO, status: 408 });
  expect(line).not.toHaveProperty('aborted');
  // And it is counted in the request metrics, with that status (it was left out: nothing was written through res).
  const m = await scrape(r.url);
  const counted = m.samples('http_request_duration_seconds_count').filter((x) => x.labels.method === 'PATCH' && x.labels.status === '408');
  expect(counted.reduce((n, x) => n + x.value, 0)).toBe(1);
});

/** The status line and JSON body of a raw answer. */
function parsed(answer: string): { status: string; body: unknown } {
  return { status: answer.split('\r\n')[0] ?? '', body: JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as unknown };
}

test('headers that never arrive whole get their 408 in the envelope of the path the client sent: Infisical\'s under /api/v1, SlashID\'s elsewhere', async () => {
  const port = Number(new URL(r.url).port);
  // The request line and a header, never the blank line that ends them: the headers timeout (2 s here) ends it.
  const infisical = parsed(await rawExchangeWith(port, `GET ${SSO}?organizationId=x HTTP/1.1\r\nHost: x\r\nX-Partial: y`, 15_000));
  expect(infisical.status).toBe('HTTP/1.1 408 Request Timeout');
  expect(infisical.body).toEqual({ reqId: expect.any(String), statusCode: 408, message: 'The request did not arrive whole in time; nothing was done.', error: 'RequestTimeout' });
  const slashid = parsed(await rawExchangeWith(port, 'GET /organizations/sso/saml/provider-credentials HTTP/1.1\r\nHost: x\r\nX-Partial: y', 15_000));
  expect(slashid.status).toBe('HTTP/1.1 408 Request Timeout');
  expect(slashid.body).toEqual({ meta: {}, errors: [{ httpcode: 408, message: 'The request did not arrive whole in time; nothing was done.' }] });
  // The request line alone, cut short (no version yet): still the path's envelope.
  const cut = parsed(await rawExchangeWith(port, `GET ${SSO}`, 15_000));
  expect(cut.body).toMatchObject({ statusCode: 408, error: 'RequestTimeout' });
});

test('on a kept-alive connection, the 408 of a second request whose headers never arrive whole is in that request\'s envelope, not the first one\'s', async () => {
  const port = Number(new URL(r.url).port);
  const { socket, connected, answered } = rawConnection(port);
  await connected;
  const first = new Promise<void>((resolve) => socket.once('data', () => resolve()));
  // The first request's headers in two reads (what is kept of the first must not be taken for the second's).
  socket.write('GET /organizations/sso/saml/provider-credentials HTTP/1.1\r\n');
  await new Promise((resolve) => setTimeout(resolve, 200));
  socket.write('Host: x\r\n\r\n');
  await first; // its 401, the connection kept alive
  socket.write(`GET ${SSO}?organizationId=x HTTP/1.1\r\nHost: x\r\nX-Partial: y`);
  const answer = await answered;
  const second = answer.slice(answer.lastIndexOf('HTTP/1.1 '));
  expect(parsed(second)).toEqual({
    status: 'HTTP/1.1 408 Request Timeout',
    body: { reqId: expect.any(String), statusCode: 408, message: 'The request did not arrive whole in time; nothing was done.', error: 'RequestTimeout' },
  });
});
