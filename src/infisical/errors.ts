/**
 * The Infisical dialect's errors: `{reqId, statusCode, message, error, details?}`, with the `error` names
 * Infisical's own error handler uses, and 422 `ValidationFailure` whose `message` is the list of issues
 * (Infisical sends Zod's issues there; ours have the same `code`/`path`/`message` core).
 */
import type { ErrorObject } from 'ajv';
import type { ErrorRequestHandler } from 'express';
import type { Logger } from '../logger';
import { AppError, asAppError, shownText } from '../http/errors';
import { getRequestId } from '../http/request-id';
import { requestPath } from '../http/url';
import { firstProblems, UUID_PATTERN } from '../http/validate';

export interface ValidationIssue {
  /** Zod's issue codes, so Infisical clients that branch on them keep working. */
  code: 'invalid_type' | 'invalid_enum_value' | 'invalid_string' | 'too_small' | 'too_big' | 'unrecognized_keys' | 'custom';
  path: string[];
  message: string;
  keys?: string[];
}

export interface InfisicalErrorBody {
  reqId: string;
  statusCode: number;
  message: unknown;
  error: string;
  details?: unknown;
}

const ERROR_NAMES: Record<number, string> = {
  400: 'BadRequest',
  401: 'UnauthorizedError',
  403: 'PermissionDenied',
  404: 'NotFound',
  // A CONNECT, refused by the listener's edge checks.
  405: 'MethodNotAllowed',
  408: 'RequestTimeout',
  409: 'Conflict',
  // Answered before any route, by the listener's edge checks (src/http/edges.ts).
  413: 'PayloadTooLarge',
  417: 'ExpectationFailed',
  422: 'ValidationFailure',
  431: 'RequestHeaderFieldsTooLarge',
  500: 'InternalServerError',
  503: 'ServiceUnavailable',
};

export function validationFailure(issues: ValidationIssue[]): AppError {
  return new AppError(422, 'validation_failure', 'The request failed validation.', { details: issues });
}

function pathOf(instancePath: string): string[] {
  if (!instancePath) return [];
  return instancePath.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** ajv errors as Zod-style issues whose message also names the field, because people read them too. */
export function issuesFromAjv(errors: ErrorObject[] | null | undefined): ValidationIssue[] {
  const { listed, more } = firstProblems(oneTypeProblemPerValue(errors ?? []));
  const rest: ValidationIssue[] = more ? [{ code: 'custom', path: [], message: `and ${more} more issue${more === 1 ? '' : 's'}` }] : [];
  return [...listed.map(issueFromAjv), ...rest];
}

/**
 * A value of the wrong type for an enum field (`authProvider: 1`) fails ajv's `type` and `enum` both: one
 * problem of that field, as Zod reports it, said with the allowed values (the `enum` error) under the
 * `invalid_type` code.
 */
function oneTypeProblemPerValue(errors: readonly ErrorObject[]): ErrorObject[] {
  const enums = new Map(errors.filter((e) => e.keyword === 'enum').map((e) => [e.instancePath, e]));
  const typed = new Set(errors.filter((e) => e.keyword === 'type' && enums.has(e.instancePath)).map((e) => e.instancePath));
  if (typed.size === 0) return [...errors];
  return errors.flatMap((e) => {
    if (!typed.has(e.instancePath) || (e.keyword !== 'type' && e.keyword !== 'enum')) return [e];
    if (e.keyword === 'enum') return [];
    return [{ ...e, keyword: 'type_of_enum', params: { ...e.params, allowedValues: enums.get(e.instancePath)?.params.allowedValues } }];
  });
}

function allowedValues(e: ErrorObject): string {
  return (e.params.allowedValues as unknown[]).map((v) => `'${String(v)}'`).join(' | ');
}

function issueFromAjv(e: ErrorObject): ValidationIssue {
  const path = pathOf(e.instancePath);
  const field = path.join('.') || 'body';
  switch (e.keyword) {
    case 'required': {
      const missing = String(e.params.missingProperty);
      return { code: 'invalid_type', path: [...path, missing], message: `${missing} is required` };
    }
    case 'additionalProperties': {
      // The name is the client's: `keys` holds it as sent (Zod's shape), the message quotes it as every error
      // quotes client text (a 5,000-character name, or one with a right-to-left override, was quoted whole).
      const extra = String(e.params.additionalProperty);
      return { code: 'unrecognized_keys', path, keys: [extra], message: `Unrecognized key in ${field}: ${shownText(extra)}` };
    }
    case 'type':
      return { code: 'invalid_type', path, message: `${field} must be of type ${String(e.params.type)}` };
    case 'type_of_enum':
      return { code: 'invalid_type', path, message: `${field} must be of type ${String(e.params.type)}, one of ${allowedValues(e)}` };
    case 'enum':
      return { code: 'invalid_enum_value', path, message: `${field} must be one of ${allowedValues(e)}` };
    case 'format':
      return { code: 'invalid_string', path, message: `${field} must be a valid ${String(e.params.format)}` };
    case 'pattern':
      return { code: 'invalid_string', path, message: e.params.pattern === UUID_PATTERN ? `${field} must be a valid uuid` : `${field} ${e.message ?? 'is invalid'}` };
    case 'minLength':
    case 'minimum':
      return { code: 'too_small', path, message: `${field} ${e.message ?? 'is too small'}` };
    case 'maxLength':
    case 'maximum':
      return { code: 'too_big', path, message: `${field} ${e.message ?? 'is too big'}` };
    default:
      return { code: 'custom', path, message: `${field} ${e.message ?? 'is invalid'}` };
  }
}

export function renderError(err: AppError, reqId: string): InfisicalErrorBody {
  const error = ERROR_NAMES[err.status] ?? (err.status >= 500 ? 'InternalServerError' : 'BadRequest');
  if (err.status === 422) return { reqId, statusCode: 422, message: err.extra.details ?? [], error };
  const body: InfisicalErrorBody = { reqId, statusCode: err.status, message: err.message, error };
  // A 408 must still tell the client what was written; this dialect has no `result`, so it goes in details.
  if (err.status === 408 && err.extra.result !== undefined) body.details = err.extra.result;
  // The seed's 401 and 404 bodies do not allow `details`; only the codes whose schema has it carry it.
  if ((err.status === 400 || err.status === 403) && err.extra.details !== undefined) body.details = err.extra.details;
  return body;
}

/** Mounted last in the Infisical router, so every /api/v1 error leaves in Infisical's shape. */
export function infisicalErrors(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const reqId = getRequestId(res);
    const known = asAppError(err, req.method);
    // A 503 (overload, see src/http/admission.ts) is an answer, not a failure: no stack in the log.
    const answer = known && (known.status < 500 || known.status === 503) ? known : null;
    if (!answer) {
      log.error({ err, requestId: reqId, method: req.method, path: requestPath(req) }, 'unhandled error');
    }
    if (res.headersSent) return;
    const e = answer ?? new AppError(500, 'internal', 'Something went wrong');
    if (e.extra.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(e.extra.retryAfterSeconds));
    res.status(e.status).json(renderError(e, reqId));
  };
}
