/**
 * The fetch asks for `Accept-Encoding: identity`, but some servers and CDNs compress whatever is asked.
 * Such an answer is read as a browser would read it (gzip, deflate, br), and the decoded document is held
 * to the same size bound as an uncompressed one, so a small compressed body cannot expand past it.
 * Until 2026-12-05 it was refused as "gzip-compressed data without a Content-Encoding saying so", which was
 * untrue when the header said so.
 */
import zlib from 'node:zlib';
import { excerpt, MetadataError } from './errors';
import { formatBytes } from '../format-bytes';

/** More codings than this on one answer are not a server's doing but a trap; refused. */
const MAX_CODINGS = 2;

type Decoder = (bytes: Buffer, opts: zlib.ZlibOptions & zlib.BrotliOptions) => Buffer;

/** deflate is zlib-wrapped by the standard, but some servers send it raw; browsers read both. */
const inflateEither: Decoder = (bytes, opts) => {
  try {
    return zlib.inflateSync(bytes, opts);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw err;
    return zlib.inflateRawSync(bytes, opts);
  }
};

const DECODERS: Readonly<Record<string, Decoder>> = {
  gzip: zlib.gunzipSync,
  'x-gzip': zlib.gunzipSync,
  deflate: inflateEither,
  br: zlib.brotliDecompressSync,
};

/** The body as the server meant it, given its Content-Encoding header (null: none). */
export function decodeContentEncoding(bytes: Buffer, header: string | null, url: URL, maxBytes: number): Buffer {
  const codings = (header ?? '')
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
  if (codings.length === 0) return bytes;
  const where = excerpt(url.href, 200);
  const named = excerpt(codings.join(', '), 60);
  // Own keys only: `in` also found an object's inherited names (a coding named `constructor` read as none).
  const unknown = codings.find((c) => !Object.hasOwn(DECODERS, c));
  if (unknown !== undefined || codings.length > MAX_CODINGS) {
    throw new MetadataError(
      'not_xml',
      `The document at ${where} is sent with Content-Encoding "${named}", which the fetch did not ask for and does not read ` +
        `(it reads gzip, deflate or br, at most ${MAX_CODINGS} of them). Ask the IdP for plain XML.`,
    );
  }
  let body = bytes;
  // Codings are listed in the order they were applied: undone from the last.
  for (const coding of [...codings].reverse()) {
    try {
      body = DECODERS[coding](body, { maxOutputLength: maxBytes });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
        throw new MetadataError('too_large', `The document at ${where} decompresses (Content-Encoding "${named}") to more than the ${formatBytes(maxBytes)} allowed for metadata.`);
      }
      throw new MetadataError('not_xml', `The document at ${where} is sent with Content-Encoding "${named}" but is not compressed that way; it was not read.`);
    }
  }
  return body;
}
