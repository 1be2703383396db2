/**
 * Builds the OpenAPI 3.1 document from the operations the features (and the app's own routes) declare.
 * Schemas are the TypeBox schemas the routes use, copied as plain JSON Schema (2020-12 reads them as is).
 * Error answers get the envelope of the operation's dialect; every operation may answer 500.
 */
import { Type, type TSchema } from '@sinclair/typebox';
import { ErrorEnvelope } from '../http/slashid-schema';
import { InfisicalError } from '../infisical/schema';
import type { ErrorSpec, Operation, ResponseSpec } from './operation';

type Json = Record<string, unknown>;

const ERROR_TEXT: Record<number, string> = {
  400: 'The request is invalid (a header, the query or the body); nothing was written.',
  401: 'Missing or invalid credentials.',
  403: 'The credentials are valid but not for this organization.',
  404: 'No such resource (in this organization).',
  408: 'The requested consistency was not reached in time. The write is not cancelled: it keeps replicating.',
  409: 'The write lost to a concurrent write and is not kept anywhere (for a create that lost only its Idempotency-Key to the same key sent at once to another region, the message and Location name the credential it made, which is kept).',
  413: 'A chunked body whose chunk extensions are too large (refused by the listener before any route); nothing was done.',
  417: 'An Expect header other than 100-continue (refused by the listener before any route); nothing was done.',
  422: 'The request body failed validation, or an Idempotency-Key was reused with another body.',
  431: 'Too many request headers, or headers too large (refused by the listener before any route); nothing was done.',
  500: 'Internal error; the message quotes the request id.',
  503: 'Temporarily unavailable (the region is at capacity, or its database does not accept connections, or a write collided with concurrent changes of the same data each time it was run); nothing was done. Retry after Retry-After seconds. Rarely, for a write, the message says instead that the database connection was lost during it and that it may or may not have been carried out: read the resource before retrying.',
};

/** Plain JSON: drops TypeBox's symbol keys. */
export const plain = (s: TSchema): Json => JSON.parse(JSON.stringify(s)) as Json;

const HEADERS = {
  'X-Request-Id': { description: "The request's id (yours when you sent a sane X-Request-Id)", schema: { type: 'string' } },
  'X-Change-Id': { description: 'The id of the replicated change this write made, to follow it up', schema: { type: 'string', format: 'uuid' } },
  'Idempotent-Replayed': { description: 'true when this answers a retry of an earlier request with the same Idempotency-Key (its stored answer, or the 408 or 409 of its wait under all_regions)', schema: { type: 'string', enum: ['true'] } },
  Location: { description: 'Where to go next', schema: { type: 'string' } },
};

/** A conditional GET's answer when the representation is unchanged (see operationObject). */
const NOT_MODIFIED: Json = {
  description:
    "Not Modified: the request's If-None-Match names the ETag of the answer it would get (or is *); no body. " +
    'The ETag of a 200 is a weak hash of its body, so it changes whenever the body does.',
  headers: {
    'X-Request-Id': HEADERS['X-Request-Id'],
    ETag: { description: 'The ETag of the unchanged answer', schema: { type: 'string' } },
  },
};

const RETRY_AFTER = { description: 'Seconds to wait before retrying', schema: { type: 'string', pattern: '^[0-9]+$' } };

const PARAMETERS: Record<string, Json> = {
  SlashIdOrgId: {
    name: 'SlashID-OrgID', in: 'header', required: true,
    description: 'The organization acted on (the API key may belong to it or to one of its ancestors).',
    schema: { type: 'string', format: 'uuid' },
  },
  Consistency: {
    name: 'SlashID-Required-Consistency', in: 'header', required: false,
    description: 'local_region: answer once committed here. all_regions: answer once every region applied and holds the change (408 when not in time, 409 when it lost).',
    schema: { type: 'string', enum: ['local_region', 'all_regions'], default: 'local_region' },
  },
  ConsistencyTimeout: {
    name: 'SlashID-Required-Consistency-Timeout', in: 'header', required: false,
    description: 'Whole seconds to wait for the consistency level, counted from the arrival of the request.',
    schema: { type: 'integer', minimum: 1, maximum: 120, default: 30 },
  },
  IdempotencyKey: {
    name: 'Idempotency-Key', in: 'header', required: false,
    description: 'Makes the create safe to retry for 24 h: a retry with the same body gets the stored answer (Idempotent-Replayed: true); the same key with another body is a 422.',
    schema: { type: 'string', pattern: '^[\\x21-\\x7e]{1,255}$' },
  },
};

const SECURITY_SCHEMES = {
  adminToken: { type: 'http', scheme: 'bearer', description: 'Authorization: Bearer <ADMIN_TOKEN> (the operator token).' },
  slashIdApiKey: { type: 'apiKey', in: 'header', name: 'SlashID-API-Key', description: 'An API key of the organization in SlashID-OrgID or of one of its ancestors.' },
  infisicalToken: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'An access token issued by POST /admin/organizations/{id}/access-tokens.' },
};

const SECURITY: Record<Operation['auth'], Json[]> = {
  none: [],
  admin: [{ adminToken: [] }],
  slashid: [{ slashIdApiKey: [] }],
  infisical: [{ infisicalToken: [] }],
};

function errorSchema(op: Operation, status: number, declared?: TSchema): Json {
  // SlashID's API answers errors without `result` (seeds/README); elsewhere a 408 or 409 of a write may carry
  // what was written even where the operation does not type it.
  const result = op.auth === 'slashid' ? undefined : (declared ?? (status === 408 || status === 409 ? Type.Unknown() : undefined));
  return plain(op.dialect === 'infisical' ? InfisicalError(status, result) : ErrorEnvelope(result));
}

function responseObject(spec: ResponseSpec): Json {
  const headers: Json = { 'X-Request-Id': HEADERS['X-Request-Id'] };
  for (const h of spec.headers ?? []) headers[h] = HEADERS[h];
  const out: Json = { description: spec.description, headers };
  if (spec.schema) out.content = { 'application/json': { schema: plain(spec.schema) } };
  else if (spec.contentType) out.content = { [spec.contentType]: { schema: { type: 'string' } } };
  return out;
}

function operationObject(op: Operation): Json {
  const parameters: Json[] = [];
  for (const name of [...op.path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1] ?? '')) {
    parameters.push({ name, in: 'path', required: true, schema: plain(op.pathParams?.[name] ?? Type.String()) });
  }
  for (const [name, schema] of Object.entries(op.query?.properties ?? {})) {
    const { description, ...rest } = plain(schema);
    parameters.push({ name, in: 'query', required: (op.query?.required ?? []).includes(name), ...(description ? { description } : {}), schema: rest });
  }
  if (op.auth === 'slashid') parameters.push({ $ref: '#/components/parameters/SlashIdOrgId' });
  if (op.headers?.includes('consistency')) parameters.push({ $ref: '#/components/parameters/Consistency' }, { $ref: '#/components/parameters/ConsistencyTimeout' });
  if (op.headers?.includes('idempotency')) parameters.push({ $ref: '#/components/parameters/IdempotencyKey' });

  const responses: Json = {};
  for (const [status, spec] of Object.entries(op.responses)) responses[status] = responseObject(spec);
  // Express gives every answer it sends a body an ETag (a weak hash of the body) and answers a GET whose
  // If-None-Match matches it, or is `*`, with 304 and no body: the client asked to be told "unchanged".
  if (op.method === 'get' && responses['200'] && !responses['304']) responses['304'] = NOT_MODIFIED;
  // An API operation passes admission control (src/http/admission.ts): beyond its bounds it answers 503.
  // Those and the admin routes read the database: 503 too while it refuses connections (errors.ts).
  const gated = op.auth === 'slashid' || op.auth === 'infisical' || op.auth === 'admin';
  // The listener's edge checks (src/http/edges.ts) answer these on every path, in the path's dialect.
  const errors: ErrorSpec[] = [...(op.errors ?? []), 413, 417, 431, 500, ...(gated ? [503] : [])];
  for (const e of errors) {
    const { status, description, result, headers } = typeof e === 'number' ? { status: e, description: undefined, result: undefined, headers: undefined } : e;
    if (responses[String(status)]) continue;
    responses[String(status)] = {
      description: description ?? ERROR_TEXT[status] ?? 'Error',
      headers: {
        'X-Request-Id': HEADERS['X-Request-Id'],
        // 429 (a busy organization's IdP fetches) and 503 (admission) say when to retry.
        ...(status === 503 || status === 429 ? { 'Retry-After': RETRY_AFTER } : {}),
        // A 408 or 409 of a write that committed names its change (see consistency.ts).
        ...(status === 408 || status === 409 ? { 'X-Change-Id': HEADERS['X-Change-Id'] } : {}),
        ...Object.fromEntries((headers ?? []).map((h) => [h, HEADERS[h]])),
      },
      content: { 'application/json': { schema: errorSchema(op, status, result) } },
    };
  }

  const out: Json = {
    operationId: operationId(op),
    summary: op.summary,
    ...(op.description ? { description: op.description } : {}),
    tags: op.tags,
    security: SECURITY[op.auth],
    ...(parameters.length ? { parameters } : {}),
  };
  if (op.body) {
    const contentType = op.body.contentType ?? 'application/json';
    out.requestBody = {
      required: op.body.required ?? true,
      ...(op.body.description ? { description: op.body.description } : {}),
      content: { [contentType]: { schema: plain(op.body.schema) } },
    };
  }
  out.responses = responses;
  return out;
}

/** e.g. `post /admin/organizations/{id}/api-keys` → `postAdminOrganizationsIdApiKeys`. */
function operationId(op: Operation): string {
  const words = op.path.split(/[^A-Za-z0-9]+/).filter(Boolean);
  return op.method + words.map((w) => w[0]?.toUpperCase() + w.slice(1)).join('');
}

export interface DocumentInfo {
  version: string;
  /** The region serving the document, as its only server ('' for relative URLs). */
  serverUrl?: string;
}

/** The OpenAPI 3.1 document of `operations`; two declarations of one method and path are a programming error. */
export function buildOpenApiDocument(operations: readonly Operation[], info: DocumentInfo): Json {
  const paths: Record<string, Json> = {};
  for (const op of operations) {
    const item = (paths[op.path] ??= {});
    if (item[op.method]) throw new Error(`OpenAPI: ${op.method.toUpperCase()} ${op.path} is declared twice`);
    item[op.method] = operationObject(op);
  }
  const sorted = Object.fromEntries(Object.entries(paths).sort(([a], [b]) => a.localeCompare(b)));
  return {
    openapi: '3.1.0',
    jsonSchemaDialect: 'https://spec.openapis.org/oas/3.1/dialect/base',
    info: {
      title: 'Multi-region SAML credential service',
      version: info.version,
      description:
        'Two API dialects over one replicated store: SlashID (/organizations/…, the {meta, errors, result} envelope) and ' +
        'Infisical-compatible (/api/v1/…, errors as {reqId, statusCode, message, error, details?}), plus the operator API ' +
        'under /admin. Any other path answers 404 in the envelope of its dialect (every path under /api is the Infisical ' +
        "dialect's, another version than /api/v1 included). Every region serves every operation.",
    },
    servers: [{ url: info.serverUrl ?? '/' }],
    tags: [...new Set(operations.flatMap((o) => o.tags))].map((name) => ({ name })),
    paths: sorted,
    components: { parameters: PARAMETERS, securitySchemes: SECURITY_SCHEMES },
  };
}
