import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Ajv from 'ajv';
import { buildOpenApiDocument } from '../../src/openapi/document';
import type { Operation } from '../../src/openapi/operation';
import { PROJECT_ROOT } from '../../src/paths';
import { call } from '../support/harness';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { fromOpenApi, SEED_STATUSES, seedOperation as seedOp } from '../infisical/support/seed-schemas';

type Json = Record<string, any>;

let region: InProcessRegion;
let doc: Json;
const seedOperation = seedOp as Json;

beforeAll(async () => {
  region = await startInProcess('openapi');
  const res = await call(region.url, 'GET', '/openapi.json');
  expect(res.status).toBe(200);
  doc = res.body;
});
afterAll(() => region?.stop());

/**
 * The validator is ESM only; it runs in its own node process, which reads the document from a file. Waited for
 * without blocking: the region runs in this process (a blocked loop lets its keep-alive timers close an idle
 * connection under the next request).
 */
async function validateOpenApi(document: unknown): Promise<{ valid: boolean; version: string; errors: unknown }> {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'openapi-')), 'openapi.json');
  fs.writeFileSync(file, JSON.stringify(document));
  try {
    const script = `import { Validator } from '@seriousme/openapi-schema-validator';
      import fs from 'node:fs';
      const v = new Validator();
      const r = await v.validate(JSON.parse(fs.readFileSync(process.argv[1], 'utf8')));
      process.stdout.write(JSON.stringify({ valid: r.valid, version: v.version, errors: r.errors ?? null }));`;
    const { stdout: out } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script, file], { cwd: PROJECT_ROOT, encoding: 'utf8' });
    return JSON.parse(out) as { valid: boolean; version: string; errors: unknown };
  } finally {
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  }
}

/** A schema's JSON types (a union of a type and null counts as both), and its format if any. */
function shape(schema: Json): { types: string[]; format?: string } {
  const members: Json[] = schema.anyOf ?? [schema];
  const types = new Set<string>();
  let format: string | undefined;
  for (const m of members) {
    for (const t of [m.type ?? (m.const === null ? 'null' : 'any')].flat() as string[]) types.add(t);
    format ??= m.format;
  }
  return { types: [...types].sort(), ...(format ? { format } : {}) };
}

/** Field names, their types, and which are required: what a client of the contract relies on. */
function fields(schema: Json) {
  const props = (schema.properties ?? {}) as Record<string, Json>;
  return {
    names: Object.keys(props).sort(),
    required: [...((schema.required ?? []) as string[])].sort(),
    types: Object.fromEntries(Object.entries(props).map(([k, v]) => [k, shape(v)])),
    additionalProperties: schema.additionalProperties,
  };
}

/**
 * Same names, same types where the seed states one (`details: {}` and a 422's `message: {}` admit anything).
 * A request requires exactly what the seed requires; an answer may promise more fields than the seed
 * requires (we always send `lastUsed`, as null), never fewer.
 */
function expectSameFields(ours: Json, seed: Json, kind: 'request' | 'response'): void {
  const o = fields(ours);
  const s = fields(seed);
  expect(o.names).toEqual(s.names);
  if (kind === 'request') expect(o.required).toEqual(s.required);
  else expect(o.required).toEqual(expect.arrayContaining(s.required));
  expect(o.additionalProperties).toEqual(s.additionalProperties);
  for (const [name, t] of Object.entries(s.types)) {
    if (t.types.includes('any')) continue;
    expect({ name, ...o.types[name] }).toEqual({ name, ...t });
  }
}

describe('GET /openapi.json', () => {
  it('is a valid OpenAPI 3.1 document', async () => {
    expect(doc.openapi).toBe('3.1.0');
    const result = await validateOpenApi(doc);
    expect(result).toMatchObject({ valid: true, version: '3.1' });
  });

  it("shows patterns a client's regular-expression engine reads as ajv does: no Unicode property escapes", () => {
    // `\p{Z}` needs the `u` flag (ajv's): without it `[^\p{Z}…]` refused 'Paul', and Python's re, Go's RE2 and
    // Java's engine refuse `\p` or Default_Ignorable_Code_Point (2026-12-06: a name's not-blank rule).
    const patterns = new Set<string>();
    JSON.stringify(doc, (key, value: unknown) => {
      if (key === 'pattern' && typeof value === 'string') patterns.add(value);
      return value;
    });
    expect(patterns.size).toBeGreaterThan(3);
    for (const pattern of patterns) expect({ pattern, propertyEscape: /\\[pP]\{/.test(pattern) }).toEqual({ pattern, propertyEscape: false });
  });

  it('describes its own answer (an object the 200 schema holds; a string before)', () => {
    const schema = doc.paths['/openapi.json'].get.responses['200'].content['application/json'].schema;
    const valid = new Ajv({ strict: false }).compile(schema);
    expect(valid(doc)).toBe(true);
    expect(valid('a string')).toBe(false);
  });

  it('is served by every region without a token, and describes both dialects and the admin API', () => {
    const paths = Object.keys(doc.paths);
    for (const p of ['/organizations/sso/saml/provider-credentials/{id}', '/api/v1/sso/config', '/admin/organizations', '/admin/deployment',
      '/admin/console', '/metrics', '/readyz', '/healthz', '/openapi.json', '/sso/saml/{id}/acs']) {
      expect(paths).toContain(p);
    }
    const create = doc.paths['/organizations/sso/saml/provider-credentials'].post;
    const headers = (create.parameters as Json[]).map((p) => p.$ref);
    expect(headers).toEqual(expect.arrayContaining(['#/components/parameters/SlashIdOrgId', '#/components/parameters/Consistency',
      '#/components/parameters/ConsistencyTimeout', '#/components/parameters/IdempotencyKey']));
    expect(create.security).toEqual([{ slashIdApiKey: [] }]);
    expect(doc.paths['/admin/organizations'].post.security).toEqual([{ adminToken: [] }]);
    expect(doc.paths['/api/v1/sso/config'].get.security).toEqual([{ infisicalToken: [] }]);
  });

  it('declares the headers the answers carry: Retry-After on 429 and 503, X-Change-Id on a write\'s 408 and 409; offset\'s bound', () => {
    const create = doc.paths['/organizations/sso/saml/provider-credentials'].post;
    for (const status of ['429', '503']) expect(Object.keys(create.responses[status].headers)).toContain('Retry-After');
    for (const status of ['408', '409']) expect(Object.keys(create.responses[status].headers)).toContain('X-Change-Id');
    const offset = (doc.paths['/organizations/sso/saml/provider-credentials'].get.parameters as Json[]).find((p) => p.name === 'offset');
    expect(offset?.schema).toMatchObject({ minimum: 0, maximum: 999_999_999 });
  });
  it("says a credential's label refuses control and invisible characters in a write, and reads any stored label", () => {
    const credentials = doc.paths['/organizations/sso/saml/provider-credentials'];
    const written = [credentials.post, doc.paths['/organizations/sso/saml/provider-credentials/{id}'].patch].map((op: Json) => op.requestBody.content['application/json'].schema.properties.label);
    for (const label of written) {
      expect(label).toMatchObject({ format: 'plain-text', maxLength: 256 });
      expect(label.description).toMatch(/no control, line-break or invisible formatting character/);
    }
    // A label stored before the rule is still answered: the answer's schema has no format to break on it.
    expect(credentials.post.responses['201'].content['application/json'].schema.properties.result.properties.label.format).toBeUndefined();
  });

  it('says idp_trusted_certificates takes each certificate once, on create and PATCH (a repeat is a 400)', () => {
    const credentials = doc.paths['/organizations/sso/saml/provider-credentials'];
    for (const op of [credentials.post, doc.paths['/organizations/sso/saml/provider-credentials/{id}'].patch]) {
      const pins = op.requestBody.content['application/json'].schema.properties.idp_trusted_certificates;
      expect(pins).toMatchObject({ minItems: 1, maxItems: 5 });
      expect(pins.description).toMatch(/each once: the same certificate again, however its PEM or base64 is wrapped, is a 400/);
    }
  });

  it('says the same of an organization name, each email claim and an Infisical issuer, and reads any stored one', () => {
    const body = (op: Json) => op.requestBody.content['application/json'].schema.properties;
    const answer = (op: Json, status: string) => op.responses[status].content['application/json'].schema.properties;
    const credentials = doc.paths['/organizations/sso/saml/provider-credentials'];
    const sso = doc.paths['/api/v1/sso/config'];
    const written = [
      body(doc.paths['/admin/organizations'].post).name,
      ...[credentials.post, doc.paths['/organizations/sso/saml/provider-credentials/{id}'].patch].map((op: Json) => body(op).email_claims.items),
    ];
    for (const text of written) expect(text).toMatchObject({ format: 'plain-text', pattern: '\\S', minLength: 1 });
    for (const described of [body(doc.paths['/admin/organizations'].post).name, body(credentials.post).email_claims, body(sso.post).issuer, body(sso.patch).issuer]) {
      expect(described.description).toMatch(/no control, line-break or invisible formatting character/);
    }
    expect(answer(doc.paths['/admin/organizations'].post, '201').name.format).toBeUndefined();
    expect(answer(credentials.post, '201').result.properties.email_claims.items.format).toBeUndefined();
  });

  it("carries the service's version from package.json", () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(doc.info.version).toBe(pkg.version);
  });

  it('documents 503 with Retry-After on the admin routes too (they read the database)', () => {
    const create = doc.paths['/admin/organizations'].post;
    expect(Object.keys(create.responses['503'].headers)).toContain('Retry-After');
  });

  it('marks a required query parameter as required', () => {
    const params = doc.paths['/api/v1/sso/config'].get.parameters as Json[];
    expect(params.find((p) => p.name === 'organizationId')).toMatchObject({ in: 'query', required: true });
  });

  it("keeps an operation's own description of an error status over the generic one", () => {
    // The create's 408 names the committed credential in Location (src/provider-credentials/operations.ts).
    const timeout = doc.paths['/organizations/sso/saml/provider-credentials'].post.responses['408'];
    expect(Object.keys(timeout.headers)).toEqual(expect.arrayContaining(['Location', 'Idempotent-Replayed', 'X-Change-Id']));
    expect(timeout.description).toMatch(/Location names it/);
    // Its 503 is also one the gated operations all get: the create's own reason is the one kept.
    expect(doc.paths['/organizations/sso/saml/provider-credentials'].post.responses['503'].description).toMatch(/fetching as much IdP metadata/);
    // And the lookup gate's "busy" (metadata_lookups_busy), on the create and on a re-pointing PATCH.
    for (const op of [doc.paths['/organizations/sso/saml/provider-credentials'].post, doc.paths['/organizations/sso/saml/provider-credentials/{id}'].patch]) {
      expect(op.responses['503'].description).toMatch(/every host-name lookup it may run is held by lookups of other IdP hosts/);
      expect(Object.keys(op.responses['503'].headers)).toContain('Retry-After');
    }
  });

  it("declares no result in SlashID-dialect errors, and the written resource in an admin write's 408", () => {
    const errorSchema = (op: Json, status: string) => op.responses[status].content['application/json'].schema as Json;
    const slashid = doc.paths['/organizations/sso/saml/provider-credentials'].post;
    for (const status of ['408', '409']) expect(Object.keys(errorSchema(slashid, status).properties)).toEqual(['meta', 'errors']);
    expect(Object.keys(errorSchema(doc.paths['/admin/organizations'].post, '408').properties)).toEqual(['meta', 'errors', 'result']);
  });

  it('refuses to build a document declaring one method and path twice', () => {
    const op: Operation = { method: 'get', path: '/twice', tags: ['T'], auth: 'none', dialect: 'slashid', summary: 'Twice', responses: { 200: { description: 'OK.' } } };
    expect(() => buildOpenApiDocument([op, op], { version: '1' })).toThrow('OpenAPI: GET /twice is declared twice');
  });
});

describe('the Infisical part matches the contract (docs/contracts/infisical-create-sso-config.txt)', () => {
  const ours = () => doc.paths['/api/v1/sso/config'].post;

  it('takes the same request body', () => {
    const seed = fromOpenApi(seedOperation.requestBody.content['application/json'].schema) as Json;
    expectSameFields(ours().requestBody.content['application/json'].schema, seed, 'request');
    expect(ours().requestBody.content['application/json'].schema.properties.authProvider.enum)
      .toEqual(seed.properties.authProvider.enum);
  });

  it.each(SEED_STATUSES)('answers %s with the same fields and types', (status) => {
    const seed = fromOpenApi(seedOperation.responses[status].content['application/json'].schema) as Json;
    const response = ours().responses[status];
    expect(response).toBeDefined();
    expectSameFields(response.content['application/json'].schema, seed, 'response');
  });

  it('documents the same security scheme: a bearer JWT', () => {
    expect(doc.components.securitySchemes.infisicalToken).toMatchObject({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT' });
    expect(ours().security).toEqual([{ infisicalToken: [] }]);
  });
});
