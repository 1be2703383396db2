/**
 * A JSON object that names a key twice. JSON.parse keeps the last value silently; other parsers keep the
 * first or refuse (RFC 8259 leaves it open), so a proxy or client library that read the body would see
 * another request than this service stores. Such a body is refused, naming the key.
 *
 * The check costs one scan of the text for an ordinary body: the keys the text spells (a `:` outside a
 * string is a key's) are counted and compared with those the parsed value has; only a difference, which a
 * repeated key is the only cause of, leads to the slower walk that finds which key it was.
 */
import { bodyPath } from './body-path';

/** A string token (escapes included) or one of JSON's structural characters outside strings. */
const TOKENS = /"[^"\\]*(?:\\.[^"\\]*)*"|[{}[\]:,]/g;
/** Strings and colons only: the count of colons outside strings is the count of keys. */
const STRINGS_OR_COLONS = /"[^"\\]*(?:\\.[^"\\]*)*"|:/g;

function keysSpelt(text: string): number {
  let count = 0;
  STRINGS_OR_COLONS.lastIndex = 0;
  for (let m = STRINGS_OR_COLONS.exec(text); m !== null; m = STRINGS_OR_COLONS.exec(text)) if (m[0] === ':') count++;
  return count;
}

function keysParsed(value: unknown): number {
  // Without recursion: the body's depth is bounded (storable-text.ts), this need not rely on it.
  let count = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v !== 'object' || v === null) continue;
    const children = Array.isArray(v) ? v : Object.values(v);
    if (!Array.isArray(v)) count += children.length;
    for (const c of children) if (typeof c === 'object' && c !== null) stack.push(c);
  }
  return count;
}

/** One level of the walk: an object's keys so far, or an array's index. */
type Level = { keys: Set<string>; key: string | null } | { index: number };

/** The first repeated key, with the path to its object (as validation messages name one: bodyPath), in text JSON.parse accepted. */
function firstRepeat(text: string): { key: string; path: string } | null {
  const stack: Level[] = [];
  let pending: string | null = null;
  const path = () => bodyPath(stack.slice(0, -1).flatMap((l): (string | number)[] => ('keys' in l ? (l.key === null ? [] : [l.key]) : [l.index])));
  TOKENS.lastIndex = 0;
  for (let m = TOKENS.exec(text); m !== null; m = TOKENS.exec(text)) {
    const token = m[0];
    const top = stack[stack.length - 1];
    if (token === '{') stack.push({ keys: new Set(), key: null });
    else if (token === '[') stack.push({ index: 0 });
    else if (token === '}' || token === ']') stack.pop();
    else if (token === ',' && top && 'index' in top) top.index++;
    else if (token === ':' && top && 'keys' in top && pending !== null) {
      if (top.keys.has(pending)) return { key: pending, path: path() };
      top.keys.add(pending);
      top.key = pending;
    }
    // A key's spelling may differ ("a" and "\u0061" are one key): compared decoded.
    pending = token.startsWith('"') ? (JSON.parse(token) as string) : null;
  }
  return null;
}

/** The repeated key of a parsed body and where it is, or null (the usual case: one scan). */
export function repeatedKey(text: string, parsed: unknown): { key: string; path: string } | null {
  if (typeof parsed !== 'object' || parsed === null) return null;
  if (keysSpelt(text) === keysParsed(parsed)) return null;
  return firstRepeat(text);
}
