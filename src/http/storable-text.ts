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

/** Where in `value` (a parsed JSON body, a query object) the first unstorable text is, or null. */
export function unstorableField(value: unknown, root: string): string | null {
  const stack: { v: unknown; where: string; depth: number }[] = [{ v: value, where: root, depth: 0 }];
  while (stack.length > 0) {
    const { v, where, depth } = stack.pop() as { v: unknown; where: string; depth: number };
    if (typeof v === 'string') {
      if (!isStorableText(v)) return where;
    } else if (v !== null && typeof v === 'object') {
      if (depth >= MAX_DEPTH) return `${where} (nested more than ${MAX_DEPTH} deep)`;
      for (const [k, child] of Object.entries(v as Record<string, unknown>)) {
        if (!isStorableText(k)) return `${where} (a field name)`;
        stack.push({ v: child, where: Array.isArray(v) ? `${where}[${k}]` : `${where}.${k}`, depth: depth + 1 });
      }
    }
  }
  return null;
}

const refusal = (where: string) =>
  badRequest(`${where} contains text that cannot be stored: a NUL character or an unpaired UTF-16 surrogate.`);

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
      const inQuery = unstorableField(req.query, 'query');
      if (inQuery) throw refusal(`The query parameter ${inQuery.replace(/^query\./, '')}`);
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
  const where = unstorableField(body, 'body');
  if (where) throw refusal(`The request ${where}`);
}
