import { readFileSync } from 'node:fs';
import path from 'node:path';

export const FIXTURE_DIR = path.resolve(__dirname, '../../fixtures/idp-metadata');

/** The MANIFEST's reference date: every verdict in it holds at this instant. */
export const REFERENCE_NOW = new Date('2026-11-23T00:00:00Z');

export function fixture(name: string): string {
  return readFileSync(path.join(FIXTURE_DIR, name), 'utf8');
}
