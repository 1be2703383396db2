/**
 * A list's query string: `limit` and `offset` (the SlashID credential list's, seeds/README), and the filters a
 * list names. Each problem is a 400 that names the parameter, what it takes and the value sent (not the
 * schema's regular expression: `limit=500` is a number, just too large).
 */
import { Type, type TObject, type TProperties } from '@sinclair/typebox';
import { badRequest, shownText } from './errors';
import { compile } from './validate';

export const DEFAULT_PAGE_LIMIT = 50;
export const MAX_PAGE_LIMIT = 200;
/** The database takes an offset this large (a 32-bit one would also do; nine digits are plenty). */
export const MAX_PAGE_OFFSET = 999_999_999;

/** Digits, few enough that the number is exact (the parser checks the limit's range). */
const PAGE_NUMBER_PATTERN = '^[0-9]{1,9}$';

const PAGE_RANGES = { limit: `1 to ${MAX_PAGE_LIMIT}`, offset: `0 to ${MAX_PAGE_OFFSET}` };
const PAGE_DEFAULTS = { limit: DEFAULT_PAGE_LIMIT, offset: 0 };

/** A filter of a list: its schema (the query string's text) and what it takes, said in a 400. */
export interface ListFilter {
  schema: TProperties[string];
  takes: string;
}

const limitText = `Page size, a whole number from 1 to ${MAX_PAGE_LIMIT} (default ${DEFAULT_PAGE_LIMIT}).`;
const offsetText = (items: string) => `${items} to skip, a whole number from 0 to ${MAX_PAGE_OFFSET} (default 0).`;

/** Each filter as an optional property (the query string's schema and the OpenAPI document's alike). */
const optionalFilters = (filters: Record<string, ListFilter>) => Object.fromEntries(Object.entries(filters).map(([name, f]) => [name, Type.Optional(f.schema)]));

const isPaging = (name: string): name is 'limit' | 'offset' => name === 'limit' || name === 'offset';

/** The query string's schema (text, as it arrives) of a list of `items` with those filters. */
function listQuerySchema(items: string, filters: Record<string, ListFilter>): TObject {
  return Type.Object(
    {
      limit: Type.Optional(Type.String({ pattern: PAGE_NUMBER_PATTERN, description: limitText })),
      offset: Type.Optional(Type.String({ pattern: PAGE_NUMBER_PATTERN, description: offsetText(items) })),
      ...optionalFilters(filters),
    },
    { additionalProperties: false },
  );
}

/** The OpenAPI form of a list's query (limit and offset as numbers, with their defaults), for an operation's `query`. */
export function pageQueryDoc(items: string, filters: Record<string, ListFilter> = {}): TObject {
  return Type.Object({
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PAGE_LIMIT, default: DEFAULT_PAGE_LIMIT, description: limitText })),
    offset: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_PAGE_OFFSET, default: 0, description: offsetText(items) })),
    ...optionalFilters(filters),
  });
}

/** A parser of the query of a list of `items`: its page, and its filters as sent (each checked against its schema). */
export function pageQueryParser(items: string, filters: Record<string, ListFilter> = {}) {
  const validate = compile(listQuerySchema(items, filters));
  const names = Object.keys(filters);
  const takes = [`limit (a whole number from ${PAGE_RANGES.limit}, default ${PAGE_DEFAULTS.limit})`, `offset (from ${PAGE_RANGES.offset}, default 0)`, ...names.map((n) => `${n} (${filters[n]?.takes})`)];
  const listed = `${takes.slice(0, -1).join(', ')} and ${takes[takes.length - 1]}`;
  const wrong = (name: 'limit' | 'offset', value: string) =>
    badRequest(`${name} must be a whole number from ${PAGE_RANGES[name]} (got ${shownText(value)}); leave it out for ${PAGE_DEFAULTS[name]}.`);
  return (query: Record<string, unknown>): { limit: number; offset: number; filters: Record<string, string> } => {
    if (!validate(query)) {
      const e = validate.errors?.[0];
      const name = e?.instancePath.slice(1) ?? '';
      const value = query[name];
      if (isPaging(name) || filters[name]) {
        const takes = isPaging(name) ? `a whole number from ${PAGE_RANGES[name]}` : filters[name]?.takes;
        if (typeof value !== 'string') throw badRequest(`The query parameter ${name} is given more than once; give it once, ${takes}.`);
        throw isPaging(name) ? wrong(name, value) : badRequest(`${name} must be ${takes} (got ${shownText(value)}).`);
      }
      const unknown = e?.keyword === 'additionalProperties' ? `Unknown query parameter ${shownText(String(e.params.additionalProperty))}` : 'Invalid query';
      throw badRequest(`${unknown}. The list takes ${listed}.`);
    }
    const limit = query.limit === undefined ? DEFAULT_PAGE_LIMIT : Number(query.limit);
    if (limit < 1 || limit > MAX_PAGE_LIMIT) throw wrong('limit', String(query.limit));
    const given = Object.fromEntries(names.filter((n) => typeof query[n] === 'string').map((n) => [n, query[n] as string]));
    return { limit, offset: query.offset === undefined ? 0 : Number(query.offset), filters: given };
  };
}
