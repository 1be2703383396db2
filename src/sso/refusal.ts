/**
 * How a refused sign-in is answered: one error code, a message that says what to fix, and node-saml's own
 * wording kept for the log only. Quotes of IdP-chosen text are made safe to show.
 */
import { AppError } from '../http/errors';

/** A refusal; `libraryReason` is node-saml's own wording, for the log only. */
export class SamlRefusal extends AppError {
  constructor(
    status: number,
    message: string,
    readonly libraryReason: string | null = null,
  ) {
    super(status, 'saml_response_refused', `Sign-in refused: ${message}`);
  }
}

export function refused(status: number, message: string, libraryReason: string | null = null): SamlRefusal {
  return new SamlRefusal(status, message, libraryReason);
}

/** A short, one-line, printable quote of text the IdP chose (an entity id, a status message). */
export function quote(text: string, max = 100): string {
  // Controls and invisible format characters (bidi overrides, zero-width) would reorder or hide the quote.
  const line = text.slice(0, max * 2).replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]+/gu, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}
