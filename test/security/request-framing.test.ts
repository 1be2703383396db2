/**
 * How a request arrives, as a fuzzing review found it mattered (each case was answered or handled wrongly
 * before): a body that is not UTF-8, a body on a write that takes none whose framing then fails (the write
 * committed behind Node's bare 400), requests Node's parser refuses (answered with a bare status line),
 * slow bodies holding the write slots, an unbounded list of validation problems, a JSON null where an
 * object is due. One region in process, over real sockets.
 */
import net from 'node:net';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { BODY_GRACE_MS, overloaded } from '../../src/http/admission';
import { BODY_LIMIT_BYTES } from '../../src/http/body';
import { adminHeaders, call, createOrg, slashidHeaders } from '../support/harness';
import { rawConnection, rawExchangeWith } from '../support/raw-http';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { bearer, issueToken, SSO } from '../infisical/support/fixtures';

const P = '/organizations/sso/saml/provider-credentials';
let r: InProcessRegion;
let idp: IdpServer;
let org: { id: string; api_key: string };
let headers: Record<string, string>;

beforeAll(async () => {
  idp = await startIdpServer();
  r = await startInProcess('request-framing', ['us-iowa'], { metadataAllowedHosts: [idp.hostPort] }, undefined, { requestTimeoutMs: 3000 });
  org = await createOrg(r.url, 'framing');
  headers = { 'SlashID-OrgID': org.id, 'SlashID-API-Key': org.api_key };
});
afterAll(async () => {
  await r.stop();
  await idp.close();
});

const port = () => Number(new URL(r.url).port);

/** Writes `bytes` on a fresh connection to the region and collects what comes back (see rawExchangeWith). */
const rawExchange = (bytes: Buffer | string, waitMs = 3000) => rawExchangeWith(port(), bytes, waitMs);

const head = (method: string, path: string, extra: Record<string, string>) =>
  `${method} ${path} HTTP/1.1\r\nHost: x\r\n${Object.entries(extra).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;

async function credential(label: string): Promise<string> {
  const res = await call(r.url, 'POST', P, { body: { idp_metadata_url: idp.url('okta.xml'), label }, headers });
  expect(res.status).toBe(201);
  return res.body.result.id as string;
}

test('a JSON body that is not UTF-8 (a raw surrogate, 0xFF, an overlong form) is a 400; nothing is written', async () => {
  const id = await credential('utf8');
  for (const bytes of [Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0xff]), Buffer.from([0xc0, 0xaf])]) {
    const body = Buffer.concat([Buffer.from('{"label":"a'), bytes, Buffer.from('b"}')]);
    const answer = await rawExchange(Buffer.concat([Buffer.from(head('PATCH', `${P}/${id}`, { ...headers, 'Content-Type': 'application/json', 'Content-Length': String(body.length), Connection: 'close' })), body]));
    expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
    expect(answer).toContain('{"meta":{},"errors":[{"httpcode":400,"message":"The request body must be UTF-8 encoded JSON."}]}');
  }
  expect((await call(r.url, 'GET', `${P}/${id}`, { headers })).body.result.label).toBe('utf8');
});

test('a DELETE (or a key rotation) whose body framing fails is not carried out', async () => {
  const id = await credential('kept');
  const answer = await rawExchange(head('DELETE', `${P}/${id}`, { ...headers, 'Transfer-Encoding': 'chunked' }) + 'zz\r\n');
  expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
  // Answered in the envelope, not Node's bare status line.
  expect(answer).toMatch(/"errors":\[\{"httpcode":400,"message":"The request is not valid HTTP\/1\.1/);
  await new Promise((res) => setTimeout(res, 300));
  expect((await call(r.url, 'GET', `${P}/${id}`, { headers })).status).toBe(200);

  const rotated = await rawExchange(head('POST', `/admin/organizations/${org.id}/api-keys`, { ...adminHeaders, 'Transfer-Encoding': 'chunked' }) + 'zz\r\n');
  expect(rotated.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
  await new Promise((res) => setTimeout(res, 300));
  // The organization's key still works: nothing was revoked.
  expect((await call(r.url, 'GET', P, { headers })).status).toBe(200);
  // A body one byte over the limit is refused, and so is one within it that is not empty JSON; an empty JSON
  // object of the limit exactly is read and dropped, and the DELETE carried out, as a body of the limit is
  // taken by the operations that take one.
  const over = await rawExchange(head('DELETE', `${P}/${id}`, { ...headers, 'Content-Length': String(BODY_LIMIT_BYTES + 1), Connection: 'close' }) + 'x'.repeat(BODY_LIMIT_BYTES + 1));
  expect(over.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
  expect((await call(r.url, 'GET', `${P}/${id}`, { headers })).status).toBe(200);
  const within = await rawExchange(head('DELETE', `${P}/${id}`, { ...headers, 'Content-Length': String(BODY_LIMIT_BYTES), Connection: 'close' }) + 'x'.repeat(BODY_LIMIT_BYTES));
  expect(within.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
  expect((await call(r.url, 'GET', `${P}/${id}`, { headers })).status).toBe(200);
  const empty = `{${' '.repeat(BODY_LIMIT_BYTES - 2)}}`;
  const deleted = await rawExchange(head('DELETE', `${P}/${id}`, { ...headers, 'Content-Length': String(BODY_LIMIT_BYTES), Connection: 'close' }) + empty);
  expect(deleted.split('\r\n')[0]).toBe('HTTP/1.1 204 No Content');
});

test('a body sent with a transfer coding besides chunked (gzip, chunked; x-foo on a line of its own) is a 400 in the envelope; nothing is written', async () => {
  const id = await credential('te-kept');
  // Node frames such a body by its last coding, chunked, and hands on the bytes with the others still applied:
  // read as they came, this JSON was taken and the PATCH carried out.
  const chunked = (json: string) => `${Buffer.byteLength(json).toString(16)}\r\n${json}\r\n0\r\n\r\n`;
  const patch = (te: Record<string, string>) => head('PATCH', `${P}/${id}`, { ...headers, 'Content-Type': 'application/json', ...te, Connection: 'close' }) + chunked('{"label":"te-changed"}');
  for (const coding of ['gzip, chunked', 'x-foo, chunked', 'identity,chunked']) {
    const answer = await rawExchange(patch({ 'Transfer-Encoding': coding }));
    expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
    expect(answer.toLowerCase()).toContain('connection: close');
    expect(JSON.parse(answer.split('\r\n\r\n')[1] ?? '')).toEqual({ meta: {}, errors: [{ httpcode: 400, message: expect.stringContaining('Transfer-Encoding') }] });
  }
  // Two header lines are one list: gzip, then chunked.
  const twoLines = head('PATCH', `${P}/${id}`, { ...headers, 'Content-Type': 'application/json', 'Transfer-Encoding': 'gzip', Connection: 'close' }).replace('\r\n\r\n', '\r\nTransfer-Encoding: chunked\r\n\r\n');
  expect((await rawExchange(twoLines + chunked('{"label":"te-changed"}'))).split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
  expect((await call(r.url, 'GET', `${P}/${id}`, { headers })).body.result.label).toBe('te-kept');

  const token = await issueToken(r.url, org.id);
  const infisical = await rawExchange(head('PATCH', SSO, { ...bearer(token), 'Content-Type': 'application/json', 'Transfer-Encoding': 'gzip, chunked', Connection: 'close' }) + chunked(JSON.stringify({ organizationId: org.id, isActive: false })));
  expect(infisical.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
  expect(JSON.parse(infisical.split('\r\n\r\n')[1] ?? '')).toMatchObject({ statusCode: 400, error: 'BadRequest', message: expect.stringContaining('Transfer-Encoding') });

  // Chunked alone, in any case, is taken.
  const taken = await rawExchange(patch({ 'Transfer-Encoding': 'Chunked' }));
  expect(taken.split('\r\n')[0]).toBe('HTTP/1.1 204 No Content');
  expect((await call(r.url, 'GET', `${P}/${id}`, { headers })).body.result.label).toBe('te-changed');
});

test('a key rotation whose body arrives in pieces is read whole: fields refuse it, {} in pieces is taken', async () => {
  const o = await createOrg(r.url, 'rotation in pieces');
  // Chunked, a piece at a time: the route is reached with the headers, long before the body is whole.
  const rotateInPieces = async (pieces: string[]) => {
    const c = rawConnection(port());
    await c.connected;
    c.socket.write(head('POST', `/admin/organizations/${o.id}/api-keys`, { ...adminHeaders, 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', Connection: 'close' }));
    for (const piece of pieces) {
      await new Promise((res) => setTimeout(res, 100));
      c.socket.write(`${Buffer.byteLength(piece).toString(16)}\r\n${piece}\r\n`);
    }
    c.socket.write('0\r\n\r\n');
    return c.answered;
  };
  const refused = await rotateInPieces(['{"revoke', '_old":', 'false}']);
  expect(refused.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
  expect(refused).toContain('This operation takes no request body; send none (or {}), not 20 bytes of something else.');
  // Nothing was rotated: the organization's one key still works.
  expect((await call(r.url, 'GET', P, { headers: slashidHeaders(o) })).status).toBe(200);
  const taken = await rotateInPieces(['{', ' ', '}']);
  expect(taken.split('\r\n')[0]).toBe('HTTP/1.1 201 Created');
  expect((await call(r.url, 'GET', P, { headers: slashidHeaders(o) })).status).toBe(401);
});

test('a compressed body sent to an operation that takes none is read decompressed: {} is taken however it is encoded, fields are not', async () => {
  const o = await createOrg(r.url, 'rotation compressed');
  const rotate = async (body: Buffer, encoding: string) => {
    const answer = await rawExchange(Buffer.concat([Buffer.from(head('POST', `/admin/organizations/${o.id}/api-keys`, { ...adminHeaders, 'Content-Type': 'application/json', 'Content-Encoding': encoding, 'Content-Length': String(body.length), Connection: 'close' })), body]));
    return { status: answer.split('\r\n')[0], body: answer.slice(answer.indexOf('\r\n\r\n') + 4) };
  };
  expect((await rotate(gzipSync('{"revoke_old":false}'), 'gzip')).status).toBe('HTTP/1.1 400 Bad Request');
  // Bounded as a body that is taken: white space that inflates past the limit is refused, not read whole.
  expect((await rotate(gzipSync(' '.repeat(BODY_LIMIT_BYTES + 1)), 'gzip')).status).toBe('HTTP/1.1 400 Bad Request');
  expect((await rotate(Buffer.from('{}'), 'zstd')).status).toBe('HTTP/1.1 400 Bad Request');
  // Nothing was rotated: the organization's one key still works.
  expect((await call(r.url, 'GET', P, { headers: slashidHeaders(o) })).status).toBe(200);
  let key = o.api_key;
  for (const [body, encoding] of [[gzipSync('{}'), 'gzip'], [deflateSync('null'), 'deflate'], [brotliCompressSync(' { } '), 'br'], [gzipSync('{}'), 'GZIP'], [Buffer.from('{}'), 'identity']] as const) {
    const res = await rotate(body, encoding);
    expect(res.status).toBe('HTTP/1.1 201 Created');
    expect((await call(r.url, 'GET', P, { headers: slashidHeaders({ id: o.id, api_key: key }) })).status).toBe(401);
    key = (JSON.parse(res.body) as { api_key: string }).api_key;
    expect((await call(r.url, 'GET', P, { headers: slashidHeaders({ id: o.id, api_key: key }) })).status).toBe(200);
  }
});

test('requests Node refuses get their status in the envelope of the API they were sent to', async () => {
  // A control character in a header value (an Idempotency-Key, say).
  const slashid = await rawExchange(head('POST', P, { ...headers, 'Idempotency-Key': 'a\u0001', 'Content-Length': '0' }));
  expect(slashid.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
  // Written on the socket itself, with the headers of every other answer.
  expect(slashid.split('\r\n\r\n')[0]?.split('\r\n')).toEqual(expect.arrayContaining(['x-content-type-options: nosniff', 'cache-control: no-store']));
  expect(JSON.parse(slashid.split('\r\n\r\n')[1] ?? '')).toEqual({ meta: {}, errors: [{ httpcode: 400, message: expect.stringContaining('not valid HTTP/1.1') }] });
  const infisical = await rawExchange(head('POST', SSO, { Authorization: 'Bearer x', 'Idempotency-Key': 'a\u0001', 'Content-Length': '0' }));
  expect(JSON.parse(infisical.split('\r\n\r\n')[1] ?? '')).toMatchObject({ statusCode: 400, error: 'BadRequest' });
  // Headers over Node's 16 KiB.
  const huge = await rawExchange(head('GET', P, { ...headers, 'X-Filler': 'x'.repeat(20_000) }));
  expect(huge.split('\r\n')[0]).toBe('HTTP/1.1 431 Request Header Fields Too Large');
  expect(huge).toContain('"httpcode":431');
  // A long URL counts with the headers, and the message says so (it said "headers" alone).
  const longUrl = await rawExchange(head('GET', `${P}?x=${'y'.repeat(20_000)}`, headers));
  expect(longUrl.split('\r\n')[0]).toBe('HTTP/1.1 431 Request Header Fields Too Large');
  expect(longUrl).toContain('The request line and headers are too large (a long URL counts with them');
  // Named in the Infisical dialect as its other errors are (it was 'BadRequest').
  const hugeInfisical = await rawExchange(head('GET', SSO, { Authorization: 'Bearer x', 'X-Filler': 'x'.repeat(20_000) }));
  expect(JSON.parse(hugeInfisical.split('\r\n\r\n')[1] ?? '')).toMatchObject({ statusCode: 431, error: 'RequestHeaderFieldsTooLarge' });
  // Chunk extensions over Node's 16 KiB are a request too large (413), not a malformed one.
  const extensions = await rawExchange(head('POST', P, { ...headers, 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' }) + `2;x=${'y'.repeat(20_000)}\r\n{}\r\n0\r\n\r\n`);
  expect(extensions.split('\r\n')[0]).toBe('HTTP/1.1 413 Payload Too Large');
  expect(JSON.parse(extensions.split('\r\n\r\n')[1] ?? '')).toEqual({ meta: {}, errors: [{ httpcode: 413, message: 'The request is too large; nothing was done.' }] });
});

test('what Node answered by itself (an Expect it does not know, a missing Host, a CONNECT) is answered in the envelope', async () => {
  const body = (answer: string) => JSON.parse(answer.split('\r\n\r\n')[1] ?? '') as unknown;
  const expectNope = await rawExchange(head('GET', P, { ...headers, Expect: 'nope', Connection: 'close' }));
  expect(expectNope.split('\r\n')[0]).toBe('HTTP/1.1 417 Expectation Failed');
  expect(body(expectNope)).toEqual({ meta: {}, errors: [{ httpcode: 417, message: expect.stringContaining('100-continue') }] });
  const expectInfisical = await rawExchange(head('GET', SSO, { Authorization: 'Bearer x', Expect: 'nope', Connection: 'close' }));
  expect(body(expectInfisical)).toMatchObject({ statusCode: 417, error: 'ExpectationFailed' });

  const noHost = await rawExchange(`GET ${P} HTTP/1.1\r\nSlashID-OrgID: ${org.id}\r\nSlashID-API-Key: ${org.api_key}\r\nConnection: close\r\n\r\n`);
  expect(noHost.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
  expect(body(noHost)).toEqual({ meta: {}, errors: [{ httpcode: 400, message: expect.stringContaining('Host header') }] });
  // HTTP/1.0 needs none.
  expect((await rawExchange(`GET /healthz HTTP/1.0\r\n\r\n`)).split('\r\n')[0]).toBe('HTTP/1.1 200 OK');

  for (const [target, shape] of [[P, { meta: {}, errors: [{ httpcode: 405, message: expect.stringContaining('CONNECT') }] }], [SSO, { statusCode: 405, error: 'MethodNotAllowed' }]] as const) {
    const connect = await rawExchange(`CONNECT ${target} HTTP/1.1\r\nHost: x\r\n\r\n`);
    expect(connect.split('\r\n')[0]).toBe('HTTP/1.1 405 Method Not Allowed');
    // A 405 is cacheable by default: it says no-store as every other answer does.
    expect(connect.split('\r\n\r\n')[0]?.split('\r\n')).toContain('cache-control: no-store');
    expect(body(connect)).toMatchObject(shape);
  }
});

test('an overload 503 the front door answers at once says Cache-Control: no-store, as every answer of the app does', async () => {
  // The front door's verdict forced (a full gate), so that its answer, written before the app, is the one read.
  const admission = r.region.admission;
  if (!admission) throw new Error('the region runs without admission control');
  const refuseAtOnce = admission.refuseAtOnce;
  admission.refuseAtOnce = () => overloaded('reads', 'queue_full', 2);
  let res;
  try {
    res = await call(r.url, 'GET', P, { headers });
  } finally {
    admission.refuseAtOnce = refuseAtOnce;
  }
  expect({ status: res.status, cacheControl: res.headers.get('cache-control'), retryAfter: res.headers.get('retry-after') }).toEqual({ status: 503, cacheControl: 'no-store', retryAfter: '2' });
});

test('no 100 Continue for a request that is then refused; an OPTIONS is refused like the rest; an upgrade request closes its connection', async () => {
  // Node sent 100 Continue for any Expect naming it, and the app then refused the body it had asked for.
  const mixed = await rawExchange(head('POST', P, { ...headers, Expect: '100-continue, foo', 'Content-Type': 'application/json', 'Content-Length': '2' }), 1500);
  expect(mixed.split('\r\n')[0]).toBe('HTTP/1.1 417 Expectation Failed');
  expect(mixed).not.toContain('100 Continue');
  // A plain 100-continue still gets its 100, then its body is read and the write carried out; in any case,
  // as an expectation's value is case-insensitive (RFC 9110).
  const id = await credential('continue');
  for (const expectation of ['100-continue', '100-Continue']) {
    const body = `{"label":"continued ${expectation}"}`;
    const continued = await new Promise<string>((resolve) => {
      let got = '';
      const socket = net.connect(port(), '127.0.0.1', () => socket.write(head('PATCH', `${P}/${id}`, {
        ...headers, Expect: expectation, 'Content-Type': 'application/json', 'Content-Length': String(body.length), Connection: 'close',
      })));
      socket.on('data', (d: Buffer) => {
        got += d.toString('utf8');
        if (got.startsWith('HTTP/1.1 100 Continue\r\n\r\n') && !got.includes('204')) socket.write(body);
      });
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(got));
      setTimeout(() => socket.destroy(), 5000);
    });
    expect({ expectation, statuses: continued.match(/HTTP\/1\.1 \d{3} /g) }).toEqual({ expectation, statuses: ['HTTP/1.1 100 ', 'HTTP/1.1 204 '] });
    expect((await call(r.url, 'GET', `${P}/${id}`, { headers })).body.result.label).toBe(`continued ${expectation}`);
  }
  const options = await rawExchange(`OPTIONS ${P} HTTP/1.1\r\nConnection: close\r\n\r\n`);
  expect(options.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
  // A request pipelined after an upgrade request was never read (Node's parser stays in upgrade mode): the
  // connection closes after the first answer instead of hanging until the keep-alive timeout.
  const upgrade = await rawExchange(head('GET', '/healthz', { Upgrade: 'websocket', Connection: 'Upgrade' }) + head('GET', '/healthz', {}), 4000);
  expect(upgrade.match(/HTTP\/1\.1 \d{3} /g)).toEqual(['HTTP/1.1 200 ']);
  expect(upgrade).toMatch(/\r\nconnection: close\r\n/i);
  // Refused at the edge (no Host here), it closes too: it was kept alive, the request behind it unread.
  const refusedUpgrade = await rawExchange(`GET /healthz HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n${head('GET', '/healthz', {})}`, 4000);
  expect(refusedUpgrade.match(/HTTP\/1\.1 \d{3} /g)).toEqual(['HTTP/1.1 400 ']);
  expect(refusedUpgrade).toMatch(/\r\nconnection: close\r\n/i);
});

test('a request with as many headers as Node keeps is refused (431), not read with the rest dropped; fewer are all read', async () => {
  const id = await credential('many headers');
  const patch = (n: number, consistency: string) => rawExchange(head('PATCH', `${P}/${id}`, {
    ...headers, 'Content-Type': 'application/json', 'Content-Length': '14',
    ...Object.fromEntries(Array.from({ length: n }, (_, i) => [`X${i}`, '1'])), 'SlashID-Required-Consistency': consistency, Connection: 'close',
  }) + '{"label":"p2"}');
  // Before: Node kept the first ~1,000 and dropped the rest, the consistency header among them (an
  // all_regions write answered as local_region).
  const refused = await patch(1100, 'bogus');
  expect(refused.split('\r\n')[0]).toBe('HTTP/1.1 431 Request Header Fields Too Large');
  expect(JSON.parse(refused.split('\r\n\r\n')[1] ?? '')).toEqual({ meta: {}, errors: [{ httpcode: 431, message: expect.stringContaining('at most 199 headers') }] });
  // Thousands of empty headers fit in Node's 16 KiB (it counts names and values only): refused too.
  const empty = await rawExchange(`GET ${P} HTTP/1.1\r\nHost: x\r\n${'a:\r\n'.repeat(16_000)}\r\n`);
  expect(empty.split('\r\n')[0]).toBe('HTTP/1.1 431 Request Header Fields Too Large');
  // Under the cap, the last header is read like the first.
  const read = await patch(150, 'bogus');
  expect(read.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
  expect(read).toMatch(/SlashID-Required-Consistency/i);
  expect((await call(r.url, 'GET', `${P}/${id}`, { headers })).body.result.label).toBe('many headers');
});

test('a CONNECT whose connection is reset while it is answered does not take the region down; a request after a 417 is answered', async () => {
  for (let i = 0; i < 5; i++) {
    await new Promise<void>((resolve) => {
      const socket = net.connect(port(), '127.0.0.1', () => {
        socket.write(`CONNECT ${P} HTTP/1.1\r\nHost: x\r\n\r\n${'z'.repeat(100_000)}`);
        setImmediate(() => {
          socket.resetAndDestroy();
          resolve();
        });
      });
      socket.on('error', () => undefined);
    });
  }
  expect((await call(r.url, 'GET', '/healthz')).status).toBe(200);
  // Pipelined behind a refused Expect, a request is carried out and answered on the same connection.
  const id = await credential('after expect');
  const both = await rawExchange(head('GET', P, { ...headers, Expect: 'nope' }) + head('DELETE', `${P}/${id}`, { ...headers, Connection: 'close' }));
  expect(both.match(/HTTP\/1\.1 \d{3} /g)).toEqual(['HTTP/1.1 417 ', 'HTTP/1.1 204 ']);
  expect((await call(r.url, 'GET', `${P}/${id}`, { headers })).status).toBe(404);
});

/**
 * `n` connections that each send `start` (a request's headers and the first bytes of its body) and then
 * nothing; after `afterMs`, a PATCH of credential `id` labelled `label` must answer 204 (it found a write slot).
 */
async function patchWhileTrickling(n: number, start: string, afterMs: number, id: string, label: string): Promise<void> {
  const slow = Array.from({ length: n }, () => {
    const socket = net.connect(port(), '127.0.0.1', () => socket.write(start));
    socket.on('error', () => undefined);
    return socket;
  });
  try {
    await new Promise((res) => setTimeout(res, afterMs));
    expect((await call(r.url, 'PATCH', `${P}/${id}`, { body: { label }, headers })).status).toBe(204);
  } finally {
    for (const s of slow) s.destroy();
  }
}

test('bodies that trickle in do not hold the write slots: other writes go on', async () => {
  const id = await credential('slots');
  // More slow forms than the region has write slots, to the ACS (which takes no credentials).
  const form = head('POST', `/sso/saml/${id}/acs`, { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': '100000' }) + 'S';
  await patchWhileTrickling(10, form, 1500, id, 'while slow forms arrive');
});

test('a body with thousands of problems lists the first of them and how many more', async () => {
  const id = await credential('many');
  const res = await call(r.url, 'PATCH', `${P}/${id}`, { body: { email_claims: Array.from({ length: 5000 }, () => '') }, headers });
  expect(res.status).toBe(400);
  expect(res.body.errors[0].message.length).toBeLessThan(3000);
  expect(res.body.errors[0].message).toMatch(/and \d+ more problems/);
  const token = await issueToken(r.url, org.id);
  const unknown = Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`k${i}`, 1]));
  const infisical = await call(r.url, 'PATCH', SSO, { body: { organizationId: org.id, ...unknown }, headers: bearer(token) });
  expect(infisical.status).toBe(422);
  expect(infisical.body.message.length).toBeLessThanOrEqual(21);
  expect(infisical.body.message.at(-1).message).toMatch(/and \d+ more issues/);
});

test('a JSON null is not an object: the access-token body is refused, not taken for no body', async () => {
  const res = await call(r.url, 'POST', `/admin/organizations/${org.id}/access-tokens`, { rawBody: 'null', headers: { ...adminHeaders, 'content-type': 'application/json' } });
  expect(res.status).toBe(400);
  expect((await call(r.url, 'POST', `/admin/organizations/${org.id}/access-tokens`, { headers: adminHeaders })).status).toBe(201);
});

test('a request still arriving at the request timeout is a 408 in the envelope, its connection closed, and it is not carried out', async () => {
  const id = await credential('before timeout');
  const body = '{"label":"after the timeout"}';
  // A client that keeps its side open after the server's answer, and sends the rest of the body then.
  const socket = net.connect({ port: port(), host: '127.0.0.1', allowHalfOpen: true });
  const got: Buffer[] = [];
  socket.on('error', () => undefined);
  const answered = new Promise<boolean>((res) => {
    socket.on('data', (d: Buffer) => {
      got.push(d);
      res(true);
    });
    setTimeout(() => res(false), 10_000);
  });
  socket.write(head('PATCH', `${P}/${id}`, { ...headers, 'SlashID-Required-Consistency-Timeout': '60', 'Content-Type': 'application/json', 'Content-Length': String(body.length) }) + body.slice(0, 5));
  expect(await answered).toBe(true);
  // The rest, too late: the server closed the connection (it kept reading before, and carried the write out
  // after its 408 said nothing was done).
  socket.write(body.slice(5));
  await new Promise((res) => setTimeout(res, 300));
  socket.destroy();
  const text = Buffer.concat(got).toString('utf8');
  expect(text.split('\r\n')[0]).toBe('HTTP/1.1 408 Request Timeout');
  expect(text).toContain('"httpcode":408');
  await new Promise((res) => setTimeout(res, 500));
  expect((await call(r.url, 'GET', `${P}/${id}`, { headers })).body.result.label).toBe('before timeout');
});

test('a body declared over the limit is a 400 before any of it is read, not a 408 once the declared bytes fail to come; nothing is written', async () => {
  const id = await credential('declared');
  // 100 MB declared, one byte sent: the answer comes at once (the request timeout here is 3 s), and the
  // connection is closed after it.
  const declared = (method: string) => rawExchange(head(method, `${P}/${id}`, { ...headers, 'Content-Type': 'application/json', 'Content-Length': '100000000' }) + '{', 10_000);
  const patched = await declared('PATCH');
  expect(patched.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
  expect(patched).toContain(`"message":"The request body is too large (the limit is ${BODY_LIMIT_BYTES / 1024} KiB)."`);
  expect(patched).toMatch(/\r\nConnection: close\r\n/i);
  const deleted = await declared('DELETE');
  expect(deleted.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
  expect(deleted).toContain(`this one is over ${BODY_LIMIT_BYTES / 1024} KiB`);
  expect((await call(r.url, 'GET', `${P}/${id}`, { headers })).body.result.label).toBe('declared');
});

test("a field name or a path id of the client's comes back in a message as its header values do: control and formatting characters as ?, a long one cut", async () => {
  const unknown = await call(r.url, 'POST', P, { body: { idp_metadata_url: idp.url('okta.xml'), 'a\u001b[31mb\u202ec': 1 }, headers });
  expect(unknown.status).toBe(400);
  expect(unknown.body.errors[0].message).toContain("unknown field 'a?[31mb?c'");
  const long = await call(r.url, 'POST', P, { body: { idp_metadata_url: idp.url('okta.xml'), ['n'.repeat(60_000)]: 1 }, headers });
  expect(long.body.errors[0].message).toContain(`unknown field '${'n'.repeat(64)}…' (60000 characters)`);
  expect(JSON.stringify(long.body).length).toBeLessThan(1000);
  const id = await call(r.url, 'GET', `${P}/x%1B%E2%80%AEy`, { headers });
  expect(id.status).toBe(404);
  expect(id.body.errors[0].message).toBe("SAML provider credentials 'x??y' not found.");
});

test("every route's path id, and an Expect header, come back cleaned as well (the SSO, change and admin routes quoted them raw)", async () => {
  const raw = 'x%1B%5B31m%E2%80%AEy';
  const token = bearer(await issueToken(r.url, org.id));
  const messages = [
    ...await Promise.all(['metadata', 'login'].map(async (end) => (await call(r.url, 'GET', `/sso/saml/${raw}/${end}`)).body.errors[0].message)),
    (await call(r.url, 'POST', `/sso/saml/${raw}/acs`, { rawBody: 'SAMLResponse=x', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } })).body.errors[0].message,
    (await call(r.url, 'GET', `/organizations/replication/changes/${raw}`, { headers })).body.errors[0].message,
    (await call(r.url, 'GET', `/api/v1/replication/changes/${raw}`, { headers: token })).body.message,
    (await call(r.url, 'POST', `/admin/organizations/${raw}/access-tokens`, { headers: adminHeaders })).body.errors[0].message,
    (await call(r.url, 'POST', `/admin/metadata-refresh/${raw}/accept`, { headers: adminHeaders })).body.errors[0].message,
  ];
  // Both dialects' change routes follow the sub-organizations' changes too, and say so alike.
  expect(messages[4]).toBe(messages[3]);
  for (const message of messages) {
    expect(message).toMatch(/'x\?\[31m\?y'/);
    expect(message).not.toMatch(/[\u001b\u202e]/);
  }
  // Header bytes arrive as latin1: UTF-8 is shown as such (a right-to-left override as ?), not as latin1 with C1 controls.
  const expectation = await rawExchange(Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: a\u202eéb\r\nConnection: close\r\n\r\n', 'utf8'));
  expect(expectation.split('\r\n')[0]).toBe('HTTP/1.1 417 Expectation Failed');
  expect(JSON.parse(expectation.split('\r\n\r\n')[1] ?? '')).toEqual({ meta: {}, errors: [{ httpcode: 417, message: "Only \"Expect: 100-continue\" is supported (got 'a?éb'); nothing was done." }] });
});

test('a body sent with two Content-Types is a 400, whichever comes first; nothing is written', async () => {
  const id = await credential('two types');
  const body = '{"label":"changed"}';
  for (const types of [['application/json', 'text/plain'], ['text/plain', 'application/json']]) {
    const answer = await rawExchange(`PATCH ${P}/${id} HTTP/1.1\r\nHost: x\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}${types.map((t) => `Content-Type: ${t}\r\n`).join('')}Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
    expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
    expect(answer).toContain('"message":"Content-Type is given 2 times; send it once."');
  }
  expect((await call(r.url, 'GET', `${P}/${id}`, { headers })).body.result.label).toBe('two types');
});

test('a pipelined request Node refuses does not take the place of the answer to the whole request before it', async () => {
  const id = await credential('pipelined');
  const answer = await rawExchange(head('DELETE', `${P}/${id}`, headers) + head('GET', P, { ...headers, 'X-Bad': 'a\u0001' }));
  // The DELETE is answered (and carried out); then the connection closes, with no 400 written into it.
  expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 204 No Content');
  // Only one status line in the bytes (the request id, a UUID, may hold the digits 400 itself).
  expect(answer.match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 204']);
  expect((await call(r.url, 'GET', `${P}/${id}`, { headers })).status).toBe(404);
});

test('after a pipelined request Node refuses, the connection is read no further while the answer before it is sent', async () => {
  const id = await credential('answered first');
  const { Client } = await import('pg');
  const holder = new Client({ connectionString: r.deployment.file.regions[0]?.databaseUrl });
  await holder.connect();
  // How often Node hands the connection's parse errors over: each chunk read after the first came back.
  let refusals = 0;
  const onRefusal = () => void (refusals += 1);
  r.region.server.prependListener('clientError', onRefusal);
  const socket = net.connect(port(), '127.0.0.1');
  const got: Buffer[] = [];
  socket.on('data', (d: Buffer) => got.push(d));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((res) => socket.on('close', () => res()));
  try {
    // The PATCH waits on the credential's lock, so its answer is still to come when the rest arrives.
    await holder.query('BEGIN');
    await holder.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`saml_provider_credentials:${id}`]);
    const body = '{"label":"patched"}';
    socket.write(head('PATCH', `${P}/${id}`, { ...headers, 'Content-Type': 'application/json', 'Content-Length': String(body.length) }) + body);
    const waiting = async () => (await holder.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")).rows[0]?.n === 1;
    while (!(await waiting())) await new Promise((res) => setTimeout(res, 20));
    socket.write(head('GET', P, { ...headers, 'X-Bad': 'a\u0001' }));
    // Each further chunk came back to the handler, which added a 'close' listener for each.
    for (let i = 0; i < 15; i++) {
      socket.write(`junk ${i}\r\n`);
      await new Promise((res) => setTimeout(res, 10));
    }
    await holder.query('COMMIT');
    await closed;
  } finally {
    r.region.server.off('clientError', onRefusal);
    socket.destroy();
    await holder.end();
  }
  expect(Buffer.concat(got).toString('utf8').split('\r\n')[0]).toBe('HTTP/1.1 204 No Content');
  expect(refusals).toBe(1);
  expect((await call(r.url, 'GET', `${P}/${id}`, { headers })).body.result.label).toBe('patched');
});

test('an Infisical request whose body framing fails is answered in Infisical\'s shape', async () => {
  const token = await issueToken(r.url, org.id);
  const socket = net.connect(port(), '127.0.0.1');
  const got: Buffer[] = [];
  socket.on('data', (d: Buffer) => got.push(d));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((res) => socket.on('close', () => res()));
  socket.write(head('PATCH', SSO, { ...bearer(token), 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' }));
  await new Promise((res) => setTimeout(res, 300));
  socket.write('zz\r\n');
  await closed;
  const text = Buffer.concat(got).toString('utf8');
  expect(JSON.parse(text.split('\r\n\r\n')[1] ?? '')).toMatchObject({ statusCode: 400, error: 'BadRequest' });
});

test('DELETE bodies that trickle in do not hold the write slots either', async () => {
  const id = await credential('delete slots');
  await patchWhileTrickling(8, head('DELETE', `${P}/${id}`, { ...headers, 'Transfer-Encoding': 'chunked' }) + '1\r\nx\r\n', 1000, id, 'while slow deletes arrive');
  await new Promise((res) => setTimeout(res, 300));
  expect((await call(r.url, 'GET', `${P}/${id}`, { headers })).body.result.label).toBe('while slow deletes arrive');
});

test('a DELETE body that trickles in past the grace and then runs over the limit is refused, and the DELETE not carried out', async () => {
  const id = await credential('trickled over');
  const { socket, connected, answered } = rawConnection(port());
  try {
    await connected;
    socket.write(head('DELETE', `${P}/${id}`, { ...headers, 'Transfer-Encoding': 'chunked', Connection: 'close' }) + '1\r\nx\r\n');
    // Past the grace a body may take with its slot: the rest is received without it (receivingOutsideAdmission).
    await new Promise((res) => setTimeout(res, BODY_GRACE_MS + 300));
    const rest = 'x'.repeat(BODY_LIMIT_BYTES);
    socket.write(`${rest.length.toString(16)}\r\n${rest}\r\n0\r\n\r\n`);
    const text = await answered;
    expect(text.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
    expect(text).toContain('This operation takes no request body');
  } finally {
    socket.destroy();
  }
  await new Promise((res) => setTimeout(res, 300));
  expect((await call(r.url, 'GET', `${P}/${id}`, { headers })).body.result.label).toBe('trickled over');
});

test('the health, admin and OpenAPI paths answer in absolute form and in any case, as the API\'s do', async () => {
  const status = (answer: string) => answer.split('\r\n')[0];
  // Before: 404 "No such endpoint" for each (the API's own paths answered).
  // A fragment (a client that does not strip it) as Express routes it: before, /healthz#x was a 405 "does not take GET; it takes GET, HEAD".
  for (const target of [`http://127.0.0.1:${port()}/healthz`, '/HEALTHZ', `http://x/openapi.json`, '/healthz#x']) {
    expect(status(await rawExchange(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`))).toBe('HTTP/1.1 200 OK');
  }
  for (const target of [`http://127.0.0.1:${port()}/admin/replication`, '/ADMIN/replication', '/admin/replication#x']) {
    expect(status(await rawExchange(`GET ${target} HTTP/1.1\r\nHost: x\r\nAuthorization: ${adminHeaders.authorization}\r\nConnection: close\r\n\r\n`))).toBe('HTTP/1.1 200 OK');
    // Still behind the admin token.
    expect(status(await rawExchange(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`))).toBe('HTTP/1.1 401 Unauthorized');
  }
  // And an Infisical path with one is answered in that dialect's shape.
  const options = await rawExchange(`OPTIONS ${SSO}#x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  expect(status(options)).toBe('HTTP/1.1 404 Not Found');
  expect(JSON.parse(options.split('\r\n\r\n')[1] ?? '')).toMatchObject({ statusCode: 404, error: 'NotFound' });
});
