/**
 * How a route declares its OpenAPI operation: next to the route, in its feature's `operations`, with the
 * TypeBox schemas the route validates and answers with. src/openapi/document.ts turns the declarations
 * into the OpenAPI 3.1 document; the test suite checks every response it receives against it.
 */
import type { TObject, TSchema } from '@sinclair/typebox';

/** Who may call: nobody in particular, the operator (ADMIN_TOKEN), a SlashID API key, an Infisical access token. */
export type Auth = 'none' | 'admin' | 'slashid' | 'infisical';

/** Whose error envelope a failure is rendered in: {meta, errors, result?} or Infisical's {reqId, statusCode, …}. */
export type Dialect = 'slashid' | 'infisical';

/** Request headers an operation reads besides its credentials. */
export type RequestHeader = 'consistency' | 'idempotency';

export interface ResponseSpec {
  description: string;
  /** The JSON body; leave out for an empty answer (204, 302). */
  schema?: TSchema;
  /** A body that is not JSON (HTML, XML, Prometheus text). */
  contentType?: string;
  /** Response headers beyond X-Request-Id (sent on every answer). */
  headers?: ('X-Change-Id' | 'Idempotent-Replayed' | 'Location')[];
}

/**
 * An error status of the dialect's envelope; `result` types the `result` (admin API) or `details`
 * (Infisical) a 408 or 409 carries; `headers`, any beyond X-Request-Id (and X-Change-Id on a write's 408/409).
 */
export type ErrorSpec = number | { status: number; description?: string; result?: TSchema; headers?: ('Location' | 'Idempotent-Replayed')[] };

export interface Operation {
  method: 'get' | 'post' | 'patch' | 'delete';
  /** OpenAPI path template, e.g. `/admin/organizations/{id}`. */
  path: string;
  summary: string;
  description?: string;
  tags: string[];
  auth: Auth;
  dialect: Dialect;
  /** Path parameters; one not listed here is a plain string. */
  pathParams?: Record<string, TSchema>;
  query?: TObject;
  headers?: RequestHeader[];
  body?: { schema: TSchema; required?: boolean; contentType?: string; description?: string };
  /** Success answers (and any answer with a body of its own, e.g. /readyz's 503). */
  responses: Record<number, ResponseSpec>;
  /** Answers in the dialect's error envelope. 500 is added to every operation. */
  errors?: ErrorSpec[];
}
