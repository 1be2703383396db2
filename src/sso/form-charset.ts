import { parse as parseContentType } from 'content-type';
import type { RequestHandler } from 'express';
import { refused } from './refusal';

/**
 * The charsets an ACS form may name, by the labels the WHATWG Encoding standard gives them (what a browser
 * posting an IdP's form sends), to the two body-parser decodes, which knows each by one name only.
 * windows-1252's labels (latin1, us-ascii, …) are read as ISO-8859-1: the two differ in 0x80–0x9F only, which
 * no base64 SAMLResponse nor printable-ASCII RelayState holds (a form with them is refused for that).
 */
const UTF8_LABELS = ['utf-8', 'utf8', 'unicode-1-1-utf-8', 'unicode11utf8', 'unicode20utf8', 'x-unicode20utf8'];
const LATIN1_LABELS = [
  'iso-8859-1', 'iso8859-1', 'iso88591', 'iso_8859-1', 'iso_8859-1:1987', 'iso-ir-100', 'l1', 'latin1', 'csisolatin1',
  'cp819', 'ibm819', 'windows-1252', 'cp1252', 'x-cp1252', 'us-ascii', 'ascii', 'ansi_x3.4-1968',
];
const FORM_CHARSETS = new Map<string, 'utf-8' | 'iso-8859-1'>([
  ...UTF8_LABELS.map((l) => [l, 'utf-8'] as const),
  ...LATIN1_LABELS.map((l) => [l, 'iso-8859-1'] as const),
]);

/** The refusal of any other charset: it lists what is accepted. */
export const UNSUPPORTED_FORM_CHARSET =
  `the form must be sent in UTF-8 (charset ${UTF8_LABELS.join(', ')}, or none) or ISO-8859-1 (charset ${LATIN1_LABELS.join(', ')}; ` +
  'any case); post the IdP\'s response unchanged.';

/**
 * An ACS form's charset label as the form parser knows it: any WHATWG label of UTF-8 or ISO-8859-1 (and
 * windows-1252), in any case and with white space around it, becomes `utf-8` or `iso-8859-1`; another is
 * refused here. A Content-Type the parser cannot read is left to the form parser.
 */
export function formCharset(): RequestHandler {
  return (req, _res, next) => {
    let label: string | undefined;
    try {
      label = parseContentType(req.headers['content-type'] ?? '').parameters.charset;
    } catch {
      return next();
    }
    if (label === undefined) return next();
    const charset = FORM_CHARSETS.get(label.trim().toLowerCase());
    if (charset === undefined) return next(refused(400, UNSUPPORTED_FORM_CHARSET));
    req.headers['content-type'] = `application/x-www-form-urlencoded; charset=${charset}`;
    next();
  };
}
