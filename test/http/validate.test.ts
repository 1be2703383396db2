/**
 * describeErrors: ajv's errors as sentences a caller can act on. A pattern or format this service names
 * is said as what it means, not as the regular expression the value failed.
 */
import { Type } from '@sinclair/typebox';
import { compile, describeErrors, HTTP_URL_PATTERN, PLAIN_TEXT, PRINTABLE_ASCII_PATTERN, shownId, Uuid } from '../../src/http/validate';

const validate = compile(Type.Object({
  url: Type.Optional(Type.String({ pattern: HTTP_URL_PATTERN, format: 'iri' })),
  name: Type.Optional(Type.String({ ...PLAIN_TEXT })),
  id: Type.Optional(Uuid()),
  code: Type.Optional(Type.String({ pattern: '^[a-z]{2}$' })),
  relay: Type.Optional(Type.String({ pattern: PRINTABLE_ASCII_PATTERN })),
}, { additionalProperties: false }));

const problems = (body: unknown) => (validate(body) ? [] : describeErrors(validate.errors));

test('says what a known pattern or format means', () => {
  expect(problems({ url: 'ftp://idp.example/md.xml' })).toEqual(['url: must be an absolute http or https URL']);
  expect(problems({ url: 'https://idp.example/a b' })).toEqual(['url: must be an absolute URL, with no white space or control character']);
  expect(problems({ name: '   ' })).toEqual(['name: must not be blank (white space or invisible characters only)']);
  // Unicode's spaces alone are blank too.
  for (const name of ['\u00a0\u3000', '\ufeff', '\u2028']) {
    expect(problems({ name })).toEqual(['name: must not be blank (white space or invisible characters only)']);
  }
  // Invisible characters, alone or beside a letter, and controls are the plain-text rule's, which says both.
  for (const name of ['\u200b', '\u202e\u200d', '\u034f', '\u0085', 'a\u200b', 'a\u001b[0m', 'a\u2029b']) {
    expect(problems({ name })).toEqual([
      'name: must not contain a control, line-break or invisible formatting character (an ESC, a right-to-left override, a zero-width space), nor be blank (white space or invisible characters only)',
    ]);
  }
  for (const name of ['a b', '\u0645\u200c\u0647', '\u{1f469}\u200d\u{1f4bb}', '\u00e9', '\u{1f600}', '-']) expect(problems({ name })).toEqual([]);
  expect(problems({ id: 'not-a-uuid' })).toEqual(['id: must be a UUID']);
  expect(problems({ relay: 'caf\u00e9' })).toEqual(['relay: must be printable ASCII characters']);
});

test("keeps ajv's words for a pattern it has no meaning for, and names an unknown field", () => {
  expect(problems({ code: 'xyz' })).toEqual(['code: must match pattern "^[a-z]{2}$"']);
  expect(problems({ other: 1 })).toEqual(["unknown field 'other'"]);
});

test("an unknown field's name and an id from the path are shown as a client's text is: control and formatting characters as ?, a long one cut", () => {
  expect(problems({ 'a\u001b[31mb\u202ec': 1 })).toEqual(["unknown field 'a?[31mb?c'"]);
  const [long] = problems({ ['n'.repeat(60_000)]: 1 });
  expect(long).toBe(`unknown field '${'n'.repeat(64)}…' (60000 characters)`);
  expect(shownId('01a20904-0000-7000-8000-000000000000')).toBe('01a20904-0000-7000-8000-000000000000');
  expect(shownId(`x\u202e${'y'.repeat(100)}`)).toBe(`'x?${'y'.repeat(62)}…' (102 characters)`);
});

test('a value failing its pattern and its format is one problem, in words for both', () => {
  expect(problems({ url: '/metadata.xml' })).toEqual(['url: must be an absolute http or https URL, with no white space or control character']);
  expect(problems({ url: '/metadata.xml', id: 'x', other: 1 })).toHaveLength(3);
});

test('an empty value that must not be blank is one problem, its length, not two', () => {
  const named = compile(Type.Object({ name: Type.String({ minLength: 1, ...PLAIN_TEXT }) }));
  named({ name: '' });
  expect(describeErrors(named.errors)).toEqual(['name: must NOT have fewer than 1 characters']);
  // Any shape an empty value fails (printable ASCII, an http URL) is left to its length too.
  const relay = compile(Type.Object({ relay: Type.String({ minLength: 1, pattern: PRINTABLE_ASCII_PATTERN }), url: Type.String({ minLength: 1, pattern: HTTP_URL_PATTERN, format: 'iri' }) }));
  relay({ relay: '', url: '' });
  expect(describeErrors(relay.errors)).toEqual(['relay: must NOT have fewer than 1 characters', 'url: must NOT have fewer than 1 characters']);
  relay({ relay: 'caf\u00e9', url: 'https://x' });
  expect(describeErrors(relay.errors)).toEqual(['relay: must be printable ASCII characters']);
  named({ name: '  ' });
  expect(describeErrors(named.errors)).toEqual(['name: must not be blank (white space or invisible characters only)']);
});

test('an object that must name a field names the fields it takes, not a count', () => {
  const settings = compile(Type.Object({ on: Type.Optional(Type.Boolean()), off: Type.Optional(Type.Boolean()) }, { additionalProperties: false, minProperties: 1 }));
  expect(settings({})).toBe(false);
  expect(describeErrors(settings.errors)).toEqual(['names none of its fields; send at least one of: on, off']);
  const nested = compile(Type.Object({ options: Type.Object({ on: Type.Optional(Type.Boolean()) }, { minProperties: 1 }) }));
  expect(nested({ options: {} })).toBe(false);
  expect(describeErrors(nested.errors)).toEqual(['options: names none of its fields; send at least one of: on']);
});
