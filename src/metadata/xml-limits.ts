/**
 * One linear pass over a metadata document before any parser sees it. It refuses:
 *   - characters XML does not allow (NUL and the other C0 controls, unpaired UTF-16 surrogates, U+FFFE/U+FFFF)
 *     and character references to them (`&#0;`, `&#xD800;`): they are not well-formed XML, and Postgres
 *     cannot store the text they would become;
 *   - documents bigger, deeper, or with more elements or attributes than real IdP metadata needs.
 * The counts bound the work of the DOM parser, the signature check and everything after them, so the
 * largest document that passes costs the event loop a few tens of milliseconds (see `npm run bench -- stall`).
 * No regular expression runs over the text here; every loop advances, so the cost is O(length).
 */
import { MetadataError } from './errors';

export interface XmlLimits {
  maxChars: number;
  maxDepth: number;
  maxElements: number;
  maxAttributes: number;
  maxAttributesPerElement: number;
}

// ADFS metadata, the largest real document among the fixtures, has 556 elements, 737 attributes and depth 9.
export const XML_LIMITS: XmlLimits = {
  maxChars: 1024 * 1024,
  maxDepth: 40,
  maxElements: 2000,
  maxAttributes: 4000,
  maxAttributesPerElement: 50,
};

/** Work done by the last scan, for tests that check it grows linearly with the input. */
export const scanStats = { steps: 0 };

function isXmlChar(cp: number): boolean {
  return cp === 0x9 || cp === 0xa || cp === 0xd || (cp >= 0x20 && cp <= 0xd7ff) || (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff);
}

function notWellFormed(what: string, at: number): MetadataError {
  return new MetadataError('not_xml', `The document is not well-formed XML: it contains ${what} (at character ${at}). Such text cannot be stored.`);
}

const HEX = (c: number) => (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);
const DEC = (c: number) => c >= 48 && c <= 57;

/** `&#...;` starting at `amp`: the code point it names, or -1 when it is not a character reference. */
function charReference(text: string, amp: number): { cp: number; end: number } | null {
  if (text.charCodeAt(amp + 1) !== 35 /* # */) return null;
  const hex = text.charCodeAt(amp + 2) === 120; /* x */
  let i = amp + (hex ? 3 : 2);
  const start = i;
  let cp = 0;
  // Eight digits already exceed U+10FFFF; stop there rather than read an unbounded run.
  while (i - start <= 8 && (hex ? HEX(text.charCodeAt(i)) : DEC(text.charCodeAt(i)))) {
    cp = cp * (hex ? 16 : 10) + parseInt(text[i] ?? '0', hex ? 16 : 10);
    i++;
  }
  if (i === start || text.charCodeAt(i) !== 59 /* ; */) return { cp: -1, end: i };
  return { cp, end: i + 1 };
}

/** Refuses characters and character references that XML 1.0 does not allow. */
function checkCharacters(text: string): void {
  scanStats.steps += text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
      throw notWellFormed('an unpaired UTF-16 surrogate', i);
    }
    if (!isXmlChar(c)) throw notWellFormed(c === 0 ? 'a NUL character' : `the character U+${c.toString(16).toUpperCase().padStart(4, '0')}`, i);
    if (c === 38 /* & */) {
      const ref = charReference(text, i);
      if (ref === null) continue;
      if (ref.cp < 0) throw notWellFormed('a malformed character reference', i);
      if (!isXmlChar(ref.cp)) throw notWellFormed(`a reference to the character U+${ref.cp.toString(16).toUpperCase()}, which XML does not allow`, i);
      i = ref.end - 1;
    }
  }
}

function tooBig(what: string, limit: number): MetadataError {
  return new MetadataError('too_large', `The document has more ${what} than the ${limit} allowed for IdP metadata.`);
}

function malformedTag(what: string): MetadataError {
  return new MetadataError('not_xml', `The document is not well-formed XML (${what} in a start tag).`);
}

/** Skips `<!-- -->`, `<![CDATA[ ]]>` and `<? ?>`; returns the index after the construct, or -1 when `lt` starts none. */
function skipSpecial(text: string, lt: number): number {
  const pairs: [string, string][] = [['<!--', '-->'], ['<![CDATA[', ']]>'], ['<?', '?>']];
  for (const [open, close] of pairs) {
    if (text.startsWith(open, lt)) {
      const end = text.indexOf(close, lt + open.length);
      return end < 0 ? text.length : end + close.length;
    }
  }
  return -1;
}

/** Counts elements, attributes and depth, refusing as soon as one passes its limit. */
function checkStructure(text: string, limits: XmlLimits): void {
  let depth = 0;
  let elements = 0;
  let attributes = 0;
  let i = 0;
  const n = text.length;
  for (;;) {
    const lt = text.indexOf('<', i);
    if (lt < 0) return;
    scanStats.steps += lt - i;
    const skipped = skipSpecial(text, lt);
    if (skipped >= 0) {
      scanStats.steps += skipped - lt;
      i = skipped;
      continue;
    }
    const second = text.charCodeAt(lt + 1);
    if (second === 47 /* / */ || second === 33 /* ! */) {
      if (second === 47) depth--;
      const gt = text.indexOf('>', lt);
      scanStats.steps += (gt < 0 ? n : gt) - lt;
      if (gt < 0) return;
      i = gt + 1;
      continue;
    }
    // A start tag: read to its '>' outside quoted values; each '=' outside quotes is one attribute. A value
    // must be quoted and a quote must open a value: where the two differ, this scan and the parser would
    // disagree on where the tag ends (xmldom reads `b=x"y` as a value and goes on), and what one counted as
    // a quoted value the other would build as elements.
    let j = lt + 1;
    let quote = 0;
    let attrs = 0;
    let valueNext = false;
    for (; j < n; j++) {
      const c = text.charCodeAt(j);
      if (quote !== 0) {
        if (c === quote) quote = 0;
      } else if (c === 34 || c === 39) {
        if (!valueNext) throw malformedTag('a quote where no attribute value starts');
        quote = c;
        valueNext = false;
      } else if (c === 61 /* = */) {
        if (valueNext) throw malformedTag('an attribute without a quoted value');
        valueNext = true;
        if (++attrs > limits.maxAttributesPerElement) throw tooBig('attributes on one element', limits.maxAttributesPerElement);
      } else if (c === 62 /* > */ || c === 60 /* < */) break;
      else if (valueNext && c !== 32 && c !== 9 && c !== 10 && c !== 13) throw malformedTag('an attribute value without quotes');
    }
    scanStats.steps += j - lt;
    if (++elements > limits.maxElements) throw tooBig('elements', limits.maxElements);
    if ((attributes += attrs) > limits.maxAttributes) throw tooBig('attributes', limits.maxAttributes);
    const selfClosing = text.charCodeAt(j) === 62 && text.charCodeAt(j - 1) === 47;
    if (!selfClosing && ++depth > limits.maxDepth) {
      throw new MetadataError('not_metadata', `The document nests elements more than ${limits.maxDepth} deep; real IdP metadata needs about 10.`);
    }
    // On a stray '<' the parser reports the error; resume there so it is counted as the next tag.
    i = text.charCodeAt(j) === 62 ? j + 1 : j;
  }
}

/** Throws a MetadataError when the document must not be parsed at all. Linear in its length. */
export function checkXmlLimits(text: string, limits: XmlLimits = XML_LIMITS): void {
  scanStats.steps = 0;
  if (text.length > limits.maxChars) throw tooBig('characters', limits.maxChars);
  checkCharacters(text);
  checkStructure(text, limits);
}
