/**
 * Strict, hostile-input XML parsing for metadata documents, plus the few namespace-aware DOM
 * helpers the metadata reader needs. Any DTD is refused before parsing: SAML metadata never needs
 * one, and refusing it outright rules out entity expansion and external entities whatever the
 * parser would have done with them.
 */
import { DOMParser, type Document, type Element } from '@xmldom/xmldom';
import { MetadataError } from './errors';

export const MD_NS = 'urn:oasis:names:tc:SAML:2.0:metadata';
export const DS_NS = 'http://www.w3.org/2000/09/xmldsig#';

export interface ParsedXml {
  /** The text that was parsed (byte-order mark removed); signatures are checked against it. */
  text: string;
  doc: Document;
  root: Element;
}

/** Skips the XML declaration, comments and whitespace that may precede the first tag. */
function prologEnd(text: string): number {
  const prolog = /^(?:\s+|<\?xml[^>]*\?>|<!--[\s\S]*?-->)*/.exec(text);
  return prolog ? prolog[0].length : 0;
}

export function htmlTitle(text: string): string | null {
  const m = /<title[^>]*>([^<]{1,200})<\/title>/i.exec(text);
  return m ? m[1].replace(/\s+/g, ' ').trim() : null;
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
  const start = text.slice(prologEnd(text), prologEnd(text) + 200);
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

function describeParseError(message: string): string {
  const clean = message.replace(/\s*\n@#\[line:\d+,col:\d+\]/g, '').trim();
  const truncated = /unclosed xml tag|missing root element|unexpected end/i.test(clean)
    ? ' It seems to end early; was the download cut off?'
    : '';
  return `The document is not well-formed XML (${clean}).${truncated}`;
}

export function parseXml(input: string): ParsedXml {
  // Servers often prepend a newline to the XML declaration; that is harmless, so forgive it.
  const text = input.replace(/^\uFEFF/, '').replace(/^\s+(?=<\?xml)/, '');
  refuseNonXml(text);
  let firstProblem: string | null = null;
  const parser = new DOMParser({
    onError: (level, msg) => {
      if (level === 'warning') return;
      firstProblem = firstProblem ?? msg;
      // Throwing stops the parser; an "error" from xmldom means the input is not well-formed.
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
