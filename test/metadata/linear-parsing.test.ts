/**
 * The parser's defences against documents built to stall it: every scan is linear (checked with its work
 * counter at N and 4N characters, not with a clock), the limits refuse what real metadata never needs, the
 * largest documents within the limits are still accepted, and a parse that runs too long is abandoned.
 */
import { deep, hostile, largestAccepted, padded } from '../../bench/metadata-documents';
import { MetadataError } from '../../src/metadata/errors';
import { parseIdpMetadata } from '../../src/metadata/parse-metadata';
import { ParsePool } from '../../src/metadata/parse-pool';
import { parseCertificate } from '../../src/metadata/x509';
import { metadataRefusal } from './support/fixtures';
import { htmlTitle } from '../../src/metadata/xml-dom';
import { checkXmlLimits, scanStats, XML_LIMITS } from '../../src/metadata/xml-limits';

const NOW = new Date('2026-11-23T00:00:00Z');
const KiB = 1024;

const refusal = (xml: string) => metadataRefusal(xml, NOW);

/** Work the pre-scan does on `make(n)`, with every limit lifted so the whole text is scanned. */
function work(make: (n: number) => string, n: number): number {
  try {
    checkXmlLimits(make(n), { maxChars: 1e9, maxDepth: 1e9, maxElements: 1e9, maxAttributes: 1e9, maxAttributesPerElement: 1e9 });
  } catch {
    // refusing by character is fine; the counter still says how far it got
  }
  return scanStats.steps;
}

describe('the pre-scan is linear in the length of the document', () => {
  test.each([
    ['<title repeated', (n: number) => '<title'.repeat(n)],
    ['-----BEGIN A----- repeated', (n: number) => '-----BEGIN A-----'.repeat(n)],
    ['unclosed elements', (n: number) => '<a>'.repeat(n)],
    ['an unterminated quoted attribute', (n: number) => `<a b="${'x'.repeat(n)}`],
    ['unclosed comments', (n: number) => '<!--'.repeat(n)],
    ['character references', (n: number) => '<a>' + '&#65;'.repeat(n) + '</a>'],
  ])('%s: 4x the input is 4x the work', (_name, make) => {
    const small = work(make, 10_000);
    const large = work(make, 40_000);
    expect(small).toBeGreaterThan(0);
    expect(large / small).toBeGreaterThan(3.5);
    expect(large / small).toBeLessThan(4.5);
  });
});

describe('hostile documents are refused', () => {
  test('1 MiB of "<title" as an HTML page: refused as HTML, the title search done in one pass', () => {
    const page = '<html>' + '<title'.repeat((1024 * KiB) / 6);
    expect(htmlTitle(page)).toBeNull();
    expect(refusal(page).code).toBe('not_xml');
  });

  test('a real title is still quoted, short and printable', () => {
    const err = refusal(`<html><head><title>Sign in\u0007 ${'x'.repeat(150)}</title></head></html>`);
    expect(err.message).toMatch(/titled "Sign in\? x+…"/);
    expect(htmlTitle(`<html><title>${'y'.repeat(300)}</title>`)).toBeNull();
  });

  test('repeated "-----BEGIN A-----" is refused by length, and within the length in one pass', () => {
    expect(() => parseCertificate('-----BEGIN A-----'.repeat((1024 * KiB) / 17))).toThrow(/longer than 32 KiB/);
    expect(() => parseCertificate('-----BEGIN A-----'.repeat((30 * KiB) / 17))).toThrow(/without a matching "-----END/);
  });

  test.each(Object.entries(hostile()))('%s', (_name, xml) => {
    expect(refusal(xml)).toBeInstanceOf(MetadataError);
  });

  test('NUL and lone surrogates, raw or as character references, are not XML', () => {
    const okta = padded({ elements: 20, chars: 4000 });
    for (const bad of ['&#0;', '&#x0;', '&#xD800;', '&#55296;', '&#x110000;', '\u0000', '\ud800', '\udc00x', '\u0001', '&#1;']) {
      const err = refusal(okta.replace('entityID="', `entityID="${bad}`));
      expect(err.code).toBe('not_xml');
    }
    // Allowed characters and references still are.
    expect(parseIdpMetadata(okta.replace('entityID="', 'entityID="&#x1F600;\u{1F600}&#9;'), { now: NOW }).entityId).toMatch(/^\u{1F600}\u{1F600}\t/u);
  });
});

describe('the limits', () => {
  test('the largest documents within every limit are accepted', () => {
    for (const [name, xml] of Object.entries(largestAccepted())) {
      expect([name, parseIdpMetadata(xml, { now: NOW }).entityId]).toEqual([name, 'http://www.okta.com/exk9u78i8aMSxvkV70h7']);
    }
  });

  test('one element, one level or one character more is refused', () => {
    expect(refusal(padded({ elements: XML_LIMITS.maxElements + 1, chars: 200 * KiB })).code).toBe('too_large');
    // deep(n) nests n levels inside the document's own 3: maxDepth - 2 is one level past the limit.
    expect(refusal(deep(XML_LIMITS.maxDepth - 2)).message).toMatch(/nests elements more than 40 deep/);
    expect(refusal(padded().padEnd(XML_LIMITS.maxChars + 1, ' ')).code).toBe('too_large');
    const attrs = Array.from({ length: XML_LIMITS.maxAttributesPerElement + 1 }, (_, i) => `a${i}="1"`).join(' ');
    expect(refusal(padded({ elements: 20, chars: 4000 }).replace('<md:IDPSSODescriptor ', `<md:IDPSSODescriptor ${attrs} `)).message).toMatch(/attributes on one element/);
    // Attributes in all: each element within its own bound, the document past the total.
    const full = `<a ${Array.from({ length: XML_LIMITS.maxAttributesPerElement }, (_, i) => `a${i}="1"`).join(' ')}/>`;
    const elements = Math.floor(XML_LIMITS.maxAttributes / XML_LIMITS.maxAttributesPerElement) + 1;
    expect(() => checkXmlLimits(`<r>${full.repeat(elements)}</r>`)).toThrow(new RegExp(`more attributes than the ${XML_LIMITS.maxAttributes}`));
  });
});

describe('the parse pool', () => {
  test('parses in a worker thread and gives the same result', async () => {
    const pool = new ParsePool({ size: 1 });
    try {
      const xml = padded({ elements: 50, chars: 20 * KiB });
      expect(await pool.parse(xml, NOW)).toEqual(parseIdpMetadata(xml, { now: NOW }));
      await expect(pool.parse(hostile(64 * KiB)['NUL character reference'] ?? '', NOW)).rejects.toMatchObject({ code: 'not_xml' });
      expect(pool.stats.inWorker).toBe(2);
    } finally {
      await pool.close();
    }
  });

  test('refuses a parse that runs past its time limit, terminating its worker', async () => {
    const pool = new ParsePool({ size: 1, timeoutMs: 1 });
    try {
      const err = await pool.parse(largestAccepted()['max elements, size, signed'] ?? '', NOW).then(() => null, (e: unknown) => e);
      expect((err as Error).message).toMatch(/could not be processed within the parser's limits/);
      // A MetadataError, so that the API answers it 400 (any other error is a 500).
      expect(err).toBeInstanceOf(MetadataError);
      expect(err).toMatchObject({ code: 'too_large' });
      expect(pool.stats.timedOut).toBe(1);
    } finally {
      await pool.close();
    }
  });
});
