/**
 * Jest global setup: builds the service's OpenAPI document once per run and hands its path to every test
 * file (TEST_OPENAPI_DOCUMENT), so openapi-check.ts reads a JSON file instead of loading the whole service
 * (src/features: ~1,000 modules, ~1.2 s of CPU in each test file that receives an answer), and compiles its
 * response schemas once into modules beside it (openapi-validators.ts). It also makes the run's migrated
 * template database, which test deployments copy their databases from (template-db.ts), and the run's test
 * certificates (test-certs.ts: openssl, ~0.2 s of CPU a key, was run in a dozen test files).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PG_BASE } from './env';
import { DOCUMENT_DIR_PREFIX, DOCUMENT_ENV } from './openapi-check';
import { writeValidators } from './openapi-validators';
import { createTemplate, TEMPLATE_ENV, TEMPLATE_MIGRATIONS_ENV } from './template-db';
import { CERTS_DIR_PREFIX, CERTS_ENV, writeRunCerts } from './test-certs';

export default async function globalSetup(globalConfig: { selectProjects?: string[] | null }): Promise<void> {
  // Only what this run writes is read (and removed by the teardown), never a path inherited from a shell.
  delete process.env[DOCUMENT_ENV];
  delete process.env[TEMPLATE_ENV];
  delete process.env[TEMPLATE_MIGRATIONS_ENV];
  delete process.env[CERTS_ENV];
  // `npm run test:unit`: no unit test receives an answer of the service or needs a database.
  if (globalConfig.selectProjects?.length && !globalConfig.selectProjects.includes('integration')) return;
  // Started first: openssl works in child processes while this one loads the service.
  const certsDir = fs.mkdtempSync(path.join(os.tmpdir(), CERTS_DIR_PREFIX));
  const certs = writeRunCerts(certsDir).then(
    (file) => void (process.env[CERTS_ENV] = file),
    (err: unknown) => {
      fs.rmSync(certsDir, { recursive: true, force: true });
      throw err;
    },
  );
  let doc: unknown;
  try {
    /* eslint-disable @typescript-eslint/no-require-imports */
    const { FEATURES } = require('../../src/features') as typeof import('../../src/features');
    const { openApiDocument } = require('../../src/openapi/feature') as typeof import('../../src/openapi/feature');
    /* eslint-enable @typescript-eslint/no-require-imports */
    doc = openApiDocument(FEATURES);
  } catch {
    // No generated Prisma client yet (`npm run test:unit` before a build): unit tests receive no answer of
    // the service, and a file that does builds the document itself.
    await certs;
    return;
  }
  await Promise.all([createTemplate(PG_BASE), certs]);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), DOCUMENT_DIR_PREFIX));
  const file = path.join(dir, 'openapi.json');
  fs.writeFileSync(file, JSON.stringify(doc));
  writeValidators(doc as Record<string, unknown>, dir);
  process.env[DOCUMENT_ENV] = file;
}
