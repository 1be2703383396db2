/**
 * One ajv instance; every schema is compiled once, on its first use (compiling them all cost a region
 * process ~0.7 s of CPU at start, 2026-12-05, most of it for routes a region may never serve).
 */
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { Type, type TSchema, type Static } from '@sinclair/typebox';
import { CONTROL_CHARACTER, INVISIBLE_CLASS } from '../control-characters';
import { bodyPath } from './body-path';
import { shownText } from './errors';

/** The options of every validator of the service's: this ajv's, and the config file's compiled ahead (scripts/config-validator.ts). */
export const AJV_OPTIONS = { allErrors: true, strict: true, verbose: true } as const;
export const ajv = addFormats(new Ajv(AJV_OPTIONS), ['uri', 'uuid', 'date-time', 'email']);
/**
 * `iri` (ajv-formats has none): an absolute IRI as the WHATWG URL parser reads it (a host name in any script
 * becomes its punycode there), with no white space or control character (which that parser would drop
 * silently, so the URL used would not be the one sent).
 */
ajv.addFormat('iri', (s: string) => {
  if (/\s/.test(s) || CONTROL_CHARACTER.test(s)) return false;
  try {
    return new URL(s).href.length > 0;
  } catch {
    return false;
  }
});

/**
 * A UUID as Postgres and Prisma take it. (ajv-formats' `uuid` also accepts a `urn:uuid:` prefix, which
 * the database then rejects.)
 */
export const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
export const Uuid = (opts: { description?: string } = {}) => Type.String({ pattern: UUID_PATTERN, ...opts });

const UUID = new RegExp(UUID_PATTERN);

/** An absolute http or https URL with a host (the scheme in any case). */
export const HTTP_URL_PATTERN = '^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]';
/**
 * Not empty and not only white space, as the OpenAPI document shows the rule: `\S` reads the same in every
 * regular-expression dialect a client may check a pattern with. The rest of it is the `plain-text` format below.
 */
export const NOT_BLANK_PATTERN = '\\S';
/**
 * A visible character: one that is neither a space or separator (Unicode's too: U+00A0, U+3000), a control, nor
 * an invisible one (a zero-width space, a right-to-left override, a joiner): a name of those alone shows as nothing
 * in a list (a review stored one). Checked by a format, not the pattern: property escapes need the `u` flag
 * (ajv's), and a client checking the published pattern without it read `\p{Z}` as `p`, `{`, `Z`, `}`, so that
 * 'Paul' was blank; Python's re, Go's RE2 and Java's engine have no Default_Ignorable_Code_Point at all.
 */
const VISIBLE = new RegExp(`[^\\s\\p{Cc}${INVISIBLE_CLASS}]`, 'u');
const BLANK = 'must not be blank (white space or invisible characters only)';
/**
 * What free text shown as it is (a label, a name, an entity ID) may not hold: a control character (an ESC starts
 * a terminal's escape sequence, a line break forges a log line), a line or paragraph separator, or an invisible
 * format character (a right-to-left override reorders what follows it, a zero-width space or a tag character
 * hides text), but for the joiners U+200C and U+200D (emoji sequences, Persian and Indic words need them, as
 * entryPoint lets them through).
 */
const HIDDEN_IN_TEXT = /(?![\u200c\u200d])[\p{Cc}\p{Zl}\p{Zp}\p{Cf}]/u;
/** Whether `s` has no visible character (VISIBLE). */
export const isBlankText = (s: string): boolean => !VISIBLE.test(s);
/** The first character of `s` that free text may not hold (HIDDEN_IN_TEXT), if any. */
export const hiddenInText = (s: string): string | undefined => HIDDEN_IN_TEXT.exec(s)?.[0];
/** `plain-text`: empty (a label is optional), or not blank and with none of HIDDEN_IN_TEXT. */
ajv.addFormat('plain-text', (s: string) => s === '' || (!isBlankText(s) && hiddenInText(s) === undefined));
/**
 * A name's or a claim's rule (spread into a string schema with its minLength): plain text, not blank. The
 * pattern shows "not blank" in the OpenAPI document in a form every regular-expression dialect reads.
 */
export const PLAIN_TEXT = { pattern: NOT_BLANK_PATTERN, format: 'plain-text' } as const;
/** The plain-text rule as the OpenAPI descriptions of the fields that follow it say it. */
export const PLAIN_TEXT_RULE =
  'a visible character and no control, line-break or invisible formatting character (an ESC, a right-to-left override, a zero-width space; ' +
  'the joiners U+200C and U+200D are allowed)';
/** Printable ASCII only (a relay state): at least one character, or any number. */
export const PRINTABLE_ASCII_PATTERN = '^[\\x20-\\x7e]+$';
export const PRINTABLE_ASCII_OR_EMPTY_PATTERN = '^[\\x20-\\x7e]*$';

/** What a pattern or format means, said instead of ajv's "must match pattern <regular expression>". */
const PATTERN_MEANS: Record<string, string> = {
  [HTTP_URL_PATTERN]: 'must be an absolute http or https URL',
  [UUID_PATTERN]: 'must be a UUID',
  [NOT_BLANK_PATTERN]: BLANK,
  [PRINTABLE_ASCII_PATTERN]: 'must be printable ASCII characters',
  [PRINTABLE_ASCII_OR_EMPTY_PATTERN]: 'must be printable ASCII characters',
};
const FORMAT_MEANS: Record<string, string> = {
  iri: 'must be an absolute URL, with no white space or control character',
  'plain-text': 'must not contain a control, line-break or invisible formatting character (an ESC, a right-to-left override, a zero-width space), nor be blank (white space or invisible characters only)',
};

export function isUuid(s: string): boolean {
  return UUID.test(s);
}

/**
 * An id from a request's path as a message names it: a UUID as it is; anything else as shownText shows text a
 * client sent (in quotes, control and formatting characters as `?`, a long one cut with its length).
 */
export function shownId(id: string): string {
  return isUuid(id) ? id : shownText(id);
}

/** A validator of `schema`, compiled on its first call; like ajv's, it leaves the last call's problems in `errors`. */
export function compile<S extends TSchema>(schema: S): ValidateFunction<Static<S>> {
  let compiled: ValidateFunction<Static<S>> | undefined;
  const validate = ((data: unknown) => {
    compiled ??= ajv.compile<Static<S>>(schema);
    const ok = compiled(data);
    validate.errors = compiled.errors;
    return ok;
  }) as ValidateFunction<Static<S>>;
  return validate;
}

/**
 * How many of a body's problems an answer lists. ajv reports every one (allErrors), and a 63 KB body of
 * 21,000 empty strings made 42,000: a 2.2 MB answer.
 */
export const MAX_LISTED_PROBLEMS = 20;

/** The first MAX_LISTED_PROBLEMS of `items`, and how many more there were. */
export function firstProblems<T>(items: readonly T[]): { listed: T[]; more: number } {
  return { listed: items.slice(0, MAX_LISTED_PROBLEMS), more: Math.max(0, items.length - MAX_LISTED_PROBLEMS) };
}

/**
 * Turns ajv errors into sentences that name the field, e.g. "email_claims: must NOT have more than 3 items";
 * at most MAX_LISTED_PROBLEMS of them, then how many more there are.
 */
export function describeErrors(errors: ErrorObject[] | null | undefined): string[] {
  const { listed, more } = firstProblems(oneShapeProblemPerValue(oneProblemPerAnyOf(errors ?? [])));
  return [...listed.map(describeError), ...(more ? [`and ${more} more problem${more === 1 ? '' : 's'}`] : [])];
}

/**
 * A value that matches no branch of an anyOf (`parent_id`: a UUID or null) is one problem, said as what it may
 * be: "must be a UUID or null", not each branch's complaint and then "must match a schema in anyOf". Only the
 * branches' errors about the value itself are folded; one about a field inside it stays as it is.
 */
function oneProblemPerAnyOf(errors: readonly ErrorObject[]): ErrorObject[] {
  const anyOfs = errors.filter((e) => e.keyword === 'anyOf');
  if (anyOfs.length === 0) return [...errors];
  const branches = new Map<ErrorObject, ErrorObject[]>(anyOfs.map((a) => [a, []]));
  const owner = (e: ErrorObject) => anyOfs.find((a) => a !== e && a.instancePath === e.instancePath && e.schemaPath.startsWith(`${a.schemaPath}/`));
  const kept = errors.filter((e) => {
    const a = owner(e);
    if (a === undefined) return true;
    branches.get(a)?.push(e);
    return false;
  });
  return kept.map((e) => {
    const folded = branches.get(e);
    if (folded === undefined || folded.length === 0) return e;
    const meanings = folded.map((b) => (b.keyword === 'pattern' || b.keyword === 'format' ? shapeMeaning(b) : (b.message ?? 'is invalid')));
    const said = meanings.every((m) => m.startsWith('must be '))
      ? `must be ${meanings.map((m) => m.slice('must be '.length)).join(' or ')}`
      : meanings.join(', or ');
    return { ...e, keyword: 'anyOf_folded', message: said };
  });
}

/** What a value failing both its pattern and its format must be, said once. */
const PATTERN_AND_FORMAT_MEAN: Record<string, string> = {
  [`${HTTP_URL_PATTERN} iri`]: 'must be an absolute http or https URL, with no white space or control character',
  [`${NOT_BLANK_PATTERN} plain-text`]: BLANK,
};

/**
 * A value that fails its pattern and its format (a relative URL is neither "absolute http(s)" nor an absolute
 * IRI) is one problem of that field, not two: one sentence for both rules, where the pattern's stood.
 */
function oneShapeProblemPerValue(errors: readonly ErrorObject[]): ErrorObject[] {
  // One pass (a body can bring tens of thousands of errors): each value's shape errors, by its path.
  const shapes = new Map<string, { pattern?: ErrorObject; format?: ErrorObject }>();
  // The values too short (an empty one also fails its shape: see below).
  const tooShort = new Set<string>();
  for (const e of errors) {
    if (e.keyword === 'minLength') tooShort.add(e.instancePath);
    if (e.keyword !== 'pattern' && e.keyword !== 'format') continue;
    const seen = shapes.get(e.instancePath) ?? {};
    seen[e.keyword] ??= e;
    shapes.set(e.instancePath, seen);
  }
  return errors.flatMap((e) => {
    // An empty value is too short and fails its shape (blank, not printable ASCII, not a URL): one problem,
    // said by its length; ajv's verbose errors carry the value.
    const shape = e.keyword === 'pattern' || e.keyword === 'format';
    if (shape && e.data === '' && tooShort.has(e.instancePath)) return [];
    const blank = e.keyword === 'pattern' && e.params.pattern === NOT_BLANK_PATTERN;
    if (blank && tooShort.has(e.instancePath)) return [];
    const seen = e.keyword === 'pattern' || e.keyword === 'format' ? shapes.get(e.instancePath) : undefined;
    if (!seen?.pattern || !seen.format) return [e];
    if (e !== seen.pattern) return [];
    const both = PATTERN_AND_FORMAT_MEAN[`${String(seen.pattern.params.pattern)} ${String(seen.format.params.format)}`];
    return [{ ...e, keyword: 'pattern_and_format', message: both ?? `${shapeMeaning(seen.pattern)}, and ${shapeMeaning(seen.format)}` }];
  });
}

/** What a pattern or format error means, in words rather than the regular expression. */
function shapeMeaning(e: ErrorObject): string {
  const known = e.keyword === 'pattern' ? PATTERN_MEANS[String(e.params.pattern)] : FORMAT_MEANS[String(e.params.format)];
  return known ?? e.message ?? 'is invalid';
}

/** The segments of an ajv instancePath (a JSON pointer); a number is an array's index (request schemas name their fields). */
const pointerSegments = (pointer: string): (string | number)[] =>
  pointer.slice(1).split('/').map((s) => (/^\d+$/.test(s) ? Number(s) : s.replace(/~1/g, '/').replace(/~0/g, '~')));

function describeError(e: ErrorObject): string {
  const field = e.instancePath ? bodyPath(pointerSegments(e.instancePath)) : 'body';
  switch (e.keyword) {
    case 'additionalProperties':
      // The name is the client's: shown as a client's text is (an escape sequence, a 60,000-character name).
      return `${field === 'body' ? '' : field + ': '}unknown field ${shownText(String(e.params.additionalProperty))}`;
    case 'required':
      return `${field === 'body' ? '' : field + ': '}missing required field '${String(e.params.missingProperty)}'`;
    case 'pattern':
    case 'format':
      return `${field}: ${shapeMeaning(e)}`;
    case 'minProperties': {
      // An object that must name something (a PATCH of options): which fields it takes, not a count.
      const names = Object.keys((e.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      return names.length ? `${field === 'body' ? '' : field + ': '}names none of its fields; send at least one of: ${names.join(', ')}` : `${field}: ${e.message ?? 'is invalid'}`;
    }
    default:
      return `${field}: ${e.message ?? 'is invalid'}`;
  }
}
