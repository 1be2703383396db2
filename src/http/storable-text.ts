/**
 * Text Postgres cannot store is refused at the edge, as a 400 in the caller's dialect, instead of failing
 * as a 500 when the write reaches the database: NUL (refused by text and jsonb alike) and unpaired UTF-16
 * surrogates (no UTF-8 form; jsonb refuses their \u escapes). Checked: the URL path (decoded, which also
 * catches malformed %-escapes before the router's own decoding), the query, header values and JSON bodies.
 */
import type { Request, RequestHandler } from 'express';
import { badRequest } from './errors';
import { bodyPath } from './body-path';

const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
/** The APIs' bodies are flat; a deeper one is refused rather than walked. */
const MAX_DEPTH = 32;

export function isStorableText(s: string): boolean {
  return !UNSTORABLE.test(s);
}

/** What unstorableField found: where (the path to it), whether in a field's name, and whether it is nesting too deep to walk. */
interface Unstorable {
  path: (string | number)[];
  inName: boolean;
  deep: boolean;
}

/** Where in `value` (a parsed JSON body, a query object) the first unstorable text is, or null. */
export function unstorableField(value: unknown): Unstorable | null {
  const stack: { v: unknown; path: (string | number)[] }[] = [{ v: value, path: [] }];
  while (stack.length > 0) {
    const { v, path } = stack.pop() as { v: unknown; path: (string | number)[] };
    if (typeof v === 'string') {
      if (!isStorableText(v)) return { path, inName: false, deep: false };
    } else if (v !== null && typeof v === 'object') {
      if (path.length >= MAX_DEPTH) return { path, inName: false, deep: true };
      const array = Array.isArray(v);
      for (const [k, child] of Object.entries(v as Record<string, unknown>)) {
        if (!isStorableText(k)) return { path, inName: true, deep: false };
        stack.push({ v: child, path: [...path, array ? Number(k) : k] });
      }
    }
  }
  return null;
}

const refusal = (where: string) =>
  badRequest(`${where} contains text that cannot be stored: a NUL character or an unpaired UTF-16 surrogate.`);

/** A path named as validation messages name it (email_claims.0), cut at 120 characters: 32 levels say nothing more. */
function shownPath(path: readonly (string | number)[]): string {
  // Cut by code points, as shownText cuts: a cut inside a surrogate pair put an unpaired surrogate in the message that refuses one.
  const chars = [...bodyPath(path)];
  return chars.length > 120 ? `${chars.slice(0, 120).join('')}…` : chars.join('');
}

/** The refusal of what unstorableField found in the request body. */
function bodyRefusal(found: Unstorable): ReturnType<typeof badRequest> {
  const field = found.path.length ? `the field ${shownPath(found.path)} of the request body` : 'the request body';
  const where = found.inName ? `A field name in ${field}` : field.charAt(0).toUpperCase() + field.slice(1);
  if (!found.deep) return refusal(where);
  return badRequest(`${where} is nested more than ${MAX_DEPTH} levels deep; no field of this API is.`);
}

/** The refusal of what unstorableField found in the query (its object: parameter, then what the parser made of it). */
function queryRefusal(found: Unstorable): ReturnType<typeof badRequest> {
  const where = found.inName || found.path.length === 0 ? 'A query parameter name' : `The query parameter ${shownPath(found.path)}`;
  if (!found.deep) return refusal(where);
  return badRequest(`${where} is nested more than ${MAX_DEPTH} levels deep; no parameter of this API is.`);
}

function decodedPath(req: Request): string {
  const path = req.path;
  if (!path.includes('%')) return path;
  try {
    return decodeURIComponent(path);
  } catch {
    throw badRequest('The URL path contains a malformed %-escape.');
  }
}

/** Mount first in each dialect's router, so the refusal leaves in that dialect's envelope. */
export function refuseUnstorableInput(): RequestHandler {
  return (req, _res, next) => {
    if (!isStorableText(decodedPath(req))) throw refusal('The URL path');
    if (req.url.includes('?')) {
      // The query parser keeps a malformed escape as it is ("%zz", or "%FF", which is no UTF-8): refused as
      // in the path, so that no value is read other than as sent.
      try {
        decodeURIComponent(req.url.slice(req.url.indexOf('?') + 1).replace(/\+/g, ' '));
      } catch {
        throw badRequest('The query contains a malformed %-escape.');
      }
      const inQuery = unstorableField(req.query);
      if (inQuery) throw queryRefusal(inQuery);
    }
    // One test over all header values; which one it was is looked for only when one is refused.
    if (!isStorableText(req.rawHeaders.join('\n'))) {
      for (let i = 1; i < req.rawHeaders.length; i += 2) {
        if (!isStorableText(req.rawHeaders[i] ?? '')) throw refusal(`The header ${(req.rawHeaders[i - 1] ?? '').slice(0, 64)}`);
      }
    }
    next();
  };
}

/** For a parsed JSON body. */
export function refuseUnstorableBody(body: unknown): void {
  const found = unstorableField(body);
  if (found) throw bodyRefusal(found);
}
