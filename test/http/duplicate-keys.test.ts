/**
 * repeatedKey names where a repeated key is as validation messages name paths (describeErrors): field names
 * joined with '.', array indexes as '.0', and any other name quoted as ["a.b"], so a path reads back one way.
 */
import { repeatedKey } from '../../src/http/duplicate-keys';

const whereRepeated = (text: string) => repeatedKey(text, JSON.parse(text))?.path;

test('names the path to the object that repeats a key: fields joined with ".", array indexes as ".0"', () => {
  expect(whereRepeated('{"c":1,"c":2}')).toBe('');
  expect(whereRepeated('{"a":{"b":{"c":1,"c":2}}}')).toBe('a.b');
  expect(whereRepeated('{"x":[{"c":1},{"c":1,"c":2}]}')).toBe('x.1');
  expect(whereRepeated('[{"c":1},{"c":1,"c":2}]')).toBe('1');
});

test('a key with a ".", a "[", a digit first or anything but a plain name is quoted, not taken for a path or an index', () => {
  const cases: [string, string][] = [
    ['{"a.b":{"c":1,"c":2}}', '["a.b"]'],
    ['{"x":{"a.b":{"c":1,"c":2}}}', 'x["a.b"]'],
    ['{"[0]":{"c":1,"c":2}}', '["[0]"]'],
    ['{"x":{"[1]":{"c":1,"c":2}}}', 'x["[1]"]'],
    ['{"1":{"c":1,"c":2}}', '["1"]'],
    ['{"a b":{"c\\"d":{"e":1,"e":2}}}', '["a b"]["c\\"d"]'],
    ['{"":{"c":1,"c":2}}', '[""]'],
  ];
  for (const [text, path] of cases) expect({ text, path: whereRepeated(text) }).toEqual({ text, path });
});
