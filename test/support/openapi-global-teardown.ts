/** Jest global teardown: removes the document openapi-global-setup.ts wrote and drops the run's template database. */
import fs from 'node:fs';
import path from 'node:path';
import { PG_BASE } from './env';
import { DOCUMENT_DIR_PREFIX, DOCUMENT_ENV } from './openapi-check';
import { dropTemplate } from './template-db';

export default async function globalTeardown(): Promise<void> {
  const file = process.env[DOCUMENT_ENV];
  if (file && path.basename(path.dirname(file)).startsWith(DOCUMENT_DIR_PREFIX)) fs.rmSync(path.dirname(file), { recursive: true, force: true });
  await dropTemplate(PG_BASE).catch((err: Error) => console.warn(`test database template not dropped (the next run on this host drops it): ${err.message}`));
}
