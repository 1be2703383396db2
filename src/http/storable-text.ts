/**
 * Text Postgres cannot store is refused at the edge, as a 400 in the caller's dialect, instead of failing
 * as a 500 when the write reaches the database: NUL (refused by text and jsonb alike) and unpaired UTF-16
 * surrogates (no UTF-8 form; jsonb refuses their \u escapes). Checked: the URL path (decoded, which also
 * catches malformed %-escapes before the router's own decoding), the query, header values and JSON bodies.
 */
import type { Request, RequestHandler } from 'express';
import { badRequest } from './errors';

const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
/** The APIs' bodies are flat; a deeper one is refused rather than walked. */
const MAX_DEPTH = 32;

export function isStorableText(s: string): boolean {
  return !UNSTORABLE.test(s);
}

/** What unstorableField found: where, and whether it is text that cannot be stored or nesting too deep to walk. */
interface Unstorable {
  where: string;
  deep: boolean;
}

/** Where in `value` (a parsed JSON body, a query object) the first unstorable text is, or null. */
export function unstorableField(value: unknown, root: string): Unstorable | null {
  const stack: { v: unknown; where: string; depth: number }[] = [{ v: value, where: root, depth: 0 }];
  while (stack.length > 0) {
    const { v, where, depth } = stack.pop() as { v: unknown; where: string; depth: number };
    if (typeof v === 'string') {
      if (!isStorableText(v)) return { where, deep: false };
    } else if (v !== null && typeof v === 'object') {
      if (depth >= MAX_DEPTH) return { where, deep: true };
      for (const [k, child] of Object.entries(v as Record<string, unknown>)) {
        if (!isStorableText(k)) return { where: `${where} (a field name)`, deep: false };
        stack.push({ v: child, where: Array.isArray(v) ? `${where}[${k}]` : `${where}.${k}`, depth: depth + 1 });
      }
    }
  }
  return null;
}

const refusal = (where: string) =>
  badRequest(`${where} contains text that cannot be stored: a NUL character or an unpaired UTF-16 surrogate.`);

/** The refusal of what unstorableField found, `what` naming the input ("The request", "The query parameter"). */
function refusalOf(found: Unstorable, what: string): ReturnType<typeof badRequest> {
  if (!found.deep) return refusal(`${what} ${found.where}`);
  // Shown up to a point: a path through 32 levels is long and says nothing more.
  const where = found.where.length > 120 ? `${found.where.slice(0, 120)}…` : found.where;
  return badRequest(`${what} ${where} is nested more than ${MAX_DEPTH} levels deep; no field of this API is.`);
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
      const inQuery = unstorableField(req.query, 'query');
      if (inQuery) throw refusalOf({ ...inQuery, where: inQuery.where.replace(/^query\./, '') }, 'The query parameter');
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
  const found = unstorableField(body, 'body');
  if (found) throw refusalOf(found, 'The request');
}
