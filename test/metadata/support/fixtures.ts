import { readFileSync } from 'node:fs';
import path from 'node:path';
import { MetadataError } from '../../../src/metadata/errors';
import { parseIdpMetadata } from '../../../src/metadata/parse-metadata';

export const FIXTURE_DIR = path.resolve(__dirname, '../../fixtures/idp-metadata');

/** The MANIFEST's reference date: every verdict in it holds at this instant. */
export const REFERENCE_NOW = new Date('2026-11-23T00:00:00Z');

export function fixture(name: string): string {
  return readFileSync(path.join(FIXTURE_DIR, name), 'utf8');
}

/** The MetadataError parsing `xml` at `now` ends in; fails the test when the document is accepted. */
export function metadataRefusal(xml: string, now = REFERENCE_NOW): MetadataError {
  try {
    parseIdpMetadata(xml, { now });
  } catch (err) {
    if (err instanceof MetadataError) return err;
    throw err;
  }
  throw new Error('the metadata was accepted');
}
