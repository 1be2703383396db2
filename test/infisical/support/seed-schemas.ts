/**
 * Response validators built from Infisical's own OpenAPI for POST /api/v1/sso/config
 * (docs/contracts/infisical-create-sso-config.txt), so the tests check our bodies against Infisical's contract
 * rather than against a copy of our own types.
 *
 * - POST and PATCH answers are checked against the seed's 200 schema as is (additionalProperties: false).
 * - GET answers: the seed's 200 schema plus the three fields Infisical's GET also returns.
 * - 409 and 408 are not in the seed (Infisical has neither); they use the seed's error shape (its 400
 *   schema, which allows `details`) with the status code swapped.
 */
import fs from 'node:fs';
import path from 'node:path';
import Ajv, { type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import YAML from 'yaml';
import { PROJECT_ROOT } from '../../../src/paths';

export const SEED_PATH = path.resolve(PROJECT_ROOT, 'docs', 'contracts', 'infisical-create-sso-config.txt');

type Schema = Record<string, unknown>;

function loadSeedDocument(): Schema {
  const text = fs.readFileSync(SEED_PATH, 'utf8');
  const m = /````yaml[^\n]*\n([\s\S]*?)\n````/.exec(text);
  if (!m?.[1]) throw new Error(`no YAML block in ${SEED_PATH}`);
  return YAML.parse(m[1]) as Schema;
}

/** OpenAPI 3.0 → JSON Schema: `nullable: true` becomes a null-admitting type; nothing else is loosened. */
export function fromOpenApi(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(fromOpenApi);
  if (typeof node !== 'object' || node === null) return node;
  const out: Schema = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === 'nullable') continue;
    out[k] = fromOpenApi(v);
  }
  const src = node as Schema;
  if (src.nullable === true) {
    if (typeof src.type !== 'string') throw new Error('nullable without a single type is not supported');
    out.type = [src.type, 'null'];
  }
  return out;
}

function dig(doc: Schema, ...keys: string[]): Schema {
  let cur: unknown = doc;
  for (const k of keys) {
    if (typeof cur !== 'object' || cur === null || !(k in cur)) throw new Error(`seed has no ${keys.join(' > ')}`);
    cur = (cur as Schema)[k];
  }
  return cur as Schema;
}

const doc = loadSeedDocument();
/** The seed's operation (POST /api/v1/sso/config), as written (OpenAPI 3.0). */
export const seedOperation = dig(doc, 'paths', '/api/v1/sso/config', 'post');
const responses = dig(seedOperation, 'responses');
const schemaFor = (status: string) => fromOpenApi(dig(responses, status, 'content', 'application/json', 'schema')) as Schema;

export const SEED_STATUSES = Object.keys(responses);

const ajv = addFormats(new Ajv({ allErrors: true, strict: true, allowUnionTypes: true }), ['uuid', 'date-time']);

function getSchema(): Schema {
  const base = schemaFor('200');
  const props = base.properties as Schema;
  const required = base.required as string[];
  return {
    ...base,
    // What Infisical's getSaml adds to the seed's fields (its public source; seeds/README names the three settings).
    properties: {
      ...props,
      organization: { type: 'string', format: 'uuid' },
      entryPoint: { type: 'string' },
      issuer: { type: 'string' },
      cert: { type: 'string' },
      enableGroupSync: { type: 'boolean' },
    },
    required: [...required, 'organization', 'entryPoint', 'issuer', 'cert', 'enableGroupSync'],
  };
}

function errorShapeWithStatus(status: number): Schema {
  const base = schemaFor('400');
  const props = base.properties as Schema;
  return { ...base, properties: { ...props, statusCode: { type: 'number', enum: [status] } } };
}

const validators = new Map<string, ValidateFunction>();
for (const status of SEED_STATUSES) validators.set(`POST ${status}`, ajv.compile(schemaFor(status)));
validators.set('GET 200', ajv.compile(getSchema()));
validators.set('409', ajv.compile(errorShapeWithStatus(409)));
validators.set('408', ajv.compile(errorShapeWithStatus(408)));

/** The validator for an answer of `method` with `status`; errors of every method share the seed's error bodies. */
export function validatorFor(method: string, status: number): ValidateFunction {
  const key = status === 200 ? (method === 'GET' ? 'GET 200' : 'POST 200') : status === 408 || status === 409 ? String(status) : `POST ${status}`;
  const v = validators.get(key);
  if (!v) throw new Error(`the seed has no schema for ${method} ${status}`);
  return v;
}

/** Asserts a response body matches the seed; the message lists ajv's complaints and the body. */
export function expectSeedShape(method: string, res: { status: number; body: unknown }): void {
  const validate = validatorFor(method, res.status);
  if (!validate(res.body)) {
    throw new Error(`${method} ${res.status} body does not match the seed schema: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(res.body, null, 2)}`);
  }
}
