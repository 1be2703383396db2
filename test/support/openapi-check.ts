/**
 * Checks answers of this service against its OpenAPI document (src/openapi): the operation is found by
 * method and path template, the status must be one it documents, and a JSON body must match that status's
 * schema (a non-JSON body, its content type). The run's global setup compiles every response schema once
 * into a module (openapi-validators.ts); a file run without it compiles each schema it meets, once per file.
 * A path no operation matches may only answer 404 (or 400, or an overload 503) in its dialect's error envelope.
 */
import fs from 'node:fs';
import path from 'node:path';
import type Ajv2020 from 'ajv/dist/2020';
import type { Options, ValidateFunction } from 'ajv';

type Json = Record<string, any>;

interface Route {
  method: string;
  template: string;
  regex: RegExp;
  /** More literal segments win: /admin/console.js before a {param} path. */
  literals: number;
  responses: Json;
  /** Whether the operation needs credentials: the SlashID dialect and the admin API check them before the method. */
  authenticated: boolean;
}

interface Checker {
  routes: Route[];
  precompiled: Precompiled;
  validator(key: string, schema: Json): ValidateFunction;
  /** How many schemas this test file compiled itself (none when the global setup compiled them). */
  compiledHere: number;
}

let checker: Checker | null = null;

/** Names the file that holds the run's document (written by openapi-global-setup.ts). */
export const DOCUMENT_ENV = 'TEST_OPENAPI_DOCUMENT';
/** The temporary folder it is written in starts so (the teardown removes no other). */
export const DOCUMENT_DIR_PREFIX = 'saml-openapi-';
/**
 * The folder of compiled validators the global setup writes beside the document (openapi-validators.ts): a
 * module a validator, and an index naming each key's module (INDEX_FILE).
 */
export const VALIDATORS_DIR = 'validators';
export const INDEX_FILE = 'index.json';

/** A key's validator compiled by the global setup, or undefined (no global setup: compiled here). */
type Precompiled = (key: string) => ValidateFunction | undefined;

/**
 * The document the run's global setup wrote (openapi-global-setup.ts), with the validators it compiled; built
 * here only when a file runs without it (a jest config of its own), since building it loads the whole service
 * into the test file.
 */
function document(): { doc: Json; precompiled: Precompiled } {
  const file = process.env[DOCUMENT_ENV];
  if (file && fs.existsSync(file)) {
    const dir = path.join(path.dirname(file), VALIDATORS_DIR);
    const index = fs.existsSync(path.join(dir, INDEX_FILE)) ? (JSON.parse(fs.readFileSync(path.join(dir, INDEX_FILE), 'utf8')) as Record<string, string>) : {};
    // A module a validator, so a test file loads only those of the answers it receives.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const precompiled: Precompiled = (key) => (Object.hasOwn(index, key) ? (require(path.join(dir, index[key] as string)) as ValidateFunction) : undefined);
    return { doc: JSON.parse(fs.readFileSync(file, 'utf8')) as Json, precompiled };
  }
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { FEATURES } = require('../../src/features') as typeof import('../../src/features');
  const { openApiDocument } = require('../../src/openapi/feature') as typeof import('../../src/openapi/feature');
  /* eslint-enable @typescript-eslint/no-require-imports */
  return { doc: openApiDocument(FEATURES) as Json, precompiled: () => undefined };
}

/** The one ajv configuration the answers are checked with, compiled here or by the global setup (`extra`: its code options). */
export function newAjv(extra: Options = {}): Ajv2020 {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const Ajv = (require('ajv/dist/2020') as { default: typeof import('ajv/dist/2020').default }).default;
  const addFormats = (require('ajv-formats') as { default: typeof import('ajv-formats').default }).default;
  /* eslint-enable @typescript-eslint/no-require-imports */
  return addFormats(new Ajv({ allErrors: true, strict: false, ...extra }));
}

function routesOf(doc: Json): Route[] {
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
        authenticated: (((op as Json).security as unknown[] | undefined) ?? []).length > 0,
      });
    }
  }
  return routes.sort((a, b) => b.literals - a.literals);
}

/** The JSON schema of a documented answer's body, or undefined when the check compares its content type only. */
function documentedSchema(route: Route, spec: Json): Json | undefined {
  const json = (spec.content as Json | undefined)?.['application/json'] as Json | undefined;
  return json?.schema && route.template !== '/openapi.json' ? (json.schema as Json) : undefined;
}

const documentedKey = (route: Route, status: string) => `${route.method} ${route.template} ${status}`;
const unknownKey = (infisical: boolean, status: number) => `unknown ${infisical ? 'infisical' : 'slashid'} ${status}`;
/** The statuses an unknown path may answer with a body (checkAgainstDocument). */
const UNKNOWN_PATH_STATUSES = [400, 401, 404, 405, 503];

/** The operation whose 404 gives the error envelope of a dialect (Infisical's: /api/v1/). */
const dialectProbe = (routes: Route[], infisical: boolean) =>
  routes.find((x) => x.template.startsWith('/api/v1/') === infisical && x.responses['404'] !== undefined);

/** Every schema the check may validate a body with, by the key it compiles it under: what the global setup compiles. */
export function bodySchemas(doc: Json): Map<string, Json> {
  const routes = routesOf(doc);
  const schemas = new Map<string, Json>();
  for (const route of routes) {
    for (const [status, spec] of Object.entries(route.responses)) {
      const schema = documentedSchema(route, spec as Json);
      if (schema) schemas.set(documentedKey(route, status), schema);
    }
  }
  for (const infisical of [false, true]) {
    const probe = dialectProbe(routes, infisical);
    if (probe) for (const status of UNKNOWN_PATH_STATUSES) schemas.set(unknownKey(infisical, status), errorSchemaFor(probe, status));
  }
  return schemas;
}

function load(): Checker {
  if (checker) return checker;
  // Loaded on first use, so test files that never call the service load no validator.
  const { doc, precompiled } = document();
  const routes = routesOf(doc);
  let ajv: Ajv2020 | undefined;
  const compiled = new Map<string, ValidateFunction>();
  const c: Checker = {
    routes,
    precompiled,
    validator(key, schema) {
      let v = compiled.get(key) ?? precompiled(key);
      if (!v) {
        v = (ajv ??= newAjv()).compile(schema);
        c.compiledHere++;
      }
      compiled.set(key, v);
      return v;
    },
    compiledHere: 0,
  };
  return (checker = c);
}

/** For the test of this check: the validator the global setup compiled for `key`, and how many this file compiled. */
export const precompiledValidator = (key: string): ValidateFunction | undefined => load().precompiled(key);
export const schemasCompiledHere = (): number => load().compiledHere;

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
    // A 401 where the path's operations need credentials: they are checked before the method (README, the status table).
    const unauthenticated = r.status === 401 && expected === 405 && c.routes.filter((x) => x.regex.test(r.path)).every((x) => x.authenticated);
    // A 503: admission gates every API path, unknown ones too (refused in the path's dialect under overload).
    if (r.status !== expected && r.status !== 400 && r.status !== 503 && !unauthenticated) return `${where}: no documented operation matches ${r.method} ${r.path} (expected ${expected})`;
    const probe = dialectProbe(c.routes, infisical);
    if (!probe) return `${where}: no operation documents the 404 envelope of this dialect`;
    return checkBody(c, unknownKey(infisical, r.status), where, errorSchemaFor(probe, r.status), r);
  }
  const spec = route.responses[String(r.status)] as Json | undefined;
  if (!spec) return `${where}: status ${r.status} is not documented for ${route.method} ${route.template} (documented: ${Object.keys(route.responses).join(', ')})`;
  const content = spec.content as Json | undefined;
  if (!content) return null;
  const schema = documentedSchema(route, spec);
  if (schema) return checkBody(c, documentedKey(route, String(r.status)), where, schema, r);
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
