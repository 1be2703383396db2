/**
 * What a metadata refusal quotes of the document (a page title, an entity ID, a certificate's name) is chosen by
 * whoever answers at the URL. The admin reads the message in the API answer, in the credential's /metadata
 * (the refresh job's last error) and in GET /admin/metadata-refresh: the quote must not reorder or hide the
 * rest of the message (bidi overrides, zero-width characters) nor break it into lines (U+2028, U+2029).
 */
import { excerpt } from '../../src/metadata/errors';
import { fixture } from '../support/idp-server';
import { metadataRefusal } from '../metadata/support/fixtures';

const NOW = new Date('2026-11-23T00:00:00Z');
/** Invisible format characters and Unicode's line and paragraph separators. */
const HIDDEN = /[\p{Cf}\u2028\u2029]/u;

const refusal = (xml: string) => metadataRefusal(xml, NOW);

describe('refusals quote the document without invisible characters', () => {
  test('an HTML page whose title carries a right-to-left override and a zero-width space', () => {
    const err = refusal('<html><head><title>Sign in\u202e.lmx\u200b</title></head><body></body></html>');
    expect(err.code).toBe('not_xml');
    expect(err.message).toContain('titled "Sign in?.lmx?"');
    expect(err.message).not.toMatch(HIDDEN);
  });

  test('SP metadata whose entity ID carries a line separator and a bidi isolate', () => {
    const xml = fixture('sp-metadata-not-idp.xml').replace(/entityID="[^"]*"/, 'entityID="urn:sp\u2028Refused:\u2066 all\u2069"');
    const err = refusal(xml);
    expect(err.code).toBe('sp_metadata');
    expect(err.message).toContain('metadata for "urn:sp Refused:? all?"');
    expect(err.message).not.toMatch(HIDDEN);
  });

  test('an excerpt keeps visible text, other scripts included, as it is', () => {
    expect(excerpt('Anmeldung – Ü ログイン مرحبا')).toBe('Anmeldung – Ü ログイン مرحبا');
    expect(excerpt('a\u00adb\ufeffc\u2029d')).toBe('a?b?c d');
  });
});
