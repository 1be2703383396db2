/** One ajv instance; every schema is compiled once, at module load of the feature that owns it. */
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { Type, type TSchema, type Static } from '@sinclair/typebox';

export const ajv = addFormats(new Ajv({ allErrors: true, strict: true }), ['uri', 'uuid', 'date-time', 'email']);

/**
 * A UUID as Postgres and Prisma take it. (ajv-formats' `uuid` also accepts a `urn:uuid:` prefix, which
 * the database then rejects.)
 */
export const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
export const Uuid = (opts: { description?: string } = {}) => Type.String({ pattern: UUID_PATTERN, ...opts });

const UUID = new RegExp(UUID_PATTERN);

export function isUuid(s: string): boolean {
  return UUID.test(s);
}

export function compile<S extends TSchema>(schema: S): ValidateFunction<Static<S>> {
  return ajv.compile<Static<S>>(schema);
}

/** Turns ajv errors into sentences that name the field, e.g. "email_claims: must NOT have more than 3 items". */
export function describeErrors(errors: ErrorObject[] | null | undefined): string[] {
  return (errors ?? []).map((e) => {
    const field = e.instancePath ? e.instancePath.slice(1).replace(/\//g, '.') : 'body';
    switch (e.keyword) {
      case 'additionalProperties':
        return `${field === 'body' ? '' : field + ': '}unknown field '${String(e.params.additionalProperty)}'`;
      case 'required':
        return `${field === 'body' ? '' : field + ': '}missing required field '${String(e.params.missingProperty)}'`;
      default:
        return `${field}: ${e.message ?? 'is invalid'}`;
    }
  });
}
