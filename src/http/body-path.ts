/**
 * A path into a request body as messages name it: field names joined with '.', array indexes as '.0', and a name
 * that is not a plain one (a '.', a '[', a space, a digit first, empty…) quoted as `["a.b"]`, so that a path
 * reads back one way (`a.b` was the field "a.b" as well as b in a). A module of its own, without ajv and
 * typebox: the operator worker names fields with it (storable-text.ts) and validates no request body.
 */
export function bodyPath(segments: readonly (string | number)[]): string {
  return segments.reduce<string>((path, s) => {
    if (typeof s === 'number' || /^[A-Za-z_][A-Za-z0-9_-]*$/.test(s)) return path ? `${path}.${s}` : String(s);
    return `${path}[${JSON.stringify(s)}]`;
  }, '');
}
