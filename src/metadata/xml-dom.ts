/**
 * Strict, hostile-input XML parsing for metadata documents, plus the few namespace-aware DOM
 * helpers the metadata reader needs. Any DTD is refused before parsing: SAML metadata never needs
 * one, and refusing it outright rules out entity expansion and external entities whatever the
 * parser would have done with them.
 */
import type { Document, Element } from '@xmldom/xmldom';
import { xmldom } from '../on-first-use';
import { excerpt, MetadataError } from './errors';
import { checkXmlLimits, XML_LIMITS, type XmlLimits } from './xml-limits';

export const MD_NS = 'urn:oasis:names:tc:SAML:2.0:metadata';
export const DS_NS = 'http://www.w3.org/2000/09/xmldsig#';

export interface ParsedXml {
  /** The text that was parsed (byte-order mark removed); signatures are checked against it. */
  text: string;
  doc: Document;
  root: Element;
}

const isSpace = (c: number) => c === 0x20 || c === 0x9 || c === 0xa || c === 0xd;

/** Skips the XML declaration, comments and whitespace that may precede the first tag (by indexOf: linear). */
function prologEnd(text: string): number {
  let i = 0;
  for (;;) {
    while (isSpace(text.charCodeAt(i))) i++;
    const close = text.startsWith('<?xml', i) ? '?>' : text.startsWith('<!--', i) ? '-->' : null;
    if (close === null) return i;
    const end = text.indexOf(close, i + 4);
    if (end < 0) return i;
    i = end + close.length;
  }
}

/** Where in a page its <title> is looked for: a title sits in the head, near the top. */
const TITLE_SCAN_CHARS = 64 * 1024;

/**
 * The page's title, quoted short and printable. Found with indexOf over a bounded prefix, never a
 * backtracking pattern: `<title` repeated a million times must cost one pass, not one per occurrence.
 */
export function htmlTitle(text: string): string | null {
  const head = text.slice(0, TITLE_SCAN_CHARS);
  const lower = head.toLowerCase();
  // toLowerCase can change the length of exotic text; then indexes would not line up, so give up.
  if (lower.length !== head.length) return null;
  const open = lower.indexOf('<title');
  if (open < 0) return null;
  const gt = lower.indexOf('>', open);
  const close = gt < 0 ? -1 : lower.indexOf('</title>', gt);
  if (close < 0 || close - gt - 1 > 200 || lower.lastIndexOf('<', close - 1) > gt) return null;
  const title = excerpt(head.slice(gt + 1, close).replace(/\s+/g, ' '), 80);
  return title === '' ? null : title;
}

export function htmlPageError(text: string): MetadataError {
  const title = htmlTitle(text);
  const named = title ? ` titled "${title}"` : '';
  return new MetadataError(
    'not_xml',
    `The document looks like an HTML page${named}, not SAML metadata XML. ` +
      "The URL probably leads to a login or error page; use the IdP's metadata URL.",
  );
}

function refuseNonXml(text: string): void {
  if (text.trim() === '') {
    throw new MetadataError('not_xml', 'The document is empty; expected SAML metadata XML.');
  }
  const from = prologEnd(text);
  const start = text.slice(from, from + 200);
  if (/^<!doctype\s+html\b/i.test(start) || /^<(html|head|body)\b/i.test(start)) {
    throw htmlPageError(text);
  }
  if (/^[[{]/.test(start)) {
    throw new MetadataError('not_xml', 'The document looks like JSON, not SAML metadata XML.');
  }
  if (!start.startsWith('<')) {
    throw new MetadataError('not_xml', 'The document is not XML: it does not start with a tag.');
  }
  // Checked on the raw text so no parser behaviour (entity expansion, external fetches) is
  // relied upon; a DOCTYPE in a comment is refused too, which costs nothing real.
  if (/<!DOCTYPE/i.test(text) || /<!ENTITY/i.test(text)) {
    throw new MetadataError(
      'doctype_not_allowed',
      'The document contains a DOCTYPE or entity declaration. SAML metadata never needs one ' +
        'and it is refused for safety; remove the DOCTYPE.',
    );
  }
}

/**
 * The parser's (xmldom's) complaints, said in the service's words: [its message, ours]. Ours may quote names
 * from the document, shortened and printable.
 */
const PARSE_PROBLEMS: [RegExp, (m: RegExpExecArray) => string][] = [
  [/HierarchyRequestError|Only one element can be added|Extra content at the end/i, () => 'there is more after its root element ends (another element, or text)'],
  [/attribute value no end/i, () => 'an attribute value is not closed (a quote is missing)'],
  [/unclosed xml tag\(s\):\s*([^\n]*)/i, (m) => `it ends before these elements are closed: ${name(m[1])}`],
  [/entity not found:\s*&?([^;\s]*)/i, (m) => `it uses the entity &${name(m[1])}; which XML does not define (only &lt; &gt; &amp; &quot; &apos; and character references)`],
  [/tag mismatch:\s*"([^"]*)"\s*!=\s*"([^"]*)"/i, (m) => `the element <${name(m[1])}> is closed by </${name(m[2])}>`],
  [/Attribute\s+(\S+)\s+redefined/i, (m) => `the attribute ${name(m[1])} appears twice on one element`],
  [/invalid tagName:\s*(\S*)/i, (m) => `"${name(m[1])}" is not a valid element name`],
  [/Unescaped '<' not allowed in attributes values/i, () => 'an attribute value contains "<" (XML requires &lt;)'],
];

const name = (s: string | undefined) => excerpt(s ?? '', 80);

function describeParseError(message: string): string {
  const clean = message.slice(0, 400).replace(/[ \t]*\n@#\[line:\d+,col:\d+\]/g, '');
  const truncated = /unclosed xml tag|missing root element|unexpected end/i.test(clean)
    ? ' It seems to end early; was the download cut off?'
    : '';
  for (const [pattern, say] of PARSE_PROBLEMS) {
    const m = pattern.exec(clean);
    if (m) return `The document is not well-formed XML: ${say(m)}.${truncated}`;
  }
  // Any other: the parser's own words, without its error class names (they may quote the document: a
  // short, printable excerpt).
  return `The document is not well-formed XML (${excerpt(clean.replace(/\b(?:[A-Za-z]*Error|element parse error):\s*/g, ''), 200)}).${truncated}`;
}

export function parseXml(input: string, limits: XmlLimits = XML_LIMITS): ParsedXml {
  // Servers often prepend a newline to the XML declaration; that is harmless, so forgive it.
  const text = input.replace(/^\uFEFF/, '').replace(/^\s+(?=<\?xml)/, '');
  refuseNonXml(text);
  checkXmlLimits(text, limits);
  let firstProblem: string | null = null;
  const parser = new (xmldom().DOMParser)({
    onError: (level, msg) => {
      // U+FFFD is a legal character (a Latin-1 name read as UTF-8 becomes one): xmldom only notes it.
      if (level === 'warning' && msg.startsWith('Unicode replacement character')) return;
      firstProblem = firstProblem ?? msg;
      // Throwing stops the parser. An "error" from xmldom means the input is not well-formed; so does any
      // other "warning" (an unquoted attribute value, a missing space between attributes), which xmldom
      // reads past its own way: none of the real documents among the fixtures draws one, and a reading the
      // limits' scan (xml-limits.ts) does not share could hide elements from it.
      throw new Error(msg);
    },
  });
  let doc: Document;
  try {
    doc = parser.parseFromString(text, 'text/xml');
  } catch (err) {
    const why = firstProblem ?? (err instanceof Error ? err.message : 'unreadable');
    if (/<\/?(html|body|head)\b/i.test(text)) throw htmlPageError(text);
    throw new MetadataError('not_xml', describeParseError(why));
  }
  const root = doc.documentElement;
  if (root === null) {
    throw new MetadataError('not_xml', 'The document has no root element.');
  }
  if (doc.doctype !== null) {
    throw new MetadataError('doctype_not_allowed', 'The document contains a DOCTYPE, which is refused for safety.');
  }
  return { text, doc, root };
}

export function isElement(node: unknown): node is Element {
  return typeof node === 'object' && node !== null && (node as { nodeType?: unknown }).nodeType === 1;
}

export function childElements(parent: Element, ns: string, localName: string): Element[] {
  const out: Element[] = [];
  for (let n = parent.firstChild; n !== null; n = n.nextSibling) {
    if (isElement(n) && n.namespaceURI === ns && n.localName === localName) out.push(n);
  }
  return out;
}

export function descendantElements(parent: Element, ns: string, localName: string): Element[] {
  return Array.from(parent.getElementsByTagNameNS(ns, localName));
}

export function is(el: Element, ns: string, localName: string): boolean {
  return el.namespaceURI === ns && el.localName === localName;
}

/** The attribute's value, or null when absent (getAttribute returns "" for both in some DOMs). */
export function attr(el: Element, name: string): string | null {
  return el.hasAttribute(name) ? el.getAttribute(name) : null;
}
