/**
 * The check every test's answers go through (test/support/openapi-setup.ts): it must catch an undocumented
 * route, an undocumented status and a body that does not match, and let a matching answer through.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import fs from 'node:fs';
import { FEATURES } from '../../src/features';
import { openApiDocument } from '../../src/openapi/feature';
import { bodySchemas, checkAgainstDocument, DOCUMENT_ENV, newAjv, precompiledValidator, schemasCompiledHere } from '../support/openapi-check';
import { takeFailures } from '../support/openapi-setup';

const json = (body: unknown) => JSON.stringify(body);
const slashidError = (status: number) => json({ meta: {}, errors: [{ httpcode: status, message: 'x' }] });
const org = { id: '0192f1c8-7a4e-7c2a-9a1b-2b3c4d5e6f70', name: 'acme', parent_id: null, created_at: '2026-11-30T00:00:00.000Z' };
const answer = (method: string, path: string, status: number, body: string, contentType = 'application/json; charset=utf-8') =>
  checkAgainstDocument({ method, path, status, contentType, body });

describe('checking an answer against the OpenAPI document', () => {
  it("checks against the service's current document, which the run's global setup wrote once", () => {
    const file = process.env[DOCUMENT_ENV];
    expect(file && fs.existsSync(file)).toBeTruthy();
    expect(JSON.parse(fs.readFileSync(file as string, 'utf8'))).toEqual(JSON.parse(JSON.stringify(openApiDocument(FEATURES))));
  });

  it('lets a documented status with a matching body through', () => {
    expect(answer('GET', `/admin/organizations/${org.id}`, 200, json(org))).toBeNull();
    expect(answer('GET', '/admin/organizations/x', 404, slashidError(404))).toBeNull();
    expect(answer('GET', '/metrics', 200, '# HELP x\n', 'text/plain; version=0.0.4; charset=utf-8')).toBeNull();
  });

  it('refuses a body that does not match, naming the field', () => {
    expect(answer('GET', `/admin/organizations/${org.id}`, 200, json({ ...org, api_key: 'leak' }))).toMatch(/additional properties.*api_key/);
    expect(answer('GET', `/admin/organizations/${org.id}`, 200, json({ ...org, created_at: 5 }))).toMatch(/created_at must be string/);
  });

  it('refuses a string not in its documented format', () => {
    expect(answer('GET', `/admin/organizations/${org.id}`, 200, json({ ...org, created_at: 'yesterday' }))).toMatch(/created_at must match format "date-time"/);
  });

  it("validates with what the run's global setup compiled, each validator finding what ajv compiling the schema here finds", () => {
    const doc = JSON.parse(fs.readFileSync(process.env[DOCUMENT_ENV] as string, 'utf8')) as Record<string, unknown>;
    const ajv = newAjv();
    const bodies = [{}, { unexpected: 1 }, [], 'x', 5, null];
    const schemas = [...bodySchemas(doc)];
    expect(schemas.length).toBeGreaterThan(100);
    // A sample (compiling all ~350 here takes seconds): every eighth, and every unknown path's error envelope.
    const sample = schemas.filter(([key], i) => i % 8 === 0 || key.startsWith('unknown '));
    for (const [key, schema] of sample) {
      const precompiled = precompiledValidator(key);
      if (!precompiled) throw new Error(`no compiled validator for ${key}`);
      const here = ajv.compile(schema);
      const found = bodies.map((b) => ({ valid: precompiled(b), errors: precompiled.errors }));
      expect({ key, found }).toEqual({ key, found: bodies.map((b) => ({ valid: here(b), errors: here.errors })) });
    }
    // The answers checked above went through those validators: this file compiled none through the check.
    expect(schemasCompiledHere()).toBe(0);
  });

  it('refuses an undocumented status and an undocumented route', () => {
    expect(answer('GET', `/admin/organizations/${org.id}`, 418, slashidError(418))).toMatch(/status 418 is not documented/);
    expect(answer('GET', '/admin/nothing-here', 200, json({}))).toMatch(/no documented operation/);
  });

  it('wants a 405 for a documented path asked with another method, and a 404 for one of Infisical\'s', () => {
    expect(answer('PUT', `/admin/organizations/${org.id}`, 405, slashidError(405))).toBeNull();
    expect(answer('PUT', `/admin/organizations/${org.id}`, 404, slashidError(404))).toMatch(/no documented operation matches PUT .*\(expected 405\)/);
    expect(answer('PUT', '/nothing-here', 405, slashidError(405))).toMatch(/\(expected 404\)/);
    const infisical404 = json({ reqId: 'r', statusCode: 404, message: 'Route DELETE:/api/v1/sso/config not found.', error: 'NotFound' });
    expect(answer('DELETE', '/api/v1/sso/config', 404, infisical404)).toBeNull();
  });

  it("lets an unknown path's 404 through only in its dialect's envelope", () => {
    expect(answer('GET', '/nothing-here', 404, slashidError(404))).toBeNull();
    const infisical404 = json({ reqId: 'r', statusCode: 404, message: 'Route GET:/api/v1/nope not found.', error: 'NotFound' });
    expect(answer('GET', '/api/v1/nope', 404, infisical404)).toBeNull();
    expect(answer('GET', '/api/v1/nope', 404, slashidError(404))).toMatch(/does not match/);
  });

  it('is applied to every answer a test receives through fetch from a server with X-Request-Id', async () => {
    const server = http.createServer((req, res) => {
      res.setHeader('X-Request-Id', 'r1');
      res.setHeader('Content-Type', 'application/json');
      if (req.url !== '/healthz?sniffable') res.setHeader('X-Content-Type-Options', 'nosniff');
      res.end(req.url?.startsWith('/healthz') ? json({ status: 'ok', region: 'r', pid: 1, redis: 'ready' }) : json({}));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      await fetch(`${base}/healthz`);
      expect(await takeFailures()).toEqual([]);
      await fetch(`${base}/undocumented`, { method: 'POST' });
      expect(await takeFailures()).toEqual([expect.stringMatching(/POST \/undocumented → 200: no documented operation/)]);
      await fetch(`${base}/healthz?sniffable`);
      expect(await takeFailures()).toEqual(['GET /healthz → 200: no "X-Content-Type-Options: nosniff"']);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
