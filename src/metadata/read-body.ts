/**
 * A fetched metadata document's body, read within its size bound and decoded to text (fetch-metadata.ts);
 * bytes that are not the text XML allows are refused, not replaced.
 */
import { excerpt, MetadataError } from './errors';
import { formatBytes } from '../format-bytes';

/** The encoding an XML declaration names (`<?xml version="1.0" encoding="…"?>`), lower case, or null. */
const DECLARED_ENCODING = /^(?:\uFEFF|\u00EF\u00BB\u00BF)?\s*<\?xml\s[^>]*?\bencoding\s*=\s*["']([A-Za-z][A-Za-z0-9._-]*)["']/;

/**
 * The document's text. UTF-8 (a byte-order mark is dropped), or UTF-16 after its byte-order mark: the two
 * encodings every XML processor reads. Bytes that are not valid in it are refused, as XML makes them a fatal
 * error: replaced by U+FFFD they changed the entityID that was stored (a review found it). A document that
 * declares another encoding is read only when all its bytes are ASCII, which every ASCII-based encoding
 * reads alike; otherwise it is refused rather than read as UTF-8.
 */
export function decodeBody(bytes: Buffer, url: URL): string {
  const utf16 = bytes[0] === 0xff && bytes[1] === 0xfe ? 'utf-16le' : bytes[0] === 0xfe && bytes[1] === 0xff ? 'utf-16be' : null;
  // Two shapes whose generic refusal (a NUL character, not XML) said nothing useful: said for what they are.
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
    throw new MetadataError(
      'not_xml',
      `The document at ${excerpt(url.href, 200)} is gzip-compressed data without a Content-Encoding saying so (it was not asked for compressed). Ask the IdP for plain XML.`,
    );
  }
  if (!utf16 && ((bytes[0] === 0x3c && bytes[1] === 0x00) || (bytes[0] === 0x00 && bytes[1] === 0x3c))) {
    throw new MetadataError(
      'not_xml',
      `The document at ${excerpt(url.href, 200)} looks like UTF-16 text without a byte-order mark; metadata is read as UTF-8, or UTF-16 with a byte-order mark. Ask the IdP for its metadata in UTF-8.`,
    );
  }
  if (!utf16) {
    const declared = DECLARED_ENCODING.exec(bytes.subarray(0, 256).toString('latin1'))?.[1]?.toLowerCase();
    if (declared !== undefined && declared !== 'utf-8' && declared !== 'utf8' && bytes.some((b) => b > 0x7f)) {
      throw new MetadataError(
        'not_xml',
        `The document at ${excerpt(url.href, 200)} declares the encoding "${excerpt(declared, 40)}" and has bytes outside ASCII; metadata is read as UTF-8 (or UTF-16 with a byte-order mark) only. Ask the IdP for its metadata in UTF-8.`,
      );
    }
  }
  try {
    return new TextDecoder(utf16 ?? 'utf-8', { fatal: true }).decode(utf16 ? bytes.subarray(2) : bytes);
  } catch {
    throw new MetadataError(
      'not_xml',
      `The document at ${excerpt(url.href, 200)} is not valid ${utf16 ? 'UTF-16' : 'UTF-8'} text (bytes that encode no character), which XML does not allow; it was not read.`,
    );
  }
}

export function tooLarge(url: URL, maxBytes: number, declared: number | null): MetadataError {
  const said = declared === null ? '' : ` (it announces ${formatBytes(declared)})`;
  return new MetadataError(
    'too_large',
    `The document at ${url.href} is larger than the ${formatBytes(maxBytes)} allowed for metadata${said}.`,
  );
}

export async function readLimited(body: AsyncIterable<unknown>, url: URL, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const data = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += data.length;
    if (size > maxBytes) throw tooLarge(url, maxBytes, null);
    chunks.push(data);
  }
  return Buffer.concat(chunks);
}
