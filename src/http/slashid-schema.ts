/** Schemas of the SlashID dialect's envelope (src/http/slashid.ts renders it), for the OpenAPI document. */
import { Type, type TSchema } from '@sinclair/typebox';

export const Pagination = Type.Object(
  {
    limit: Type.Integer({ minimum: 1 }),
    offset: Type.Integer({ minimum: 0 }),
    total_count: Type.Integer({ minimum: 0, format: 'int64' }),
  },
  { additionalProperties: false },
);

export const ErrorItem = Type.Object(
  { httpcode: Type.Integer({ description: 'The HTTP status of the answer.' }), message: Type.String() },
  { additionalProperties: false },
);

/** A success: `errors` is empty and `result` holds the answer. */
export function Envelope<T extends TSchema>(result: T, opts: { paginated?: boolean } = {}) {
  return Type.Object(
    {
      meta: Type.Object(opts.paginated ? { pagination: Pagination } : {}, { additionalProperties: false }),
      errors: Type.Array(ErrorItem, { maxItems: 0 }),
      result,
    },
    { additionalProperties: false },
  );
}

/**
 * A failure: one error. SlashID's API has no `result` in it (seeds/README); the admin API's 408 or 409 of a
 * write that committed carries what was written (an organization's API key, shown only then).
 */
export function ErrorEnvelope(result?: TSchema) {
  return Type.Object(
    {
      meta: Type.Object({}, { additionalProperties: false }),
      errors: Type.Array(ErrorItem, { minItems: 1, maxItems: 1 }),
      ...(result ? { result: Type.Optional(result) } : {}),
    },
    { additionalProperties: false },
  );
}
