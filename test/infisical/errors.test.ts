/**
 * The Infisical error renderer on its own: errors no route produces on purpose (500, oversized bodies).
 */
import express from 'express';
import pino from 'pino';
import request from 'supertest';
import { jsonBody } from '../../src/http/body';
import { requestId } from '../../src/http/request-id';
import { infisicalErrors } from '../../src/infisical/errors';
import { expectSeedShape } from './support/seed-schemas';

function appThrowing(err: unknown) {
  const lines: string[] = [];
  const log = pino({ level: 'error' }, { write: (line: string) => lines.push(line) });
  const app = express();
  app.use(requestId());
  app.post('/boom', jsonBody(), () => {
    throw err;
  });
  app.use(infisicalErrors(log));
  return { app, lines };
}

test('an unexpected error is a 500 that says only "Something went wrong", and is logged with the request id', async () => {
  const { app, lines } = appThrowing(new Error('connection to postgres://secret@db failed'));
  const res = await request(app).post('/boom').set('x-request-id', 'req-123').send({ a: 1 });
  expect(res.status).toBe(500);
  expectSeedShape('POST', res);
  expect(res.body).toEqual({ reqId: 'req-123', statusCode: 500, message: 'Something went wrong', error: 'InternalServerError' });
  expect(lines.join('')).toContain('req-123');
  expect(lines.join('')).toContain('connection to postgres');
});

test('a body over the size limit is a 400 in Infisical shape', async () => {
  const { app } = appThrowing(new Error('unreachable'));
  const res = await request(app).post('/boom').set('content-type', 'application/json').send(JSON.stringify({ a: 'x'.repeat(70 * 1024) }));
  expect(res.status).toBe(400);
  expectSeedShape('POST', res);
  expect(res.body.message).toContain('too large');
});

test('a Content-Encoding the service cannot decode is a 400 that names the encoding, not one that blames the charset', async () => {
  const { app } = appThrowing(new Error('unreachable'));
  const body = JSON.stringify({ a: 1 });
  for (const encoding of ['compress', 'gzip, gzip']) {
    const res = await request(app).post('/boom').set('content-type', 'application/json').set('content-encoding', encoding).send(body);
    expect(res.status).toBe(400);
    expectSeedShape('POST', res);
    expect(res.body.error).toBe('BadRequest');
    expect(res.body.message).toBe(`Content-Encoding '${encoding}' is not supported: send the body uncompressed, or compressed with gzip, deflate or br.`);
  }
});
