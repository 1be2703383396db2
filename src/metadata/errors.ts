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
    super(message);
  }
}

export function isMetadataError(err: unknown): err is MetadataError {
  return err instanceof MetadataError;
}
