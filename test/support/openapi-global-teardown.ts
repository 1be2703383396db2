/** Jest global teardown: removes the document openapi-global-setup.ts wrote. */
import fs from 'node:fs';
import path from 'node:path';
import { DOCUMENT_DIR_PREFIX, DOCUMENT_ENV } from './openapi-check';

export default function globalTeardown(): void {
  const file = process.env[DOCUMENT_ENV];
  if (file && path.basename(path.dirname(file)).startsWith(DOCUMENT_DIR_PREFIX)) fs.rmSync(path.dirname(file), { recursive: true, force: true });
}
