/**
 * Jest global teardown: removes the document and the certificates openapi-global-setup.ts wrote and drops the
 * run's template database.
 */
import fs from 'node:fs';
import path from 'node:path';
import { PG_BASE } from './env';
import { DOCUMENT_DIR_PREFIX, DOCUMENT_ENV } from './openapi-check';
import { dropTemplate } from './template-db';
import { CERTS_DIR_PREFIX, CERTS_ENV } from './test-certs';

export default async function globalTeardown(): Promise<void> {
  const file = process.env[DOCUMENT_ENV];
  if (file && path.basename(path.dirname(file)).startsWith(DOCUMENT_DIR_PREFIX)) fs.rmSync(path.dirname(file), { recursive: true, force: true });
  const certs = process.env[CERTS_ENV];
  if (certs && path.basename(path.dirname(certs)).startsWith(CERTS_DIR_PREFIX)) fs.rmSync(path.dirname(certs), { recursive: true, force: true });
  await dropTemplate(PG_BASE).catch((err: Error) => console.warn(`test database template not dropped (the next run on this host drops it): ${err.message}`));
}
