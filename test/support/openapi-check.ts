/**
 * Checks answers of this service against its OpenAPI document (src/openapi): the operation is found by
 * method and path template, the status must be one it documents, and a JSON body must match that status's
 * schema (a non-JSON body, its content type). Each response schema is compiled once per test file.
 * A path no operation matches may only answer 404 (or 400, or an overload 503) in its dialect's error envelope.
 */
import fs from 'node:fs';
import type { ValidateFunction } from 'ajv';

type Json = Record<string, any>;

interface Route {
  method: string;
  template: string;
  regex: RegExp;
  /** More literal segments win: /admin/console.js before a {param} path. */
  literals: number;
  responses: Json;
}

interface Checker {
  routes: Route[];
  validator(key: string, schema: Json): ValidateFunction;
}

let checker: Checker | null = null;

/** Names the file that holds the run's document (written by openapi-global-setup.ts). */
export const DOCUMENT_ENV = 'TEST_OPENAPI_DOCUMENT';
/** The temporary folder it is written in starts so (the teardown removes no other). */
export const DOCUMENT_DIR_PREFIX = 'saml-openapi-';

/**
 * The document the run's global setup wrote (openapi-global-setup.ts); built here only when a file runs
 * without it (a jest config of its own), since building it loads the whole service into the test file.
 */
function document(): Json {
  const file = process.env[DOCUMENT_ENV];
  if (file && fs.existsSync(file)) return JSON.parse(fs.readFileSync(file, 'utf8')) as Json;
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { FEATURES } = require('../../src/features') as typeof import('../../src/features');
  const { openApiDocument } = require('../../src/openapi/feature') as typeof import('../../src/openapi/feature');
  /* eslint-enable @typescript-eslint/no-require-imports */
  return openApiDocument(FEATURES) as Json;
}

function load(): Checker {
  if (checker) return checker;
  // Loaded on first use, so test files that never call the service compile no validator.
  /* eslint-disable @typescript-eslint/no-require-imports */
  const Ajv2020 = (require('ajv/dist/2020') as { default: typeof import('ajv/dist/2020').default }).default;
  const addFormats = (require('ajv-formats') as { default: typeof import('ajv-formats').default }).default;
  /* eslint-enable @typescript-eslint/no-require-imports */
  const doc = document();
  const routes: Route[] = [];
  for (const [template, item] of Object.entries(doc.paths as Json)) {
    const pattern = template.split(/\{[^}]+\}/).map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('[^/]+');
    for (const [method, op] of Object.entries(item as Json)) {
      routes.push({
        method: method.toUpperCase(),
        template,
        // Express matches paths without regard to case (its default), and so does the document's reading.
        regex: new RegExp(`^${pattern}/?$`, 'i'),
        literals: template.split('/').filter((s) => s && !s.includes('{')).length,
        responses: (op as Json).responses as Json,
      });
    }
  }
  routes.sort((a, b) => b.literals - a.literals);
  const ajv = addFormats(new Ajv2020({ allErrors: true, strict: false }));
  const compiled = new Map<string, ValidateFunction>();
  checker = {
    routes,
    validator(key, schema) {
      let v = compiled.get(key);
      if (!v) compiled.set(key, (v = ajv.compile(schema)));
      return v;
    },
  };
  return checker;
}

export interface Observed {
  method: string;
  path: string;
  status: number;
  contentType: string;
  body: string;
}

function parse(body: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(body) as unknown };
  } catch {
    return { ok: false };
  }
}

/** Why the answer does not match the document, or null when it does. */
export function checkAgainstDocument(r: Observed): string | null {
  const c = load();
  const where = `${r.method} ${r.path} → ${r.status}`;
  // The operator port serves three routes and answers 404 for every other path, documented ones included
  // (docs/operations.md, "Operator port"): its 404 is checked as an unknown path's, whatever the main port
  // would answer there.
  const operatorRefusal = r.status === 404 && /operator port serves GET/.test(r.body);
  const route = operatorRefusal ? undefined : c.routes.find((x) => x.method === r.method && x.regex.test(r.path));
  if (!route) {
    // Unknown endpoints answer 404 (a malformed path 400) in the envelope of the path's dialect; a documented
    // path asked with another method 405 (Infisical's paths, all of /api: 404, as Infisical's own server answers).
    const infisical = /^\/api(\/|$)/i.test(r.path);
    const expected = !infisical && !operatorRefusal && c.routes.some((x) => x.regex.test(r.path)) ? 405 : 404;
    // A 503: admission gates every API path, unknown ones too (refused in the path's dialect under overload).
    if (r.status !== expected && r.status !== 400 && r.status !== 503) return `${where}: no documented operation matches ${r.method} ${r.path} (expected ${expected})`;
    const probe = c.routes.find((x) => x.template.startsWith('/api/v1/') === infisical && x.responses['404'] !== undefined);
    if (!probe) return `${where}: no operation documents the 404 envelope of this dialect`;
    return checkBody(c, `unknown ${infisical ? 'infisical' : 'slashid'} ${r.status}`, where, errorSchemaFor(probe, r.status), r);
  }
  const spec = route.responses[String(r.status)] as Json | undefined;
  if (!spec) return `${where}: status ${r.status} is not documented for ${route.method} ${route.template} (documented: ${Object.keys(route.responses).join(', ')})`;
  const content = spec.content as Json | undefined;
  if (!content) return null;
  const json = content['application/json'] as Json | undefined;
  if (json?.schema && route.template !== '/openapi.json') {
    return checkBody(c, `${route.method} ${route.template} ${r.status}`, where, json.schema as Json, r);
  }
  const type = r.contentType.split(';')[0]?.trim().toLowerCase() ?? '';
  if (!Object.keys(content).includes(type)) return `${where}: content type ${type || 'none'} is not documented (documented: ${Object.keys(content).join(', ')})`;
  return null;
}

/** The error schema of `status` as another operation of the dialect documents it (the 404 shape with the status swapped). */
function errorSchemaFor(probe: Route, status: number): Json {
  const schema = structuredClone(((probe.responses['404'] as Json).content as Json)['application/json'].schema) as Json;
  const statusCode = (schema.properties as Json | undefined)?.statusCode as Json | undefined;
  if (statusCode) statusCode.enum = [status];
  return schema;
}

function checkBody(c: Checker, key: string, where: string, schema: Json, r: Observed): string | null {
  if (!/^application\/json\b/i.test(r.contentType)) return `${where}: expected a JSON body, got content type ${r.contentType || 'none'}`;
  const parsed = parse(r.body);
  if (!parsed.ok) return `${where}: the body is not JSON: ${r.body.slice(0, 200)}`;
  const validate = c.validator(key, schema);
  if (validate(parsed.value)) return null;
  const errors = (validate.errors ?? []).slice(0, 5).map((e) => `${e.instancePath || '(body)'} ${e.message ?? ''} ${JSON.stringify(e.params)}`);
  return `${where}: the body does not match the documented schema: ${errors.join('; ')}\n  body: ${r.body.slice(0, 600)}`;
}
