/**
 * Every refusal of an IdP metadata URL or document. The message is shown to the admin who
 * entered the URL, so it names the URL, host or date involved and says what to change;
 * it never carries a stack trace or a library's internal wording alone.
 */
export type MetadataErrorCode =
  // fetching
  | 'invalid_url'
  | 'scheme_not_allowed'
  | 'blocked_address'
  | 'unreachable'
  | 'dns_not_answering'
  | 'tls_error'
  | 'timeout'
  | 'too_large'
  | 'http_status'
  | 'too_many_redirects'
  // parsing and validation
  | 'not_xml'
  | 'doctype_not_allowed'
  | 'not_metadata'
  | 'sp_metadata'
  | 'no_idp_descriptor'
  | 'multiple_idps'
  | 'no_sso_service'
  | 'no_signing_certificate'
  | 'invalid_certificate'
  | 'certificate_expired'
  | 'metadata_expired'
  | 'bad_signature';

export class MetadataError extends Error {
  override readonly name = 'MetadataError';

  constructor(
    readonly code: MetadataErrorCode,
    message: string,
  ) {
    // The message is stored (refresh state) and shown; whatever a document put in it, it must be both.
    super(storableText(message, MAX_MESSAGE_CHARS));
  }
}

const MAX_MESSAGE_CHARS = 1000;
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\ufffe\uffff]/g;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** `text` cut to `max` characters, without control characters or unpaired surrogates. Linear. */
function storableText(text: string, max: number): string {
  const cut = text.length > max ? `${text.slice(0, max - 1)}…` : text;
  return cut.replace(CONTROL, '?').replace(LONE_SURROGATE, '\ufffd');
}

/** Line and paragraph separators, Unicode's (U+2028, U+2029) too: a quote is one line. */
const LINE_BREAKS = /[\t\n\r\u2028\u2029]+/g;
/**
 * Invisible format characters: bidi overrides and isolates, zero-width characters, the BOM. In a quote they
 * reorder or hide what the admin reads (a page title whose U+202E turns the rest of the message around).
 */
const INVISIBLE = /\p{Cf}/gu;

/**
 * A short, printable quote of text that came from a fetched document or a remote server (a page title,
 * an entity id, a library message that may echo the input): one line, at most `max` characters, controls
 * and invisible format characters shown as "?".
 */
export function excerpt(text: string, max = 100): string {
  const head = text.slice(0, max * 4).replace(LINE_BREAKS, ' ').trim();
  return storableText(head, max).replace(INVISIBLE, '?');
}

export function isMetadataError(err: unknown): err is MetadataError {
  return err instanceof MetadataError;
}
